"""Every registered model, timm style: shapes on odd sizes, gradients, state reset, serialization, spike rates."""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch

from i2e_lightning.models import (
    create_model,
    lif_layers,
    list_models,
    replace_head,
    set_spike_recording,
    spike_rates,
)
from tests.helpers.run_if import RunIf

pytestmark = pytest.mark.usefixtures("one_thread")


# (T, B, H, W): non-square, small, odd
SIZES = [(2, 3, 19, 27), (1, 2, 16, 16), (3, 1, 33, 12)]


def _build(name: str, num_classes: int = 5, in_channels: int = 2, hw=(16, 16)) -> torch.nn.Module:
    kw = {"input_size": hw} if name == "spiking_cnn" else {}
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, in_channels=in_channels, **kw)


def _events(T, B, C, H, W, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, C, H, W, generator=g) < 0.3).float()


def test_registry():
    assert {"ms_resnet18", "ms_resnet34", "spiking_cnn"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown model 'resnet9'.*ms_resnet18"):
        create_model("resnet9")
    with pytest.raises(ValueError, match="bad arguments for model 'ms_resnet18'"):
        create_model("ms_resnet18", num_clases=3)
    assert create_model("MS-ResNet18", num_classes=4).fc.out_features == 4


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward(name, size):
    T, B, H, W = size
    in_ch = 3 if size[0] == 3 else 2
    m = _build(name, num_classes=7, in_channels=in_ch, hw=(H, W)).train()
    x = _events(T, B, in_ch, H, W)
    if B == 1:
        m.eval()  # BN cannot train on one value per channel at the 1x1 stages
    out = m(x)
    assert out.shape == (B, 7) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", list_models())
def test_state_is_reset_between_calls(name):
    m = _build(name).eval()
    a, b = _events(3, 2, 2, 16, 16, seed=1), _events(3, 2, 2, 16, 16, seed=2)
    # the pooled features join the logits: at random init the deep bottleneck nets (101/152) pass too
    # little membrane to their last LIF for any output spike, so their logits alone do not see the input
    pooled: list[torch.Tensor] = []
    if hasattr(m, "avgpool"):
        m.avgpool.register_forward_hook(lambda _m, _i, out: pooled.append(out))

    def run(x: torch.Tensor) -> torch.Tensor:
        pooled.clear()
        logits = m(x)
        return torch.cat([logits.flatten(), *(p.flatten() for p in pooled)])

    with torch.no_grad():
        first = run(a)
        other = run(b)
        again = run(a)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    first = first[: 2 * 5].view(2, 5)  # the logits
    # batch composition must not matter either (no state shared across samples)
    with torch.no_grad():
        assert torch.allclose(m(a[:, :1]), first[:1], atol=1e-6)


@pytest.mark.parametrize("name", list_models())
def test_serialization_roundtrip(name, tmp_path):
    m = _build(name).eval()
    x = _events(2, 2, 2, 16, 16)
    with torch.no_grad():
        ref = m(x)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    clones = [
        pickle.loads(pickle.dumps(m)),
        copy.deepcopy(m),
        torch.load(buf, weights_only=False),
    ]
    sd_model = _build(name)
    sd_model.load_state_dict(m.state_dict())
    clones.append(sd_model.eval())
    for c in clones:
        with torch.no_grad():
            assert torch.equal(c(x), ref)


@pytest.mark.parametrize("name", list_models())
def test_spike_rates(name):
    m = _build(name).train()
    x = _events(2, 2, 2, 16, 16)
    m(x)
    assert spike_rates(m) == {}  # recording is off by default
    set_spike_recording(m, True)
    m(x)
    rates = spike_rates(m)
    assert set(rates) == set(lif_layers(m)) and len(rates) >= 2
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    assert any(r > 0 for r in rates.values())
    set_spike_recording(m, False)
    assert spike_rates(m) == {}


@pytest.mark.parametrize("name", list_models())
def test_replace_head(name):
    m = _build(name, num_classes=5).eval()
    x = _events(2, 2, 2, 16, 16)
    before = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("fc.")}
    assert replace_head(m, 11) is m
    assert m(x).shape == (2, 11) and m.num_classes == 11
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
    fc = m.fc
    replace_head(m, 11)
    assert m.fc is fc  # same class count: untouched
    with pytest.raises(ValueError, match="num_classes"):
        replace_head(m, 0)


@pytest.mark.parametrize("name", list_models())
def test_bad_inputs_give_clear_errors(name):
    m = _build(name)
    with pytest.raises(ValueError, match=r"\[T, B, 2, H, W\]"):
        m(torch.zeros(2, 2, 16, 16))
    with pytest.raises(ValueError, match="transpose"):
        m(torch.zeros(2, 3, 4, 16, 16))
    with pytest.raises(ValueError, match="float"):
        m(torch.zeros(2, 2, 2, 16, 16, dtype=torch.bool))


def test_spiking_cnn_options():
    m = create_model("spiking_cnn", num_classes=3, channels=(8, 16, 16), hidden=32, pool="avg", global_pool=True)
    assert m(_events(2, 2, 2, 40, 24)).shape == (2, 3)  # global pooling: any size
    m = create_model("spiking_cnn", num_classes=3, channels=(4,), stem_stride=2, input_size=(20, 12), dropout=0.2)
    assert m(_events(2, 2, 2, 20, 12)).shape == (2, 3)
    bn = m.stages[0].bn
    assert bn.num_batches_tracked.item() == 1 and bn.running_var.mean() != 1  # only the real forward counted
    with pytest.raises(ValueError, match="built for 20x12"):
        m(_events(2, 2, 2, 16, 16))
    with pytest.raises(ValueError, match="too small"):
        create_model("spiking_cnn", channels=(4, 4, 4, 4, 4), input_size=(8, 8))
    with pytest.raises(ValueError, match="pool must be"):
        create_model("spiking_cnn", pool="median")


@pytest.mark.parametrize("name", ["ms_resnet18", "spiking_cnn"])
def test_channels_last_matches(name):
    kw = {"input_size": (16, 16)} if name == "spiking_cnn" else {}
    torch.manual_seed(0)
    a = create_model(name, num_classes=4, channels_last=False, **kw).eval()
    b = create_model(name, num_classes=4, **kw).eval()
    assert b.conv1.weight.is_contiguous(memory_format=torch.channels_last) if name != "spiking_cnn" else True
    b.load_state_dict(a.state_dict())
    x = _events(2, 2, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "k,stride,pad,hw",
    [(3, 1, 1, (1, 1)), (5, 1, 2, (1, 1)), (3, 2, 1, (2, 2)), (1, 2, 0, (2, 2)), (3, 2, 1, (2, 1)), (3, 1, 0, (3, 3))],
)
def test_conv_with_1x1_output_matches_conv2d(k, stride, pad, hw):
    from i2e_lightning.models.layers import SeqConv2d

    conv = SeqConv2d(6, 4, k, stride=stride, padding=pad, bias=True)
    assert conv._single_output_crop(*hw) is not None
    x = torch.randn(3, 2, 6, *hw, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y = conv(x)
    ref = torch.nn.functional.conv2d(x2.flatten(0, 1), conv.weight, conv.bias, stride=stride, padding=pad)
    ref = ref.view(3, 2, 4, 1, 1)
    torch.testing.assert_close(y, ref)
    w = torch.randn_like(ref)
    grads = torch.autograd.grad((y * w).sum(), (x, conv.weight, conv.bias))
    grads_ref = torch.autograd.grad((ref * w).sum(), (x2, conv.weight, conv.bias))
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)
    assert conv._single_output_crop(4, 4) is None  # larger outputs take the normal conv path


@pytest.mark.parametrize("name", ["ms_resnet18", "spiking_cnn"])
def test_bf16_autocast(name):
    m = _build(name, num_classes=3).train()
    x = _events(2, 2, 2, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.shape == (2, 3) and torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@RunIf(min_cuda_gpus=1)
@pytest.mark.parametrize("name", list_models())
def test_cuda_matches_cpu(name):
    m = _build(name, num_classes=4).eval()
    x = _events(3, 2, 2, 16, 16)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # TF32 could flip spikes
    try:
        with torch.no_grad():
            ref = m(x)
            out = m.cuda()(x.cuda()).cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)
    m.train()(x.cuda()).sum().backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in m.parameters())


def test_traced_model_is_valid_at_other_sizes():
    # the 1x1-output conv shortcut depends on the input size; a trace (ONNX export) must not bake it in
    m = _build("ms_resnet18", num_classes=3).eval()
    small, large = _events(2, 1, 2, 32, 32), _events(2, 1, 2, 64, 48)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python values in the LIF loop
        traced = torch.jit.trace(m, small, check_trace=False)
        torch.testing.assert_close(traced(small), m(small), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(traced(large), m(large), rtol=1e-4, atol=1e-5)
