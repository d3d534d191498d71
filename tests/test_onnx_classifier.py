"""Converter + spiking classifier exported to ONNX: logits match PyTorch, LIF stand-in is exact."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from i2e_lightning.commands.export_onnx import main as export_main
from i2e_lightning.converter import I2E
from i2e_lightning.models import ATan, MultiStepLeaky, create_model
from i2e_lightning.onnx import ExportLIF, export_classifier, make_exportable
from tests.helpers.official import to_dtype_scale


def create(name: str, **kw) -> nn.Module:
    return create_model(name, **kw)


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics/affine so that the network fires at all with random weights."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.8 - 0.2)
    return model.eval()


def ort_logits(path_or_session, x: torch.Tensor) -> np.ndarray:
    sess = path_or_session
    if not isinstance(sess, ort.InferenceSession):
        sess = session(path_or_session)
    return sess.run(None, {"images": x.numpy()})[0]


def session(path) -> ort.InferenceSession:
    # one thread: these graphs are tiny, and spinning worker threads only fight over a busy CPU
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def torch_logits(model: nn.Module, conv: I2E, x: torch.Tensor) -> np.ndarray:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return model.eval()(conv.eval()(x).float()).numpy()
    finally:
        torch.set_num_threads(threads)


def check_close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4, np.abs(got - ref).max()
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert np.ptp(ref) > 0  # the network is not dead: the comparison means something


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"reset_mechanism": "subtract"},
        {"reset_mechanism": "none"},
        {"beta": 0.8, "threshold": 0.7, "spike_grad": ATan(inclusive=False)},
    ],
)
def test_export_lif_equals_multistep_leaky(kw):
    torch.manual_seed(0)
    leaky = MultiStepLeaky(**kw).eval()
    x = torch.randn(7, 3, 4, 5) * 1.5
    x[0, 0, 0, 0] = float(leaky.threshold)  # exactly at the firing edge
    x[:, 1, 1, 1] = 0.5  # charges up to the threshold over steps
    ref = leaky(x)
    lif = make_exportable(nn.Sequential(leaky))[0]
    assert isinstance(lif, ExportLIF)
    assert torch.equal(lif(x), ref)
    assert ref.sum() > 0


def test_make_exportable_leaves_the_model_alone():
    model = create("ms_resnet18", num_classes=4)
    clone = make_exportable(model)
    assert any(isinstance(m, MultiStepLeaky) for m in model.modules())
    assert not any(isinstance(m, MultiStepLeaky) for m in clone.modules())
    with pytest.raises(ValueError, match="no MultiStepLeaky"):
        make_exportable(nn.Linear(2, 2))


@pytest.mark.parametrize("input_dtype", ["uint8", pytest.param("float32", marks=pytest.mark.slow)])
def test_ms_resnet18_logits_match(tmp_path, input_dtype):
    torch.manual_seed(0)
    model = randomise_bn(create("ms_resnet18", num_classes=7))
    conv = I2E(0.1, 4, 2)
    path = export_classifier(model, conv, tmp_path / "r18.onnx", image_size=(16, 16), input_dtype=input_dtype)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["i2e.kind"] == "classifier" and meta["i2e.num_classes"] == "7" and meta["i2e.timesteps"] == "2"
    assert meta["i2e.dynamic_size"] == "true"  # global pooling: any size
    g = torch.Generator().manual_seed(1)
    sess = session(path)
    for shape in [(3, 3, 16, 16), (1, 3, 13, 19), (2, 1, 16, 16)]:
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        if input_dtype == "float32":
            x = to_dtype_scale(x)
        check_close(ort_logits(sess, x), torch_logits(model, conv, x))


def test_spiking_cnn_logits_match(tmp_path):
    torch.manual_seed(0)
    model = randomise_bn(create("spiking_cnn", num_classes=10))
    conv = I2E(0.15, 4, 8)
    path = export_classifier(model, conv, tmp_path / "cnn.onnx", image_size=(32, 32), input_dtype="uint8")
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    x[1] = 17  # a flat image: no events, the network still answers
    check_close(ort_logits(path, x), torch_logits(model, conv, x))


def test_threaded_classifier_uses_ort_threads(tmp_path):
    """I2ERuntime(threads=N) on a classifier: one session with N intra-op threads, no sharding."""
    from i2e_lightning.onnx import I2ERuntime

    torch.manual_seed(0)
    model = randomise_bn(create("spiking_cnn", num_classes=10))
    path = export_classifier(model, I2E(0.15, 4, 4), tmp_path / "cnn.onnx", image_size=(32, 32), input_dtype="uint8")
    rt = I2ERuntime(path, threads=2)
    assert rt._shards == 1 and rt.session.get_session_options().intra_op_num_threads == 2
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    check_close(rt.run(x.numpy()), torch_logits(model, I2E(0.15, 4, 4), x))


def test_export_classifier_rejects_bad_arguments(tmp_path):
    model = create("ms_resnet18", num_classes=3)
    with pytest.raises(ValueError, match="I2E"):
        export_classifier(model, object(), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="TBCHW"):
        export_classifier(model, I2E(layout="BTCHW"), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="input dtype"):
        export_classifier(model, I2E(), tmp_path / "a.onnx", input_dtype="int8")


def _lightning_checkpoint(tmp_path):
    import lightning as L

    from i2e_lightning.training.module import SpikingClassifier

    module = SpikingClassifier(arch="spiking_cnn", num_classes=5, in_channels=2)
    randomise_bn(module.net, seed=3)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(module)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return module, ckpt


def test_lightning_checkpoint_through_cli(tmp_path, capsys):
    module, ckpt = _lightning_checkpoint(tmp_path)
    out = tmp_path / "clf.onnx"
    argv = ["--ckpt_path", str(ckpt), "--out", str(out), "--ratio", "0.15", "--timesteps", "4", "--resolution", "32"]
    assert export_main([*argv, "--input_dtype", "uint8", "--check"]) == 0
    assert "same argmax: True" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["i2e.kind"] == "classifier" and meta["i2e.arch"] == "spiking_cnn"
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    check_close(ort_logits(out, x), torch_logits(module.net, I2E(0.15, 4, 4), x))
    # without a recorded ratio or size the CLI says what to pass
    assert export_main(["--ckpt_path", str(ckpt), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--ratio" in capsys.readouterr().err
    assert export_main(["--ckpt_path", str(ckpt), "--out", str(out), "--layout", "BTCHW", "--ratio", "0.1"]) == 2
    # the training config supplies the converter settings and the image size
    cfg = tmp_path / "fm.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n  init_args:\n    timesteps: 3\n")
    assert export_main(["--ckpt_path", str(ckpt), "--config", str(cfg), "--out", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert (meta["i2e.ratio"], meta["i2e.timesteps"], meta["i2e.image_size"]) == ("0.15", "3", "[32, 32]")
    check_close(ort_logits(out, to_dtype_scale(x)), torch_logits(module.net, I2E(0.15, 4, 3), x))
    assert export_main(["--ckpt_path", str(tmp_path / "missing.ckpt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_checkpoint_records_the_datamodule_default_ratio(tmp_path, capsys):
    from i2e_lightning.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(timesteps=3)  # ratio left to the dataset default (0.15)
    assert dm.hparams["ratio"] == 0.15
    module, ckpt = _lightning_checkpoint(tmp_path)
    saved = torch.load(ckpt, weights_only=False)
    saved["datamodule_hyper_parameters"] = dict(dm.hparams)  # what Trainer.save_checkpoint stores
    torch.save(saved, ckpt)
    out = tmp_path / "clf.onnx"
    assert export_main(["--ckpt_path", str(ckpt), "--out", str(out)]) == 0, capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert (meta["i2e.ratio"], meta["i2e.timesteps"], meta["i2e.image_size"]) == ("0.15", "3", "[32, 32]")


class TinyFixedSize(nn.Module):
    """conv -> LIF -> flatten -> linear: only runs at its training size (8x8)."""

    in_channels = 2

    def __init__(self) -> None:
        super().__init__()
        from i2e_lightning.models.layers import SeqConv2d

        self.conv = SeqConv2d(2, 4, 3, padding=1)
        self.sn = MultiStepLeaky(beta=0.9, threshold=0.3)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.sn(self.conv(x)).flatten(2)).mean(0)


def test_fixed_size_network_through_the_runtime(tmp_path):
    from i2e_lightning.onnx.runtime import I2ERuntime

    torch.manual_seed(0)
    model = TinyFixedSize().eval()
    conv = I2E(0.1, 4, 5)
    path = export_classifier(model, conv, tmp_path / "tiny.onnx", image_size=(8, 8), input_dtype="uint8")
    rt = I2ERuntime(path)
    assert rt.info.kind == "classifier" and rt.info.num_classes == 3 and rt.info.fixed_size == (8, 8)
    assert rt.metadata["dynamic_size"] is False and rt.metadata["image_size"] == [8, 8]
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    check_close(rt.run(x.numpy(), batch_size=2), torch_logits(model, conv, x))
    assert rt.run(x[0].numpy()).shape == (3,)
    assert rt.run(np.zeros((0, 3, 8, 8), np.uint8)).shape == (0, 3)
    with pytest.raises(ValueError, match="exported for 8x8"):
        rt.run(np.zeros((1, 3, 9, 8), np.uint8))
