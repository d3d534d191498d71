"""Packed event rows: numpy and torch packing agree with np.packbits, unpacking round-trips, padding ignored."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from i2e_lightning.events import convert_packed, pack_events, packed_size, unpack_events, unpack_events_np
from tests.helpers.run_if import RunIf

SHAPES = [(1, 2, 1, 1), (1, 2, 1, 3), (2, 2, 3, 5), (3, 2, 7, 2), (5, 2, 4, 4), (8, 2, 5, 7), (8, 2, 32, 32)]


def random_events(shape, n=None, p=0.3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(shape if n is None else (n, *shape)) < p


@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_roundtrip_and_size(shape):
    ev = random_events(shape)
    packed = pack_events(ev)
    assert packed.dtype == np.uint8 and packed.shape == (math.ceil(math.prod(shape) / 8),)
    assert packed_size(shape) == packed.shape[0]
    # the format is np.packbits of the C-order flattening, MSB first
    np.testing.assert_array_equal(packed, np.packbits(ev.reshape(-1)))
    np.testing.assert_array_equal(unpack_events_np(packed, shape), ev)
    out = unpack_events(packed, shape)
    assert out.dtype == torch.bool and tuple(out.shape) == shape
    np.testing.assert_array_equal(out.numpy(), ev)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("t", [1, 3, 8])
def test_torch_packing_matches_numpy_for_batches(shape, t):
    shape = (t, *shape[1:])
    ev = random_events(shape, n=6, seed=t)
    ref = np.packbits(ev.reshape(6, -1), axis=-1)
    np.testing.assert_array_equal(pack_events(ev), ref)
    got = pack_events(torch.from_numpy(ev))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.uint8
    np.testing.assert_array_equal(got.numpy(), ref)
    back = unpack_events(torch.from_numpy(ref), shape)
    assert tuple(back.shape) == (6, *shape)
    np.testing.assert_array_equal(back.numpy(), ev)
    np.testing.assert_array_equal(unpack_events_np(ref, shape), ev)


def test_nonzero_values_count_as_events():
    ev = np.zeros((2, 2, 3, 3), dtype=np.uint8)
    ev[1, 0, 2, 1] = 7
    np.testing.assert_array_equal(unpack_events_np(pack_events(ev), ev.shape), ev != 0)
    np.testing.assert_array_equal(pack_events(torch.from_numpy(ev).float()).numpy(), pack_events(ev))


def test_padding_bits_are_ignored():
    shape = (1, 2, 1, 3)  # 6 bits -> 2 padding bits
    ev = np.array([1, 0, 1, 1, 0, 1], dtype=bool).reshape(shape)
    packed = pack_events(ev)
    assert packed.tolist() == [0b10110100]
    dirty = packed | 0b11  # garbage in the padding
    np.testing.assert_array_equal(unpack_events_np(dirty, shape), ev)
    np.testing.assert_array_equal(unpack_events(dirty, shape).numpy(), ev)


def test_unpack_rejects_wrong_sizes_and_dtypes():
    packed = pack_events(random_events((2, 2, 4, 4)))
    with pytest.raises(ValueError, match="needs"):
        unpack_events(packed, (2, 2, 4, 5))
    with pytest.raises(ValueError, match="uint8"):
        unpack_events(packed.astype(np.int16), (2, 2, 4, 4))
    with pytest.raises(ValueError, match="four positive"):
        unpack_events(packed, (2, 2, 8))
    with pytest.raises(ValueError, match=r"\[T, C, H, W\]"):
        pack_events(np.zeros((2, 2, 4), dtype=bool))


def test_unpack_moves_to_device_argument():
    ev = random_events((2, 2, 3, 3), n=4)
    out = unpack_events(pack_events(ev), (2, 2, 3, 3), device="cpu")
    assert out.device.type == "cpu"
    np.testing.assert_array_equal(out.numpy(), ev)


@RunIf(min_cuda_gpus=1)
@pytest.mark.parametrize("shape", [(8, 2, 5, 7), (8, 2, 32, 32), (8, 2, 128, 128)])
def test_gpu_unpack_and_pack_batches(shape):
    ev = random_events(shape, n=33)
    packed = np.packbits(ev.reshape(33, -1), axis=-1)
    out = unpack_events(packed, shape, device="cuda")
    assert out.is_cuda and out.dtype == torch.bool
    np.testing.assert_array_equal(out.cpu().numpy(), ev)
    repacked = pack_events(out)
    assert repacked.is_cuda
    np.testing.assert_array_equal(repacked.cpu().numpy(), packed)


def test_pack_rows_every_byte_pattern_and_fallbacks():
    from i2e_lightning.events import pack_rows

    patterns = torch.from_numpy(np.unpackbits(np.arange(256, dtype=np.uint8)).astype(bool))  # 256 bytes, MSB first
    events = patterns.view(4, 1, 2, 16, 16)  # 512 bits per row: the int64 gather path
    assert torch.equal(pack_rows(events), torch.from_numpy(np.packbits(events.reshape(4, -1).numpy(), axis=1)))
    odd = torch.rand(3, 1, 2, 3, 5) < 0.5  # 30 bits per row: the byte-wise path, zero padding bits
    assert torch.equal(pack_rows(odd), pack_events(odd))
    assert pack_rows(odd[:0]).shape == (0, 4)


def test_converter_packed_rows_feed_the_models():
    from i2e_lightning.converter import I2E
    from i2e_lightning.events import PackedEvents
    from i2e_lightning.models import create_model

    conv = I2E(0.12, 4, 4).eval()
    x = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    packed = convert_packed(conv, x)
    assert isinstance(packed, PackedEvents) and packed.shape == (4, 2, 12, 12)
    assert packed.rows.dtype == torch.uint8 and packed.rows.shape == (5, packed_size((4, 2, 12, 12)))
    assert torch.equal(packed.unpack(), conv(x))
    one = convert_packed(conv, x[0])
    assert torch.equal(one.rows, packed.rows[0])
    model = create_model("spiking_cnn", channels=(4,), input_size=(12, 12)).eval()
    with torch.no_grad():
        assert torch.equal(model(packed), model(conv(x).float()))


def test_lightning_module_unpacks_packed_batches():
    from i2e_lightning.converter import I2E
    from i2e_lightning.training.module import SpikingClassifier

    module = SpikingClassifier(arch="spiking_cnn", num_classes=3, in_channels=2, model_kwargs={"channels": [4]})
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    packed = convert_packed(I2E(0.12, 4, 2).eval(), x)
    labels = torch.tensor([0, 2])
    events, got_labels = module._unpack((packed, labels))
    assert torch.equal(events, I2E(0.12, 4, 2).eval()(x).float()) and got_labels is labels
    events, none = module._unpack(packed)  # a PackedEvents alone is a batch, not an (events, labels) pair
    assert events.shape == (2, 2, 2, 32, 32) and none is None
