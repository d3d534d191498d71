"""GPU checks (run by benchmarks/gpu_check.sh): the converter on CUDA equals CPU, train pairs, a training step.

Skipped without CUDA. The reference maps are written here from docs/spec.md §1 so that the tests do
not trust the converter's own code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from i2e_lightning.converter import DIRECTION_PAIRS, I2E, ORDER_PRESETS
from tests.helpers.official import to_dtype_scale
from tests.helpers.run_if import RunIf

pytestmark = RunIf(min_cuda_gpus=1)


def pair_map(images: torch.Tensor, a: int, b: int, ratio: float) -> torch.Tensor:
    """ON/OFF map ``[B, 2, H, W]`` of pair (from a, to b), straight from the spec, on CPU in float32."""
    x = to_dtype_scale(images) if images.dtype == torch.uint8 else images.float()
    v = x.amax(dim=1, keepdim=True)
    vmax, vmin = v.amax(dim=(1, 2, 3), keepdim=True), v.amin(dim=(1, 2, 3), keepdim=True)
    th = ratio * (vmax - vmin)
    k = torch.zeros(1, 1, 3, 3)
    k[0, 0, (a - 1) // 3, (a - 1) % 3] = -1.0
    k[0, 0, (b - 1) // 3, (b - 1) % 3] = 1.0
    dv = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), k)
    flat = vmax == vmin
    on = (dv >= th) & ~flat
    off = (-dv >= th) & ~flat
    return torch.cat([on, off], dim=1)


def _images(kind: str, b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "uint8":
        return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)
    if kind == "grey":
        return torch.rand(b, 1, h, w, generator=g)
    return torch.rand(b, 3, h, w, generator=g) * 7 - 2  # any finite range


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 13), (5, 32, 32), (2, 224, 224), (4, 31, 1)])
@pytest.mark.parametrize("kind", ["float", "uint8", "grey"])
@pytest.mark.parametrize("order", [0, 4, 5])
def test_cuda_eval_bit_exact_to_cpu(shape: tuple[int, int, int], kind: str, order: int) -> None:
    x = _images(kind, *shape)
    for t in (1, 8):
        conv = I2E(ratio=0.12, order=order, timesteps=t).eval()
        cpu = conv(x)
        gpu = conv(x.cuda())
        assert gpu.device.type == "cuda" and gpu.dtype == torch.bool
        assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_low_precision_input_and_float_output(dtype: torch.dtype) -> None:
    x = _images("float", 3, 40, 24).to(dtype)
    conv = I2E(ratio=0.1).eval()
    cpu = conv(x, dtype=torch.float32)
    gpu = conv(x.cuda(), dtype=torch.float32)
    assert gpu.dtype == torch.float32
    assert torch.equal(gpu.cpu(), cpu)


def test_cuda_eval_matches_spec_reference() -> None:
    x = _images("float", 6, 45, 37, seed=3)
    conv = I2E(ratio=0.15, order=4).eval()
    ev = conv(x.cuda()).cpu()
    for t, d in enumerate(ORDER_PRESETS[4]):
        a, b = DIRECTION_PAIRS[d][0]
        assert torch.equal(ev[t], pair_map(x, a, b, 0.15)), f"timestep {t}"


def test_cuda_flat_and_empty() -> None:
    conv = I2E().eval()
    flat = torch.full((2, 3, 9, 9), 0.5, device="cuda")
    assert not conv(flat).any()
    empty = conv(torch.rand(0, 3, 8, 8, device="cuda"))
    assert empty.shape == (8, 0, 2, 8, 8) and empty.device.type == "cuda"


@pytest.mark.parametrize("per_sample", [False, True])
def test_cuda_train_mode_pairs(per_sample: bool) -> None:
    x = _images("float", 8, 23, 29, seed=1)
    conv = I2E(ratio=0.12, order=4, per_sample=per_sample, generator=torch.Generator().manual_seed(0)).train()
    maps = {d: {p: pair_map(x, *p, 0.12) for p in DIRECTION_PAIRS[d]} for d in range(8)}
    seen: set[tuple[int, tuple[int, int]]] = set()
    for _ in range(60):
        ev = conv(x.cuda()).cpu()
        assert ev.shape == (8, 8, 2, 23, 29)
        for t, d in enumerate(conv.directions):
            for i in range(x.shape[0]):
                hits = [p for p, m in maps[d].items() if torch.equal(ev[t, i], m[i])]
                assert hits, f"timestep {t} sample {i} matches no allowed pair of direction {d}"
                seen.add((d, hits[0]))
    # over many calls every allowed pair of every direction occurs
    for d in range(8):
        assert {p for dd, p in seen if dd == d} == set(DIRECTION_PAIRS[d]), f"direction {d}"


def test_cuda_training_step() -> None:
    from i2e_lightning.models import ms_resnet18

    torch.manual_seed(0)
    model = ms_resnet18(num_classes=10, in_channels=2).cuda().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    conv = I2E(ratio=0.12, timesteps=4).train()
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, device="cuda")
    labels = torch.randint(0, 10, (8,), device="cuda")
    losses = []
    for _ in range(3):
        events = conv(images, dtype=torch.float32)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(events)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        opt.step()
        losses.append(float(loss))
    assert logits.shape == (8, 10)
    assert all(torch.isfinite(torch.tensor(losses)))
