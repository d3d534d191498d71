"""The I2E converter against docs/spec.md §1, with a reference written here from the spec."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from i2e_lightning import I2E
from tests.helpers.official import to_dtype_scale
from tests.helpers.run_if import RunIf

# The spec's table, restated independently of the package's own copy.
SPEC_PAIRS = [
    [(5, 6), (1, 2), (2, 3), (4, 5), (7, 8), (8, 9)],
    [(5, 2), (4, 1), (6, 3), (7, 4), (8, 5), (9, 6)],
    [(5, 3), (4, 2), (7, 5), (8, 6)],
    [(5, 1), (6, 2), (8, 4), (9, 5)],
    [(9, 4), (6, 1)],
    [(4, 3), (7, 6)],
    [(3, 8), (2, 7)],
    [(8, 1), (9, 2)],
]
SPEC_ORDERS = [
    [0, 1, 2, 3, 4, 5, 6, 7],
    [0, 1, 4, 5, 6, 7, 2, 3],
    [2, 3, 0, 1, 4, 5, 6, 7],
    [2, 3, 4, 5, 6, 7, 0, 1],
    [4, 5, 6, 7, 0, 1, 2, 3],
    [4, 5, 6, 7, 2, 3, 0, 1],
]


def kernel(pair: tuple[int, int]) -> torch.Tensor:
    k = torch.zeros(3, 3)
    a, b = pair
    k[(a - 1) // 3, (a - 1) % 3] = -1.0
    k[(b - 1) // 3, (b - 1) % 3] = 1.0
    return k


def reference(images: torch.Tensor, ratio: float, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Official formulation: V = max(R,G,B), replicate pad, conv2d, inclusive float32 thresholds."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    v = x.amax(dim=1, keepdim=True)
    th = ratio * (v.amax(dim=(1, 2, 3), keepdim=True) - v.amin(dim=(1, 2, 3), keepdim=True))
    weight = torch.stack([kernel(p) for p in pairs]).unsqueeze(1)
    dv = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), weight)  # [B, T, H, W]
    on, off = dv >= th, -dv >= th
    flat = (th == 0).view(-1, 1, 1, 1)  # the spec: a flat image gives no events
    on, off = on & ~flat, off & ~flat
    return torch.stack([on, off], dim=2).transpose(0, 1)  # [T, B, 2, H, W]


def canonical(order: int, timesteps: int) -> list[tuple[int, int]]:
    return [SPEC_PAIRS[d][0] for d in SPEC_ORDERS[order][:timesteps]]


SHAPES = [(1, 1), (1, 7), (6, 1), (2, 2), (5, 9), (32, 32), (17, 31)]


@pytest.mark.parametrize("order", range(6))
@pytest.mark.parametrize("timesteps", range(1, 9))
def test_eval_matches_reference_all_orders_and_timesteps(order: int, timesteps: int) -> None:
    gen = torch.Generator().manual_seed(order * 10 + timesteps)
    images = torch.rand(3, 3, 13, 10, generator=gen)
    conv = I2E(ratio=0.12, order=order, timesteps=timesteps).eval()
    events = conv(images)
    assert events.dtype == torch.bool
    assert events.shape == (timesteps, 3, 2, 13, 10)
    assert torch.equal(events, reference(images, 0.12, canonical(order, timesteps)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ratio", [0.01, 0.07, 0.15, 0.5])
def test_eval_matches_reference_odd_shapes(shape: tuple[int, int], ratio: float) -> None:
    gen = torch.Generator().manual_seed(hash((shape, ratio)) % 2**31)
    images = torch.rand(4, 3, *shape, generator=gen)
    assert torch.equal(I2E(ratio).eval()(images), reference(images, ratio, canonical(4, 8)))


def test_quantized_images_hit_thresholds_exactly() -> None:
    # uint8-valued images make dV == th ties common: the inclusive comparison must match.
    gen = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 4, (8, 3, 20, 20), dtype=torch.uint8, generator=gen) * 60
    for ratio in (0.25, 0.5, 0.75):
        images = to_dtype_scale(x8)
        assert torch.equal(I2E(ratio).eval()(images), reference(images, ratio, canonical(4, 8)))


@pytest.mark.parametrize("shape", SHAPES)
def test_uint8_equals_official_to_dtype_scaling(shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(1)
    x8 = torch.randint(0, 256, (3, 3, *shape), dtype=torch.uint8, generator=gen)
    conv = I2E(0.1).eval()
    assert torch.equal(conv(x8), conv(to_dtype_scale(x8)))
    assert torch.equal(conv(x8), reference(to_dtype_scale(x8), 0.1, canonical(4, 8)))


def test_grey_equals_replicated_rgb() -> None:
    grey = torch.rand(2, 1, 9, 11)
    conv = I2E().eval()
    assert torch.equal(conv(grey), conv(grey.expand(-1, 3, -1, -1)))


def test_scaling_invariance_for_powers_of_two_and_offsets() -> None:
    images = torch.rand(4, 3, 16, 16)
    conv = I2E().eval()
    base = conv(images)
    assert torch.equal(conv(images * 4.0), base)
    assert torch.equal(conv(images * 0.25), base)
    # general scalings change float32 rounding only at exact ties: nearly identical
    assert (conv(images * 255.0 - 3.0) != base).float().mean() < 1e-3


def test_single_image_and_empty_batch() -> None:
    conv = I2E(timesteps=5).eval()
    image = torch.rand(3, 7, 8)
    assert conv(image).shape == (5, 2, 7, 8)
    assert torch.equal(conv(image), conv(image.unsqueeze(0))[:, 0])
    empty = conv(torch.rand(0, 3, 7, 8))
    assert empty.shape == (5, 0, 2, 7, 8)


def test_flat_image_gives_no_events() -> None:
    conv = I2E().eval()
    flat = torch.full((2, 3, 6, 6), 0.3)
    assert not conv(flat).any()
    mixed = torch.cat([flat[:1], torch.rand(1, 3, 6, 6)])
    events = conv(mixed)
    assert not events[:, 0].any() and events[:, 1].any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs_computed_in_float32(dtype: torch.dtype) -> None:
    images = torch.rand(2, 3, 12, 12).to(dtype)
    conv = I2E().eval()
    assert torch.equal(conv(images), conv(images.float()))


@pytest.mark.parametrize("dtype", ["bool", "uint8", "float32", torch.float16, torch.bfloat16])
def test_output_dtypes(dtype: str | torch.dtype) -> None:
    images = torch.rand(2, 3, 8, 8)
    ref = I2E().eval()(images)
    out = I2E(dtype=dtype).eval()(images)
    assert out.dtype == (getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    assert torch.equal(out.bool(), ref)
    assert set(out.unique().tolist()) <= {0, 1}


def test_layout_btchw_and_out_buffer() -> None:
    images = torch.rand(3, 3, 8, 9)
    ref = I2E().eval()(images)
    assert torch.equal(I2E(layout="BTCHW").eval()(images), ref.transpose(0, 1))
    buf = torch.empty(8, 3, 2, 8, 9)
    result = I2E().eval()(images, out=buf)
    assert result.data_ptr() == buf.data_ptr() and torch.equal(buf.bool(), ref)
    with pytest.raises(ValueError, match="out must have shape"):
        I2E().eval()(images, out=torch.empty(8, 2, 2, 8, 9))


def test_eval_is_deterministic() -> None:
    images = torch.rand(4, 3, 10, 10)
    conv = I2E().eval()
    assert torch.equal(conv(images), conv(images))
    conv.train()
    conv.eval()
    assert torch.equal(conv(images), conv(images))


def allowed_maps(images: torch.Tensor, ratio: float, direction: int) -> torch.Tensor:
    """[P, B, 2, H, W]: the events of every allowed pair of one direction."""
    return torch.stack([reference(images, ratio, [pair])[0] for pair in SPEC_PAIRS[direction]])


@pytest.mark.parametrize("per_sample", [False, True])
def test_train_mode_pairs_are_allowed_and_all_occur(per_sample: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(6, 3, 12, 12, generator=gen)
    conv = I2E(0.05, per_sample=per_sample, generator=torch.Generator().manual_seed(0)).train()
    order = SPEC_ORDERS[4]
    maps = [allowed_maps(images, 0.05, d) for d in order]
    seen = [set() for _ in order]
    shared_across_batch = True
    for _ in range(60):
        events = conv(images)
        for t, direction_maps in enumerate(maps):
            picks = []
            for b in range(images.shape[0]):
                match = [p for p in range(len(direction_maps)) if torch.equal(events[t, b], direction_maps[p, b])]
                assert match, f"timestep {t}, sample {b}: not the map of an allowed pair"
                picks.append(match[0])
            seen[t].update(picks)
            shared_across_batch &= len(set(picks)) == 1
    for t, d in enumerate(order):
        assert seen[t] == set(range(len(SPEC_PAIRS[d]))), f"timestep {t}: pairs {seen[t]} never all drawn"
    assert shared_across_batch != per_sample


def test_train_mode_pair_frequencies_are_uniform() -> None:
    conv = I2E(per_sample=True, generator=torch.Generator().manual_seed(1)).train()
    choices = torch.cat([conv._draw_choices(500) for _ in range(20)], dim=1)  # [T, 10000]
    for t, d in enumerate(conv.directions):
        counts = torch.bincount(choices[t], minlength=len(SPEC_PAIRS[d])).float()
        expected = choices.shape[1] / len(SPEC_PAIRS[d])
        assert ((counts - expected).abs() / expected).max() < 0.1


def test_generator_makes_training_draws_reproducible() -> None:
    images = torch.rand(4, 3, 9, 9)
    a = I2E(per_sample=True, generator=torch.Generator().manual_seed(7)).train()
    b = I2E(per_sample=True, generator=torch.Generator().manual_seed(7)).train()
    assert torch.equal(a(images), b(images))


def test_module_pickles_and_has_no_state() -> None:
    conv = I2E(0.07, order=[7, 6, 5, 4, 3, 2, 1, 0], timesteps=3)
    clone = pickle.loads(pickle.dumps(conv))
    assert clone.order == conv.order and clone.ratio == 0.07 and clone.timesteps == 3
    assert not list(conv.parameters()) and not conv.state_dict()
    assert "ratio=0.07" in repr(conv)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.tensor([[[[float("nan")]]]]).expand(1, 3, 2, 2), "NaN or Inf"),
        (torch.full((1, 3, 2, 2), float("inf")), "NaN or Inf"),
        (torch.cat([torch.full((1, 1, 2, 2), -float("inf")), torch.rand(1, 2, 2, 2)], 1), "NaN or Inf"),
        (torch.rand(3, 4), "rank 2"),
        (torch.rand(1, 1, 3, 4, 4), "rank 5"),
        (torch.rand(2, 2, 4, 4), "1 \\(grey\\) or 3 \\(RGB\\) channels"),
        (torch.rand(2, 4, 4, 4), "1 \\(grey\\) or 3 \\(RGB\\) channels"),
        (torch.rand(1, 3, 0, 4), "height and width of at least 1"),
        (torch.rand(1, 3, 4, 0), "height and width of at least 1"),
        (torch.ones(1, 3, 4, 4, dtype=torch.int32), "float .* or uint8"),
    ],
)
def test_bad_input_raises_clear_error(images: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        I2E()(images)


def test_non_tensor_input() -> None:
    with pytest.raises(ValueError, match="torch.Tensor"):
        I2E()([[0.0]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 0.0}, "ratio must be a number in \\(0, 1\\)"),
        ({"ratio": 1.0}, "ratio must be a number in \\(0, 1\\)"),
        ({"ratio": -0.1}, "ratio must be a number in \\(0, 1\\)"),
        ({"ratio": "0.1"}, "ratio must be a number in \\(0, 1\\)"),
        ({"order": 6}, "order preset 6 does not exist"),
        ({"order": [0, 1, 2, 3, 4, 5, 6, 6]}, "not a permutation of 0-7"),
        ({"order": [0, 1, 2]}, "not a permutation of 0-7"),
        ({"order": "abc"}, "list of the 8 direction indices 0-7"),
        ({"timesteps": 0}, "timesteps must be an integer from 1 to 8"),
        ({"timesteps": 9}, "timesteps must be an integer from 1 to 8"),
        ({"dtype": "int7"}, "output dtype"),
        ({"layout": "HWC"}, "layout must be one of"),
    ],
)
def test_bad_settings_raise_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        I2E(**kwargs)


@RunIf(min_cuda_gpus=1)
def test_cuda_matches_cpu_bit_for_bit() -> None:
    images = torch.rand(16, 3, 37, 53)
    conv = I2E().eval()
    assert torch.equal(conv(images.cuda()).cpu(), conv(images))
    assert torch.equal(conv((images * 255).to(torch.uint8).cuda()).cpu(), conv((images * 255).to(torch.uint8)))


def test_cpu_output_cache_never_overwrites_live_events() -> None:
    conv = I2E(dtype="float32").eval()
    a_images, b_images = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)  # 1 MiB outputs: cached
    first = conv(a_images)
    kept = first.clone()
    second = conv(b_images)  # `first` is alive: must get other memory
    assert first.data_ptr() != second.data_ptr()
    assert torch.equal(first, kept)
    view = second[:, :2]  # a view keeps the buffer alive too
    ptr = second.data_ptr()
    del second
    third = conv(a_images)
    assert third.data_ptr() != ptr and torch.equal(third, kept)
    del view, third
    fourth = conv(b_images)  # now a buffer is free again and is reused
    assert fourth.data_ptr() == ptr  # the oldest idle buffer kept: `second`'s
    assert torch.equal(fourth, I2E(dtype="float32", cache_outputs=False).eval()(b_images))
    conv.clear_cache()
    assert not conv._outputs.buffers


def test_cached_module_pickles_without_its_buffers() -> None:
    conv = I2E(dtype="float32").eval()
    conv(torch.rand(4, 3, 64, 64))
    assert conv._outputs.buffers
    clone = pickle.loads(pickle.dumps(conv))
    assert not clone._outputs.buffers and clone(torch.rand(1, 3, 4, 4)).shape == (8, 1, 2, 4, 4)


@pytest.mark.parametrize("chunk_elements", [1, 100, 1 << 19])  # 1 sample, 2 of 5 samples, whole batch
@pytest.mark.parametrize("dtype", ["bool", "uint8", "float32", torch.float16])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.uint8, torch.float64])
def test_cpu_chunks_give_the_same_events(
    monkeypatch: pytest.MonkeyPatch, chunk_elements: int, dtype: str | torch.dtype, input_dtype: torch.dtype
) -> None:
    monkeypatch.setattr("i2e_lightning.converter.i2e._CPU_CHUNK_ELEMENTS", chunk_elements)
    images = (torch.rand(5, 3, 7, 9) * 255).to(input_dtype)
    conv = I2E(0.1, order=2, dtype=dtype).eval()
    scaled = to_dtype_scale(images) if input_dtype == torch.uint8 else images.float()
    expected = reference(scaled, 0.1, canonical(2, 8))
    for _ in range(2):  # the second call runs on recycled scratch buffers
        assert torch.equal(conv(images).bool(), expected)


@pytest.mark.parametrize("dtype", ["bool", "uint8", "float16", "bfloat16"])
def test_direct_comparison_writes_as_on_cuda(monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    # CUDA compares straight into the output's slices, over the whole batch: the same path on the CPU
    monkeypatch.setattr("i2e_lightning.converter.i2e._compare_via_float32", lambda out, on_cpu: False)
    monkeypatch.setattr("i2e_lightning.converter.i2e._CPU_CHUNK_ELEMENTS", 1 << 30)
    images = torch.rand(4, 3, 9, 7)
    expected = reference(images, 0.1, canonical(4, 8))
    assert torch.equal(I2E(0.1, dtype=dtype).eval()(images).bool(), expected)


@pytest.mark.parametrize("per_sample", [False, True])
def test_train_mode_pairs_across_cpu_chunks(monkeypatch: pytest.MonkeyPatch, per_sample: bool) -> None:
    monkeypatch.setattr("i2e_lightning.converter.i2e._CPU_CHUNK_ELEMENTS", 2 * 12 * 12)  # chunks of 2, 2, 1
    images = torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    conv = I2E(0.05, per_sample=per_sample, generator=torch.Generator().manual_seed(2)).train()
    maps = [allowed_maps(images, 0.05, d) for d in SPEC_ORDERS[4]]
    for _ in range(10):
        events = conv(images)
        for t, direction_maps in enumerate(maps):
            picks = set()
            for b in range(images.shape[0]):
                match = [p for p in range(len(direction_maps)) if torch.equal(events[t, b], direction_maps[p, b])]
                assert match, f"timestep {t}, sample {b}: not the map of an allowed pair"
                picks.add(match[0])
            if not per_sample:  # one draw per call, whatever the chunking
                assert len(picks) == 1


def test_scratch_buffers_are_recycled_and_cleared() -> None:
    conv = I2E().eval()
    images = torch.rand(8, 3, 224, 224)
    first = conv(images).clone()
    scratch = [b.data_ptr() for b in conv._scratch.buffers]
    assert scratch  # the padded map and dV are big enough to be kept
    conv(torch.rand(8, 3, 224, 224))
    assert torch.equal(conv(images), first)
    assert [b.data_ptr() for b in conv._scratch.buffers] == scratch
    conv.clear_cache()
    assert not conv._scratch.buffers and not conv._outputs.buffers


def test_uint8_scaling_is_exact_for_every_value() -> None:
    # each of the 256 values as a flat-channel pixel next to 0 and 255, so V keeps the value itself
    values = torch.arange(256, dtype=torch.uint8)
    conv = I2E().eval()
    v = conv.intensity(values.view(1, 1, 16, 16).expand(1, 3, 16, 16))
    assert torch.equal(v.flatten(), to_dtype_scale(values))
    padded = conv._padded_intensity(values.view(1, 1, 16, 16).repeat(1, 3, 1, 1))
    assert torch.equal(padded[0, 1:-1, 1:-1].flatten(), to_dtype_scale(values))
    # the multiply is what makes the difference: x / 255 rounds 126 of the 256 values the other way
    assert int((to_dtype_scale(values) != values.float() / 255).sum()) == 126
