"""Official I2E checkpoints: loading, error reporting, reverse export, and equivalence with SpikingJelly."""

from __future__ import annotations

import pytest
import torch

from i2e_lightning.models import (
    load_official,
    ms_resnet18,
    official_state_dict,
    save_official,
    set_spike_recording,
    spike_rates,
    to_official_state_dict,
)

sj_ref = pytest.importorskip("i2e_lightning.models.spikingjelly_ref")


pytestmark = pytest.mark.usefixtures("one_thread")


SJ_NETS = {"ms_resnet18": sj_ref.sj_ms_resnet18, "ms_resnet34": sj_ref.sj_ms_resnet34}


def _randomize(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BN statistics that keep the neurons spiking at moderate rates."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.3 + 0.3)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net


def _official_file(net: torch.nn.Module, path) -> dict:
    sd = {"module." + k: v for k, v in net.state_dict().items()}
    sd["module.i2e.weight"] = torch.randn(8, 1, 3, 3)  # the converter kernels: present, ignored
    ckpt = {"state_dict": sd, "epoch": 255, "best_acc": 0.9}
    torch.save(ckpt, path)
    return ckpt


def _events(T: int, B: int, H: int, W: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, 2, H, W, generator=g) < 0.3).float()


@pytest.mark.parametrize("arch", ["ms_resnet18", "ms_resnet34"])
def test_equivalence_with_spikingjelly(arch, tmp_path):
    ref = _randomize(SJ_NETS[arch](num_classes=10), seed=3).eval()
    path = tmp_path / f"{arch}.pth"
    _official_file(ref, path)
    # NCHW, as the official network runs: channels_last convolutions sum in another order and can
    # flip a spike on some inputs (the official network in channels_last flips the same way)
    ours = load_official(path, arch=arch, channels_last=False).eval()
    assert ours.num_classes == 10
    set_spike_recording(ours, True)
    x = _events(4, 2, 32, 32, seed=4)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    rates = spike_rates(ours)
    # the comparison means something only if the neurons actually spike, and not everywhere
    assert 0.02 < sum(rates.values()) / len(rates) < 0.9, rates
    assert a.std() > 1e-3
    diff = (a - b).abs().max().item()
    print(f"{arch}: max |logit difference| = {diff:.3g}")
    assert diff == 0.0  # bit-identical in NCHW
    assert torch.equal(a.argmax(1), b.argmax(1))


def test_training_mode_gradients_match_spikingjelly():
    ref = _randomize(sj_ref.sj_ms_resnet18(num_classes=5), seed=5)
    ours = load_official({"state_dict": ref.state_dict()})
    x = _events(2, 3, 20, 18, seed=6)
    y = torch.tensor([0, 1, 4])
    for net in (ours, ref):
        torch.nn.functional.cross_entropy(net(x), y).backward()
    og, rg = dict(ours.named_parameters()), dict(ref.named_parameters())
    assert og.keys() == rg.keys()
    for k in og:
        scale = rg[k].grad.abs().max().item()
        assert scale > 0, k
        # NHWC vs NCHW sums round differently: compare against the gradient's own scale
        assert (og[k].grad - rg[k].grad).abs().max().item() <= 1e-4 * scale, k


def test_reverse_export_loads_into_official_network(tmp_path):
    ours = _randomize(ms_resnet18(num_classes=7), seed=7).eval()
    sd = to_official_state_dict(ours, i2e_weight=torch.zeros(8, 1, 3, 3))
    assert "module.i2e.weight" in sd and all(k.startswith("module.") for k in sd)
    assert not any(k.endswith((".beta", ".threshold", "graded_spikes_factor", "reset_mechanism_val")) for k in sd)
    ref = sj_ref.sj_ms_resnet18(num_classes=7).eval()
    ref.load_state_dict({k.removeprefix("module."): v for k, v in sd.items() if "i2e." not in k}, strict=True)
    x = _events(2, 2, 32, 32, seed=8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
    # and the round trip through a file
    back = load_official(save_official(ours, tmp_path / "ours.pth")).eval()
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))


def test_accepts_plain_dict_and_infers_classes():
    src = ms_resnet18(num_classes=3, in_channels=4)
    plain = {k: v for k, v in to_official_state_dict(src, prefix="").items()}
    m = load_official(plain)
    assert m.num_classes == 3 and m.in_channels == 4
    for k, v in official_state_dict(plain).items():
        assert torch.equal(m.state_dict()[k], v)


def test_head_mismatch_and_replace_head():
    sd = to_official_state_dict(ms_resnet18(num_classes=10))
    with pytest.raises(ValueError, match=r"10-class head.*replace_head=True"):
        load_official(sd, num_classes=100)
    m = load_official(sd, num_classes=100, replace_head=True)
    assert m.fc.out_features == 100 and m.eval()(torch.zeros(1, 1, 2, 16, 16)).shape == (1, 100)
    assert torch.equal(m.conv1.weight, sd["module.conv1.weight"])


def test_errors_name_the_keys(tmp_path):
    sd = to_official_state_dict(ms_resnet18(num_classes=10), prefix="")
    broken = dict(sd)
    del broken["layer2.0.downsample.1.weight"]
    broken["layer5.0.conv1.weight"] = torch.zeros(1)
    broken["layer1.0.bn1.weight"] = torch.zeros(65)
    with pytest.raises(ValueError) as e:
        load_official(broken)
    msg = str(e.value)
    assert "missing in checkpoint: layer2.0.downsample.1.weight" in msg
    assert "unexpected in checkpoint: layer5.0.conv1.weight" in msg
    assert "layer1.0.bn1.weight: checkpoint (65,) vs model (64,)" in msg
    with pytest.warns(UserWarning, match="strict=False"):
        m = load_official(broken, strict=False)
    assert torch.equal(m.layer3[0].conv1.weight, sd["layer3.0.conv1.weight"])

    sd34 = to_official_state_dict(sj_ref.sj_ms_resnet34(num_classes=10), prefix="module.")
    with pytest.raises(ValueError, match=r"looks like ms_resnet34.*arch='ms_resnet34'"):
        load_official(sd34, arch="ms_resnet18")
    with pytest.raises(ValueError, match="unknown arch"):
        load_official(sd, arch="resnet50")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_official(tmp_path / "nowhere.pth")
    good = tmp_path / "good.pth"
    torch.save({"state_dict": sd}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.pth"):
        load_official(cut)
    with pytest.raises(ValueError, match="expected a tensor"):
        load_official({"state_dict": {**sd, "fc.weight": [1, 2]}})
