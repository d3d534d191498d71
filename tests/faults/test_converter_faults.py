"""Converter edge cases: inputs that require a gradient, meta tensors, float64 beyond float32's
range, numpy scalars as settings, and the CPU output cache never handing out memory a caller still
holds (through a tensor, a view, numpy, or only the ``untyped_storage()`` object)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2e_lightning.converter import I2E


def test_input_that_requires_grad_converts_like_a_plain_one() -> None:
    x = torch.rand(2, 3, 9, 11, requires_grad=True)
    conv = I2E(0.1, dtype=torch.float32).eval()
    ev = conv(x)
    assert torch.equal(ev, conv(x.detach().clone())) and not ev.requires_grad
    assert conv(x * 2).shape == (8, 2, 2, 9, 11)  # a non-leaf from a graph, too


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_meta_tensor_gives_the_output_shape(dtype: torch.dtype) -> None:
    ev = I2E(0.1, timesteps=3, dtype=dtype)(torch.empty(4, 3, 17, 5, device="meta"))
    assert ev.device.type == "meta" and ev.shape == (3, 4, 2, 17, 5) and ev.dtype == dtype


def test_float64_beyond_float32_range_is_refused() -> None:
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64) * 1e300
    with pytest.raises(ValueError, match="beyond float32's range.*rescale"):
        I2E(0.1)(x)
    within = torch.rand(1, 1, 8, 8, dtype=torch.float64) * 1e30  # representable in float32: converted
    assert torch.equal(I2E(0.1).eval()(within), I2E(0.1).eval()(within.float()))


@pytest.mark.parametrize("ratio", [np.float32(0.15), np.float64(0.15), np.float16(0.15)], ids=["f32", "f64", "f16"])
def test_numpy_scalar_settings(ratio) -> None:
    conv = I2E(ratio, order=np.int64(4), timesteps=np.int32(8))
    assert conv.ratio == float(ratio) and isinstance(conv.ratio, float) and conv.timesteps == 8
    assert conv.order == I2E(0.15, order=4).order
    x = torch.rand(2, 3, 6, 6)
    assert torch.equal(conv.eval()(x), I2E(float(ratio)).eval()(x))
    for bad in (np.bool_(True), True, "0.1", np.float32(1.5)):
        with pytest.raises(ValueError, match="ratio"):
            I2E(bad)
    with pytest.raises(ValueError, match="timesteps"):
        I2E(0.1, timesteps=np.float32(8))


def _keep_storage_only(ev: torch.Tensor):
    storage, shape = ev.untyped_storage(), ev.shape
    return lambda: torch.empty(0, dtype=ev.dtype).set_(storage, 0, shape)


def _keep_view(ev: torch.Tensor):
    view = ev[1:]
    return lambda: view


def _keep_numpy(ev: torch.Tensor):
    arr = ev.numpy()
    return lambda: torch.from_numpy(arr)


@pytest.mark.parametrize("keep", [_keep_storage_only, _keep_view, _keep_numpy], ids=["storage", "view", "numpy"])
def test_output_cache_never_overwrites_held_memory(keep) -> None:
    conv = I2E(0.1, dtype=torch.float32)  # 8 x 16 x 2 x 64 x 64 float32 = 16 MB: cached
    x = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ev = conv(x)
    held = keep(ev)
    expected = held().clone()
    del ev
    for seed in range(1, 4):  # later calls must take other memory
        conv(torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(seed)))
    assert torch.equal(held(), expected)


def test_output_cache_still_reuses_released_memory() -> None:
    conv = I2E(0.1, dtype=torch.float32)
    x = torch.rand(16, 3, 64, 64)
    ptr = conv(x).data_ptr()  # dropped at once
    assert conv(x).data_ptr() == ptr
