"""Dense bool frames <-> tonic-style sparse (x, y, t, p) events: loss-free both ways, on generated and real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from i2e_lightning.converter import I2E
from i2e_lightning.events import TONIC_DTYPE, TONIC_INT64_DTYPE, dense_to_sparse, sensor_size, sparse_to_dense

NMNIST = Path(__file__).parent / "fixtures" / "events" / "sample_nmnist.bin"


def read_nmnist(path: Path) -> np.ndarray:
    """N-MNIST .bin -> int64 columns x, y, p, t (5 bytes per event; y = 240 marks a timer overflow)."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    p = raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    t = t + (np.cumsum(y == 240) << 13)
    keep = y != 240
    return np.stack([x[keep], y[keep], p[keep], t[keep]], axis=1)


def test_tonic_dtype_conventions():
    assert TONIC_DTYPE.names == ("x", "y", "t", "p")
    assert TONIC_DTYPE["x"] == np.int16 and TONIC_DTYPE["t"] == np.int64 and TONIC_DTYPE["p"] == np.bool_
    assert all(TONIC_INT64_DTYPE[f] == np.int64 for f in "xytp")
    assert sensor_size((8, 2, 32, 48)) == (48, 32, 2)


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (1, 2, 3, 5), (3, 2, 7, 2), (8, 2, 32, 32)])
@pytest.mark.parametrize("dtype", [TONIC_DTYPE, TONIC_INT64_DTYPE])
def test_dense_sparse_dense_roundtrip(shape, dtype):
    ev = np.random.default_rng(sum(shape)).random(shape) < 0.2
    sp = dense_to_sparse(ev, dt_us=1000, dtype=dtype)
    assert sp.dtype == dtype and len(sp) == ev.sum()
    assert np.all(np.diff(sp["t"]) >= 0)  # time-sorted, as tonic expects
    assert set(np.unique(sp["t"]).tolist()) <= {1000 * k for k in range(shape[0])}
    back = sparse_to_dense(sp, sensor_size(shape), timesteps=shape[0], dt_us=1000)
    np.testing.assert_array_equal(back, ev)


def test_polarity_time_and_coordinates():
    ev = np.zeros((3, 2, 4, 5), dtype=bool)
    ev[2, 0, 1, 3] = True  # ON at t=2, y=1, x=3
    ev[0, 1, 3, 0] = True  # OFF at t=0, y=3, x=0
    sp = dense_to_sparse(torch.from_numpy(ev), dt_us=250)
    assert sp.tolist() == [(0, 3, 0, False), (3, 1, 500, True)]


def test_sparse_to_sparse_roundtrip_of_converted_image():
    img = torch.randint(0, 256, (1, 3, 9, 11), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ev = I2E(ratio=0.1).eval()(img)[:, 0].numpy()
    sp = dense_to_sparse(ev, dt_us=33)
    sp2 = dense_to_sparse(sparse_to_dense(sp, sensor_size(ev.shape), 8, dt_us=33), dt_us=33)
    np.testing.assert_array_equal(sp, sp2)


def test_real_nmnist_recording():
    cols = read_nmnist(NMNIST)
    assert len(cols) > 1000 and cols[:, 0].max() < 34 and cols[:, 1].max() < 34
    dt = 10_000  # 10 ms bins
    steps = int(cols[:, 3].max() // dt) + 1
    # real events as a structured array with times snapped to the bin start
    real = np.empty(len(cols), dtype=TONIC_INT64_DTYPE)
    real["x"], real["y"], real["p"], real["t"] = cols[:, 0], cols[:, 1], cols[:, 2], (cols[:, 3] // dt) * dt
    dense = sparse_to_dense(real, (34, 34, 2), timesteps=steps, dt_us=dt)
    assert dense.shape == (steps, 2, 34, 34)
    # ON (p=1) lands in channel 0; every distinct real (bin, p, y, x) is exactly one dense event
    distinct = {(int(t) // dt, int(p), int(y), int(x)) for x, y, t, p in real.tolist()}
    assert int(dense.sum()) == len(distinct)
    assert dense[:, 0].sum() == len({k for k in distinct if k[1] == 1})
    sp = dense_to_sparse(dense, dt_us=dt, dtype=TONIC_INT64_DTYPE)
    assert {(int(t) // dt, int(p), int(y), int(x)) for x, y, t, p in sp.tolist()} == distinct
    np.testing.assert_array_equal(sparse_to_dense(sp, (34, 34, 2), steps, dt), dense)


def test_bad_sparse_input():
    sp = dense_to_sparse(np.ones((2, 2, 2, 2), dtype=bool), dt_us=10)
    with pytest.raises(ValueError, match="outside sensor_size"):
        sparse_to_dense(sp, (1, 2, 2), dt_us=10)
    with pytest.raises(ValueError, match="multiples of dt_us"):
        sparse_to_dense(sp, (2, 2, 2), dt_us=3)
    with pytest.raises(ValueError, match="past timestep"):
        sparse_to_dense(sp, (2, 2, 2), timesteps=1, dt_us=10)
    with pytest.raises(ValueError, match="sensor_size must be"):
        sparse_to_dense(sp, (2, 2), dt_us=10)
    bad = sp.astype(TONIC_INT64_DTYPE)
    bad["p"][0] = 3
    with pytest.raises(ValueError, match="polarity"):
        sparse_to_dense(bad, (2, 2, 2), dt_us=10)
    with pytest.raises(ValueError, match="fields x, y, t, p"):
        sparse_to_dense(np.zeros(3, dtype=[("x", int), ("y", int)]), (2, 2, 2))
    with pytest.raises(ValueError, match="wider dtype"):
        dense_to_sparse(
            np.ones((2, 2, 1, 1), dtype=bool), dt_us=2**40, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i4"), ("p", "?")]
        )
    with pytest.raises(ValueError, match=r"\[T, 2, H, W\]"):
        dense_to_sparse(np.ones((2, 3, 1, 1), dtype=bool))
    empty = sparse_to_dense(sp[:0], (2, 2, 2), dt_us=10)
    assert empty.shape == (1, 2, 2, 2) and not empty.any()
