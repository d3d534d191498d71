"""NIR export: the graph read back by Norse (a simulator written by others) computes our network."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

nir = pytest.importorskip("nir")
pytest.importorskip("norse")

from i2e_lightning.models import create_model  # noqa: E402
from i2e_lightning.nir import export_nir, fold_batchnorm, load_norse, nir_compatible, run_norse, write_nir  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _quiet_norse():
    logging.disable(logging.WARNING)  # Norse logs a warning per LIF about r; the graphs write r = 1
    yield
    logging.disable(logging.NOTSET)


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that folding them is tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.1)
    return model.eval()


def events(t: int, b: int, h: int, w: int, seed: int = 0, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(t, b, 2, h, w, generator=torch.Generator().manual_seed(seed)) < p).float()


def round_trip(model, size, ev, tmp_path):
    path = write_nir(export_nir(model, size), tmp_path / "model.nir")
    got, steps = run_norse(load_norse(path), ev)
    with torch.no_grad():
        ref = nir_compatible(model).eval()(ev)
    return got, ref, steps


@pytest.mark.parametrize(
    "kwargs,size",
    [
        (dict(channels=(6, 8), pool="avg"), (20, 20)),
        (dict(channels=(6, 8), pool="max", hidden=12), (20, 20)),
        (dict(channels=(6, 8), pool="avg", global_pool=True), (18, 22)),
        (dict(channels=(4,), pool="none", kernel_size=5, stem_stride=2), (13, 11)),
    ],
)
def test_spiking_cnn_round_trip_through_norse(kwargs, size, tmp_path):
    model = randomized(create_model("spiking_cnn", num_classes=7, input_size=size, **kwargs))
    ev = events(4, 6, *size)
    got, ref, steps = round_trip(model, size, ev, tmp_path)
    assert steps.shape == (4, 6, 7)
    assert torch.allclose(got, ref, atol=1e-5), float((got - ref).abs().max())
    assert torch.equal(got.argmax(1), ref.argmax(1))


def test_graph_content_and_time_discretisation():
    model = randomized(create_model("spiking_cnn", channels=(4, 8), pool="avg", input_size=(16, 16), beta=0.75))
    g = export_nir(model)
    assert set(g.nodes) >= {"input", "stages.0.conv", "stages.0.pool", "stages.0.sn", "flatten", "fc", "output"}
    lif = g.nodes["stages.0.sn"]
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (4, 8, 8)
    assert np.allclose(lif.tau, 4.0)  # tau = dt / (1 - beta), dt = 1
    assert np.all(lif.v_leak == 0) and np.all(lif.r == 1) and np.all(lif.v_reset == 0)
    # inclusive firing (v >= 1) as NIR's strict test: the largest float32 below 1
    assert np.all(lif.v_threshold == np.nextafter(np.float32(1), np.float32(0)))
    # BN folded, then scaled by 1/(1-beta) = 4 (neuron input) and 1/4 (2x2 average as a sum pool)
    w, b = fold_batchnorm(model.stages[0].conv, model.stages[0].bn)
    assert np.allclose(g.nodes["stages.0.conv"].weight, w, atol=1e-6)
    assert np.allclose(g.nodes["stages.0.conv"].bias, b, atol=1e-6)
    assert isinstance(g.nodes["stages.0.pool"], nir.SumPool2d)
    assert g.metadata["i2e.dt"] == 1.0 and g.metadata["i2e.notes"] == []


def test_folded_batchnorm_equals_conv_then_bn():
    model = randomized(create_model("spiking_cnn", channels=(5,), input_size=(9, 9)))
    conv, bn = model.stages[0].conv, model.stages[0].bn
    x = torch.rand(3, 2, 9, 9)
    w, b = fold_batchnorm(conv, bn)
    with torch.no_grad():
        ref = bn(conv(x.unsqueeze(0)))[0]  # the Seq layers take [T, B, ...]
    got = F.conv2d(x, torch.from_numpy(w).float(), torch.from_numpy(b).float(), padding=conv.padding)
    assert torch.allclose(got, ref, atol=1e-5)


def test_max_pooling_is_replaced_and_noted():
    model = create_model("spiking_cnn", channels=(4, 4), pool="max", input_size=(8, 8))
    g = export_nir(model)
    assert any("max pooling" in n for n in g.metadata["i2e.notes"])
    twin = nir_compatible(model)
    assert not any(type(m).__name__ == "SeqMaxPool2d" for m in twin.modules())
    assert any(type(m).__name__ == "SeqMaxPool2d" for m in model.modules())  # the original is untouched


def test_file_reads_back_with_nir(tmp_path):
    model = randomized(create_model("spiking_cnn", channels=(4,), input_size=(8, 8)))
    path = write_nir(export_nir(model), tmp_path / "m.nir")
    g = nir.read(path)  # nir's own reader with its type check
    assert isinstance(g.nodes["fc"], nir.Affine) and g.nodes["fc"].weight.shape == (10, 4 * 4 * 4)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: create_model("spiking_cnn", channels=(4,), input_size=(8, 8), reset_mechanism="subtract"), "subtract"),
        (lambda: create_model("spiking_cnn", channels=(4,), input_size=(8, 8), beta=1.0), "does not leak"),
        (lambda: torch.nn.Linear(3, 3), "supports SpikingCNN"),
    ],
)
def test_unsupported_settings_say_why(make, match):
    with pytest.raises(ValueError, match=match):
        export_nir(make(), (8, 8))


def test_wrong_size_and_suffix(tmp_path):
    model = create_model("spiking_cnn", channels=(4,), input_size=(8, 8))
    with pytest.raises(ValueError, match="flattens"):
        export_nir(model, (16, 16))
    with pytest.raises(ValueError, match="input_size"):
        export_nir(create_model("ms_resnet18"))
    with pytest.raises(ValueError, match=r"\.nir"):
        write_nir(export_nir(model), tmp_path / "m.h5")


def amplified(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm scales x3, so that the deep neurons fire and the residual sums matter."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.mul_(3.0)
    return model


@pytest.mark.slow
def test_ms_resnet18_round_trip_residual_edges(tmp_path):
    model = amplified(randomized(create_model("ms_resnet18", num_classes=5)))
    ev = events(2, 3, 32, 32, p=0.4)
    got, ref, _ = round_trip(model, (32, 32), ev, tmp_path)
    assert torch.allclose(got, ref, atol=1e-4), float((got - ref).abs().max())
    g = export_nir(model, (32, 32))
    sources = [s for s, d in g.edges if d == "layer1.1.sn1"]
    assert sorted(sources) == ["layer1.0.conv2", "maxpool"]  # membrane shortcut: the stream's two terms


@pytest.mark.slow
def test_trained_fashion_mnist_model_agrees_with_norse(tmp_path):
    """A small spiking CNN trained for a few steps on real Fashion-MNIST events; Norse predicts the same."""
    from i2e_lightning.converter import I2E
    from i2e_lightning.data.mnist import load_idx_split

    try:
        train_x, train_y = load_idx_split(FMNIST, "train")
        test_x, _ = load_idx_split(FMNIST, "test")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST idx files not installed (apt install dataset-fashion-mnist)")
    conv = I2E(0.15, 4, 4).eval()
    xs = conv(torch.from_numpy(train_x[:1024]).unsqueeze(1)).float()
    ys = torch.from_numpy(train_y[:1024])
    test_ev = conv(torch.from_numpy(test_x[:500]).unsqueeze(1)).float()
    torch.manual_seed(0)
    model = create_model("spiking_cnn", channels=(8, 16), pool="avg", input_size=(28, 28))
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
    for i in range(0, 1024, 128):
        loss = F.cross_entropy(model(xs[:, i : i + 128]), ys[i : i + 128])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    got, ref, _ = round_trip(model, (28, 28), test_ev, tmp_path)
    assert float((got.argmax(1) == ref.argmax(1)).float().mean()) >= 0.999
    assert torch.allclose(got, ref, atol=1e-4)


def test_cli_export_nir_from_a_checkpoint(tmp_path, capsys):
    import lightning as L

    from i2e_lightning.commands import main as cli_main
    from i2e_lightning.training.module import SpikingClassifier

    module = SpikingClassifier(arch="spiking_cnn", num_classes=4, in_channels=2, model_kwargs={"channels": [4, 8]})
    randomized(module.net, seed=1)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(module)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "m.nir"
    assert cli_main(["export-nir", "--ckpt_path", str(ckpt), "--out", str(out), "--check"]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "max pooling" in text and "same prediction 100.0 %" in text
    g = nir.read(out)
    assert g.metadata["i2e.checkpoint"] == "model.ckpt" and isinstance(g.nodes["stages.1.sn"], nir.LIF)
    assert cli_main(["export-nir", "--ckpt_path", str(tmp_path / "missing.ckpt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing.ckpt" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bottleneck_ms_resnet_round_trip(tmp_path):
    """MS-ResNet-50's bottleneck blocks (three LIF -> conv -> BN stages) on a one-block-per-stage net."""
    from i2e_lightning.models.ms_resnet import MSBottleneck, MSResNet

    model = amplified(randomized(MSResNet((1, 1, 1, 1), num_classes=4, block=MSBottleneck)))
    ev = events(2, 2, 16, 16, p=0.4)
    got, ref, _ = round_trip(model, (16, 16), ev, tmp_path)
    assert torch.allclose(got, ref, atol=1e-4), float((got - ref).abs().max())
    g = export_nir(model, (16, 16))
    assert {"layer1.0.sn3", "layer1.0.conv3"} <= set(g.nodes)
