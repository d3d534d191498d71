"""Run an exported I2E model (converter, or converter + spiking classifier) with ONNX Runtime only.

Deployment needs this one file, numpy and onnxruntime (``onnxruntime-gpu`` for CUDA); Pillow only
to decode image files. It never imports torch, nor anything else of i2e_lightning.

The file lives in the package as ``i2e_lightning/onnx/runtime.py``; ``export/i2e_runtime.py`` is a
byte-identical copy to drop next to a deployed model (``make docs`` refreshes it, a test checks it).

    from i2e_runtime import I2ERuntime            # or: from i2e_lightning.onnx import I2ERuntime
    rt = I2ERuntime("export/i2e.onnx")            # CUDA when onnxruntime-gpu and a GPU are there
    events = rt.run(images)                       # uint8/float [B, 1|3, H, W] (or one [C, H, W])
    for paths, events in rt.run_files(["a.png", "b.jpg"], size=(224, 224), batch_size=32): ...
    print(rt.providers, rt.metadata)

Inputs are checked (rank, dtype, channels, size, finiteness) before ONNX Runtime sees them, so a
bad array gives a ``ValueError`` that says what to change instead of a runtime stack trace.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

__all__ = ["CPU", "CUDA", "I2ERuntime", "RuntimeInfo", "choose_providers", "event_rate", "find_images", "load_images"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_PREFIX = "i2e."
_ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}
# most pixels per run of a sharded batch-major converter (see I2ERuntime): several pieces per thread
# even out a thread that starts late, each run costs ~60 us of fixed overhead (8 images of 224 px measured best)
_PIECE_PIXELS = 1 << 19
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def choose_providers(providers: Sequence[str] | None = None) -> list[str]:
    """Execution providers to ask for: the given ones (checked), else CUDA when built in, then the CPU.

    onnxruntime-gpu lists ``CUDAExecutionProvider`` whenever it is installed; without a usable GPU the
    session falls back to the CPU, which :attr:`I2ERuntime.providers` (the session's own list) shows.
    """
    available = list(ort.get_available_providers())
    if providers is not None:
        providers = [providers] if isinstance(providers, str) else list(providers)
        missing = [p for p in providers if p not in available]
        if missing or not providers:
            raise ValueError(
                f"execution provider(s) {missing or providers} are not available in this onnxruntime build "
                f"(available: {available}); install onnxruntime-gpu for {CUDA}"
            )
        return providers if CPU in providers else [*providers, CPU]
    return [CUDA, CPU] if CUDA in available else [CPU]


def _parse_meta(raw: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        if not key.startswith(_PREFIX):
            continue
        name = key[len(_PREFIX) :]
        try:
            meta[name] = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            meta[name] = value
    return meta


@dataclass(frozen=True)
class RuntimeInfo:
    """What the model file says about itself, from its ``i2e.*`` metadata and its input/output."""

    kind: str  # "converter" or "classifier"
    ratio: float
    order: tuple[int, ...]
    timesteps: int
    input_dtype: str
    output_dtype: str
    layout: str
    version: str
    input_name: str
    output_name: str
    channels: tuple[int, ...] = (1, 3)
    fixed_size: tuple[int, int] | None = None
    num_classes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_NOT_FINITE = "images contain NaN or Inf values: clean or clamp the input before conversion"


def _finite(x: np.ndarray) -> bool:
    """Whether float ``x`` holds no NaN / Inf: NaN propagates through min and max, an Inf is one of them
    (two passes, no temporary array as ``np.isfinite(x).all()`` would make)."""
    return not x.size or bool(np.isfinite(x.min()) and np.isfinite(x.max()))


def event_rate(events: np.ndarray) -> float:
    """Fraction of event-tensor entries that are set (0 for an empty tensor)."""
    return float(np.count_nonzero(events)) / events.size if events.size else 0.0


def _to_8_bit(im, path: Path):
    """16-bit images scaled to 8 bits (Pillow's convert clips them), float images in [0, 1] scaled, others refused."""
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N") or (im.mode == "I" and im.format == "PNG"):
        a = np.clip(np.asarray(im), 0, 65535).astype(np.uint32)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8))
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if a.size and (not np.isfinite(a).all() or a.min() < 0 or a.max() > 1):
            raise ValueError(f"{path} is a float image outside [0, 1]: save it as 8-bit or scale it to [0, 1]")
        return Image.fromarray(np.rint(a * 255).astype(np.uint8))
    if im.mode == "I":
        raise ValueError(f"{path} holds 32-bit integers: save it as an 8- or 16-bit image")
    return im


def load_images(paths: Sequence[str | Path], size: tuple[int, int] | None = None, mode: str = "RGB") -> np.ndarray:
    """Decode image files to uint8 ``[N, C, H, W]`` (Pillow needed for files; arrays need no Pillow).

    ``size=(H, W)`` resizes with bicubic interpolation (Pillow's, antialiased); without it all
    images must have the same size. ``mode`` is ``"RGB"`` (3 channels) or ``"L"`` (grey, 1 channel).
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("decoding image files needs Pillow: pip install pillow (or pass numpy arrays)") from None
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (height, width) >= 1, got {size!r}")
    arrays = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"image file {path} does not exist")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im = _to_8_bit(im, path).convert(mode)
                    if size is not None and im.size != (size[1], size[0]):
                        im = im.resize((int(size[1]), int(size[0])), Image.Resampling.BICUBIC)
                    a = np.asarray(im, dtype=np.uint8)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"{path} is too large to decode safely ({exc}): a decompression bomb?") from None
        except OSError as exc:
            raise ValueError(f"{path} is not a readable image ({exc})") from None
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    if not arrays:
        raise ValueError("no image files given")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"the images have different sizes {sorted(s[1:] for s in shapes)}: pass size=(H, W)")
    return np.stack(arrays)


class _OutputCache:
    """Hands out the memory of an earlier result again once nothing references it any more.

    A fresh array for every batch costs the kernel's zero-filled pages on first touch, for 25 MB of
    events more than a sharded conversion itself (the PyTorch converter keeps its outputs the same
    way). A result the caller still holds, or any view of it, is never handed out.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.buffers: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        with self._lock:
            for i in range(len(self.buffers)):  # by index: a loop variable would count as a reference
                # 2: the list's reference and getrefcount's argument; views hold one through .base
                fits = self.buffers[i].shape == tuple(shape) and self.buffers[i].dtype == dtype
                if fits and sys.getrefcount(self.buffers[i]) == 2:
                    return self.buffers[i]
            buf = np.empty(shape, dtype=dtype)
            self.buffers = [*self.buffers, buf][-self.keep :]
            return buf


class I2ERuntime:
    """An ONNX Runtime session on an exported I2E model, with input checks and batching.

    Args:
        model_path: the ``.onnx`` file written by ``python -m i2e_lightning export-onnx``.
        providers: execution providers to request; ``None`` picks CUDA when available, else the CPU.
        threads: CPU threads (``None``: ONNX Runtime's default intra-op pool). For a converter on the
            CPU provider, ``threads=N > 1`` runs pieces of the batch on N threads at once, each a
            single-threaded run of the same session writing straight into its part of the result:
            ONNX Runtime's intra-op pool would instead wake its threads for every node, which for
            the converter's many small per-chunk nodes costs more than it gains (benchmarks/onnx_speed.py).
            ``TBCHW`` events come back as the time-major view of a batch-major array (not C-contiguous,
            as the PyTorch converter's ``BTCHW`` events are a view): every one-image run writes its
            events where they stay, with no copy into place.
    """

    def __init__(
        self, model_path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"model file {path} does not exist: export one with "
                "`python -m i2e_lightning export-onnx --out export/i2e.onnx`"
            )
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.model_path = path
        self.threads = threads
        self.requested_providers = choose_providers(providers)
        shard = threads is not None and threads > 1
        self.session = self._open(1 if shard else threads)  # a sharded run is one thread per piece
        self.info = self._read_info()
        self._pool: ThreadPoolExecutor | None = None
        self._outputs = _OutputCache()
        self._shards = 1
        if shard and self.info.kind == "converter" and not self.uses_gpu:
            self._shards = threads  # the pieces run side by side
        elif shard:  # a classifier, or a GPU session: ONNX Runtime's own threads
            self.session = self._open(threads)

    def _open(self, threads: int | None) -> ort.InferenceSession:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # a pool that spins between nodes keeps a core busy for nothing (and slows other work on it)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(self.model_path), sess_options=options, providers=self.requested_providers)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types (InvalidProtobuf, Fail, ...)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(
                f"{self.model_path} is not an ONNX model ONNX Runtime can load ({first[:200]}): give a file written by "
                "`python -m i2e_lightning export-onnx`"
            ) from None

    # -- model description -----------------------------------------------------------------

    def _read_info(self) -> RuntimeInfo:
        meta = _parse_meta(dict(self.session.get_modelmeta().custom_metadata_map))
        needed = ("ratio", "order", "timesteps", "input_dtype", "output_dtype", "layout")
        if any(k not in meta for k in needed):
            raise ValueError(
                f"{self.model_path} is not an i2e_lightning export (its metadata lacks {_PREFIX}ratio/order/...): "
                "export it with `python -m i2e_lightning export-onnx`"
            )
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if inp.type not in _ORT_TYPES:
            raise ValueError(f"{self.model_path}: unsupported input type {inp.type} (expected uint8 or float)")
        shape = list(inp.shape)
        fixed = (shape[2], shape[3]) if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]) else None
        channels = tuple(int(c) for c in str(meta.get("channels", "1,3")).split(","))
        if len(shape) == 4 and isinstance(shape[1], int):
            channels = (shape[1],)
        known = {"kind", "channels", "num_classes", "version", *needed}
        return RuntimeInfo(
            kind=str(meta.get("kind", "converter")),
            ratio=float(meta["ratio"]),
            order=tuple(int(d) for d in meta["order"]),
            timesteps=int(meta["timesteps"]),
            input_dtype=str(meta["input_dtype"]),
            output_dtype=str(meta["output_dtype"]),
            layout=str(meta["layout"]),
            version=str(meta.get("version", "unknown")),
            input_name=inp.name,
            output_name=out.name,
            channels=channels,
            fixed_size=fixed,
            num_classes=int(meta["num_classes"]) if "num_classes" in meta else None,
            extra={k: v for k, v in meta.items() if k not in known},
        )

    @property
    def metadata(self) -> dict[str, Any]:
        """The model's ``i2e.*`` metadata, parsed (numbers and lists as such)."""
        return _parse_meta(dict(self.session.get_modelmeta().custom_metadata_map))

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses (CUDA drops out when no GPU could be used)."""
        return list(self.session.get_providers())

    @property
    def uses_gpu(self) -> bool:
        return CUDA in self.providers

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(_ORT_TYPES[self.session.get_inputs()[0].type])

    def __repr__(self) -> str:
        i = self.info
        return (
            f"I2ERuntime({str(self.model_path)!r}, kind={i.kind}, ratio={i.ratio}, timesteps={i.timesteps}, "
            f"input={i.input_dtype}, output={i.output_dtype} {i.layout}, providers={self.providers})"
        )

    # -- input checks -----------------------------------------------------------------------

    def prepare(self, images: np.ndarray | Sequence[np.ndarray], check_finite: bool = True) -> tuple[np.ndarray, bool]:
        """Check and convert ``images`` to the model's input; returns ``(batch [B, C, H, W], was_single)``.

        ``check_finite=False`` leaves float images unchecked for NaN / Inf (a pass over the batch; a
        sharded run checks each piece on its own thread instead).
        """
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("no images given (empty list)")
            arrays = [np.asarray(a) for a in images]
            if len({a.shape for a in arrays}) > 1:
                raise ValueError(
                    f"the images have different shapes {sorted({a.shape for a in arrays})}: resize them to one size"
                )
            x = np.stack(arrays)
        elif isinstance(images, np.ndarray):
            x = images
        else:
            raise ValueError(
                f"images must be a numpy array [B, C, H, W] / [C, H, W] or a list of [C, H, W] arrays, "
                f"got {type(images).__name__} (torch tensors: pass tensor.numpy())"
            )
        if x.ndim not in (3, 4):
            raise ValueError(
                f"images must have shape [B, C, H, W] or [C, H, W], got rank {x.ndim} {tuple(x.shape)}: "
                "add or remove the batch dimension"
            )
        single = x.ndim == 3
        if single:
            x = x[None]
        allowed = self.info.channels
        if x.shape[1] not in allowed:
            hint = (
                f"; it looks channels-last (HWC), use np.transpose(x, {(0, 3, 1, 2) if not single else (2, 0, 1)})"
                if x.shape[-1] in allowed
                else ": convert to RGB or grey first"
            )
            raise ValueError(
                f"images must have {' or '.join(map(str, allowed))} channels in dimension {0 if single else 1}, "
                f"got {x.shape[1]} (shape {tuple(images.shape) if isinstance(images, np.ndarray) else x.shape}){hint}"
            )
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"images must have a height and width of at least 1, got shape {tuple(x.shape)}")
        fixed = self.info.fixed_size
        if fixed is not None and tuple(x.shape[2:]) != tuple(fixed):
            raise ValueError(
                f"this classifier was exported for {fixed[0]}x{fixed[1]} images, got {x.shape[2]}x{x.shape[3]}: "
                f"resize them (load_images(paths, size={fixed}))"
            )
        want = self.input_dtype
        if want == np.uint8:
            if x.dtype != np.uint8:
                raise ValueError(
                    f"this model takes uint8 images, got {x.dtype}: convert with "
                    "np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) or export with --input-dtype float32"
                )
        elif x.dtype == np.uint8:
            # the same scaling as the uint8 graph: torchvision's ToDtype(scale=True), x * float32(1/255)
            x = x.astype(np.float32) * np.float32(1.0 / 255)
        elif np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32, copy=False)
            if check_finite and not _finite(x):
                raise ValueError(_NOT_FINITE)
        else:
            raise ValueError(f"images must be float or uint8, got {x.dtype}: convert with x.astype(np.float32)")
        return np.ascontiguousarray(x), single

    # -- running ----------------------------------------------------------------------------

    @property
    def packed(self) -> bool:
        """Whether the converter returns packed rows (``output_dtype="packed"``) instead of event tensors."""
        return self.info.kind == "converter" and self.info.output_dtype == "packed"

    def event_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Per-sample event shape ``(T, 2, H, W)`` of ``height x width`` images (what a packed row holds)."""
        return (self.info.timesteps, 2, int(height), int(width))

    def output_shape(self, batch: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of :meth:`run`'s result for a ``[batch, C, height, width]`` input."""
        if self.info.kind == "classifier":
            return (batch, self.info.num_classes or 0)
        if self.packed:
            return (batch, -(-self.info.timesteps * 2 * height * width // 8))
        t = self.info.timesteps
        return (t, batch, 2, height, width) if self.info.layout == "TBCHW" else (batch, t, 2, height, width)

    def unpack(self, rows: np.ndarray, height: int, width: int) -> np.ndarray:
        """Bool events ``[B, T, 2, H, W]`` (one row: ``[T, 2, H, W]``) of packed rows, numpy only."""
        rows = np.asarray(rows)
        if rows.dtype != np.uint8 or rows.ndim not in (1, 2):
            raise ValueError(f"packed rows must be uint8 [B, nbytes] or [nbytes], got {rows.dtype} {rows.shape}")
        shape = self.event_shape(height, width)
        nbits = int(np.prod(shape))
        if rows.shape[-1] != -(-nbits // 8):
            raise ValueError(f"rows of {rows.shape[-1]} bytes do not hold {shape} events ({-(-nbits // 8)} bytes)")
        bits = np.unpackbits(rows, axis=-1, count=nbits).view(np.bool_)
        return bits.reshape((*rows.shape[:-1], *shape))

    def _batch_axis(self) -> int:
        return 1 if self.info.kind == "converter" and self.info.layout == "TBCHW" and not self.packed else 0

    def _empty_output(self, x: np.ndarray) -> np.ndarray:
        dtypes = {"bool": np.bool_, "uint8": np.uint8, "float32": np.float32, "packed": np.uint8}
        shape = self.output_shape(0, *x.shape[2:])
        return np.zeros(shape, dtype=np.float32 if self.info.kind == "classifier" else dtypes[self.info.output_dtype])

    def run(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Events (converter) or logits (classifier) of ``images``, in chunks of ``batch_size`` if given.

        Events are ``[T, B, 2, H, W]`` (``BTCHW``: ``[B, T, 2, H, W]``); one ``[C, H, W]`` image gives
        ``[T, 2, H, W]``. Logits are ``[B, num_classes]`` (``[num_classes]`` for one image).
        """
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        sharded = self._shards > 1
        x, single = self.prepare(images, check_finite=not sharded)
        axis = self._batch_axis()
        if x.shape[0] == 0:
            out = self._empty_output(x)
        elif sharded:
            out = self._run_sharded(x, batch_size)
        else:
            step = batch_size or x.shape[0]
            parts = [
                self.session.run([self.info.output_name], {self.info.input_name: x[i : i + step]})[0]
                for i in range(0, x.shape[0], step)
            ]
            out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
        return np.take(out, 0, axis=axis) if single else out

    def _run_sharded(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Converter events of ``x`` computed in pieces of the batch on ``self._shards`` threads.

        Each piece is one single-threaded run bound (I/O binding) to its input rows and its rows of
        the result, so the events are written once, where they stay. ``TBCHW`` pieces are single
        images, whose ``[T, 1, 2, H, W]`` events are that image's block of a batch-major buffer: the
        result is the time-major view of it (as the PyTorch converter's ``BTCHW`` result is a view),
        not a copy. Events are the same bits as one whole run.
        """
        b, _, h, w = x.shape
        dtypes = {"bool": np.bool_, "uint8": np.uint8, "float32": np.float32, "packed": np.uint8}
        dtype = dtypes[self.info.output_dtype]
        time_major = self._batch_axis() == 1
        shape = self.output_shape(b, h, w)
        out = self._outputs.empty((b, *shape[:1], *shape[2:]) if time_major else shape, dtype)
        if time_major:
            piece = 1
        else:
            rounds = -(-b * h * w // (self._shards * _PIECE_PIXELS))  # pieces per thread
            piece = min(-(-b // min(b, self._shards * rounds)), batch_size or b)
        pieces: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        for start in range(0, b, piece):
            pieces.put((start, min(start + piece, b)))
        bad: list[int] = []  # first rows of pieces with NaN / Inf (list.append is atomic)
        name_in, name_out = self.info.input_name, self.info.output_name

        def work() -> None:
            binding = self.session.io_binding()
            while True:
                try:
                    start, stop = pieces.get_nowait()
                except queue.Empty:
                    return
                rows = x[start:stop]
                if rows.dtype != np.uint8 and not _finite(rows):
                    bad.append(start)
                    continue
                binding.bind_input(name_in, "cpu", 0, rows.dtype, list(rows.shape), rows.ctypes.data)
                dest = out[start:stop]
                dest_shape = [dest.shape[1], 1, *dest.shape[2:]] if time_major else list(dest.shape)
                binding.bind_output(name_out, "cpu", 0, dtype, dest_shape, dest.ctypes.data)
                self.session.run_with_iobinding(binding)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._shards - 1, thread_name_prefix="i2e-runtime")
        helpers = [self._pool.submit(work) for _ in range(self._shards - 1)]
        try:
            work()
        finally:
            for f in helpers:
                f.result()  # a helper's error reaches the caller
        if bad:
            raise ValueError(_NOT_FINITE)
        return out.swapaxes(0, 1) if time_major else out

    __call__ = run

    # -- device-resident runs (I/O binding) ------------------------------------------------------

    def run_on_device(self, images: Any, out: Any = None, device_id: int = 0) -> Any:
        """Run with inputs and outputs kept on the session's device (ONNX Runtime I/O binding).

        With the CUDA provider nothing crosses to the host per batch: ``images`` may be an
        ``onnxruntime.OrtValue`` already on the GPU, or any CUDA array that exposes ``data_ptr()``
        (a torch tensor), bound in place; a numpy array is copied to the device once. The result
        stays on the device: into ``out`` (a preallocated device buffer with ``data_ptr()`` of
        :meth:`output_shape`) when given, else an ``OrtValue`` that ONNX Runtime allocates there
        (``.numpy()`` copies it to the host). On the CPU provider the same call binds host memory.
        Inputs are not checked here (the point is no host access): use the model's input dtype and
        a ``[B, C, H, W]`` shape.
        """
        device = "cuda" if self.uses_gpu else "cpu"
        binding = self.session.io_binding()
        dtype = np.dtype(self.info.input_dtype)
        if isinstance(images, np.ndarray):
            x, _ = self.prepare(images)
            images = ort.OrtValue.ortvalue_from_numpy(x, device, device_id)
        if isinstance(images, ort.OrtValue):
            shape = tuple(images.shape())
            binding.bind_ortvalue_input(self.info.input_name, images)
        elif hasattr(images, "data_ptr"):
            shape = tuple(int(d) for d in images.shape)
            if len(shape) != 4:
                raise ValueError(f"images must be [B, C, H, W] on the device, got shape {shape}")
            binding.bind_input(self.info.input_name, device, device_id, dtype, list(shape), int(images.data_ptr()))
        else:
            raise ValueError(
                f"images must be a numpy array, an onnxruntime.OrtValue or a device tensor with data_ptr(), "
                f"got {type(images).__name__}"
            )
        out_dtype = {"bool": np.bool_, "uint8": np.uint8, "float32": np.float32, "packed": np.uint8}
        if out is None:
            binding.bind_output(self.info.output_name, device, device_id)
        else:
            want = self.output_shape(shape[0], shape[2], shape[3])
            if tuple(int(d) for d in out.shape) != tuple(want):
                raise ValueError(f"out must have shape {want}, got {tuple(out.shape)}")
            kind = np.float32 if self.info.kind == "classifier" else out_dtype[self.info.output_dtype]
            binding.bind_output(self.info.output_name, device, device_id, kind, list(want), int(out.data_ptr()))
        self.session.run_with_iobinding(binding)
        return out if out is not None else binding.get_outputs()[0]

    def run_files(
        self,
        paths: Iterable[str | Path],
        size: tuple[int, int] | None = None,
        batch_size: int = 32,
    ) -> Iterator[tuple[list[Path], np.ndarray]]:
        """Decode and run image files in batches: yields ``(paths of the batch, events or logits)``.

        Files are resized to ``size`` (bicubic); a classifier exported for a fixed size uses that size
        by default. Grey models (1 channel) decode files as grey, others as RGB.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        size = size if size is not None else self.info.fixed_size
        mode = "L" if self.info.channels == (1,) else "RGB"
        batch: list[Path] = []
        for p in paths:
            batch.append(Path(p))
            if len(batch) == batch_size:
                yield batch, self.run(load_images(batch, size, mode))
                batch = []
        if batch:
            yield batch, self.run(load_images(batch, size, mode))


def find_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) under ``folder``, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
