"""``python -m i2e_lightning export-onnx``: write the converter (or converter + classifier) as one ONNX file.

The library calls are :mod:`i2e_lightning.onnx.export`; this module parses, checks and reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ActionYesNo, Namespace

from ..onnx.graph import DEFAULT_OPSET, INPUT_DTYPES, LAYOUTS, MAX_OPSET, MIN_OPSET, OUTPUT_DTYPES
from .arguments import (
    CommandParser,
    add_data_section,
    add_resolution,
    fail,
    instantiate_data,
    parse,
    rename,
    resolution_pair,
    size_pair,
)


def _order_value(values: list[str]) -> list[str]:
    """``--order 7,6,5,4,3,2,1,0`` (the older form) as the list syntax ``--order [7,6,5,4,3,2,1,0]``."""
    text = values[0].strip()
    return ["--order", f"[{text}]" if "," in text and not text.startswith("[") else text]


ALIASES = {
    "--ckpt": rename("--ckpt_path"),
    "--image-size": size_pair(),
    "--input-dtype": rename("--input_dtype"),
    "--output-dtype": rename("--output_dtype"),
    "--order": ("--order", 1, _order_value),
}


def build_parser() -> CommandParser:
    p = CommandParser(
        "export-onnx",
        description="Export the I2E converter (images -> events), or with --ckpt_path a trained spiking classifier "
        "(images -> events -> logits), as one self-contained ONNX file for ONNX Runtime. A --config's data "
        "section gives the converter settings and the image size.",
    )
    add_data_section(p, required=False)
    p.add_argument("--out", type=str, default="export/i2e.onnx", help="output .onnx file")
    p.add_argument(
        "--ratio", type=float | None, default=None, help="threshold ratio S_th0 (default 0.12, or the checkpoint's)"
    )
    p.add_argument(
        "--order",
        type=int | list[int] | None,
        default=None,
        help="timestep order: preset 0-5 or [8 indices] (default 4)",
    )
    p.add_argument("--timesteps", type=int | None, default=None, help="timesteps 1-8 (default 8, or the checkpoint's)")
    p.add_argument("--input_dtype", choices=sorted(INPUT_DTYPES), default="float32", help="image dtype (uint8: 0-255)")
    p.add_argument("--output_dtype", choices=sorted(OUTPUT_DTYPES), default=None, help="event dtype (default bool)")
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="event layout (default TBCHW)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset {MIN_OPSET}-{MAX_OPSET}")
    p.add_argument(
        "--ckpt_path", type=str | None, default=None, help="SpikingClassifier checkpoint to export with the converter"
    )
    add_resolution(p, "with --ckpt_path: the size the network was trained at (default: the checkpoint's datamodule's)")
    p.add_argument(
        "--check",
        action=ActionYesNo,
        default=False,
        help="after export, compare ONNX Runtime with PyTorch on random images",
    )
    p.aliases = ALIASES
    return p


def _check_export(path: Path, converter, net=None, size=(32, 32), input_dtype: str = "float32") -> tuple[bool, str]:
    """Run the file in ONNX Runtime against PyTorch on a few random images: (passed, one-line verdict).

    NaN/Inf logits fail the check (a diverged network exports without complaint otherwise)."""
    import numpy as np
    import torch

    from ..onnx.runtime import I2ERuntime

    rt = I2ERuntime(path)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, *size), dtype=torch.uint8, generator=g)
    if input_dtype == "float32":
        x = x.float() * (1.0 / 255)  # as ToDtype(scale=True)
    got = rt.run(x.numpy())
    with torch.no_grad():
        events = converter.eval()(x)
        if net is None:
            ok = np.array_equal(got, events.numpy())
            return True, f"events equal PyTorch bit for bit: {ok}"
        ref = net.eval()(events.float()).numpy()
    bad = [name for name, logits in (("ONNX Runtime", got), ("PyTorch", ref)) if not np.isfinite(logits).all()]
    if bad:
        return False, (
            f"check FAILED: the {' and '.join(bad)} logits hold NaN/Inf on random images: the network's weights "
            "are non-finite (a diverged run?) or it overflows; export a checkpoint from before the divergence"
        )
    diff = float(np.abs(got - ref).max())
    same = bool((got.argmax(1) == ref.argmax(1)).all())
    return True, f"max |logit difference| vs PyTorch {diff:.2e}, same argmax: {same}"


def _config_names(args: Namespace) -> str:
    return ",".join(str(c) for c in (args.get("config") or []) if c is not None) or "the data section"


def _fill_from_config(parser: CommandParser, args: Namespace) -> None:
    """Converter settings and resolution of the config's DataModule, where the command line gives none."""
    dm = instantiate_data(parser, args)
    conv = getattr(dm, "converter", None)
    if conv is None:
        raise ValueError(
            f"{_config_names(args)}: {type(dm).__name__} ships recorded events and has no converter to export"
        )
    # what the config decided (not the command line): checked against a checkpoint's own settings
    args.config_settings = {
        k: v for k, v in (("ratio", conv.ratio), ("order", list(conv.order))) if getattr(args, k) is None
    }
    args.ratio = conv.ratio if args.ratio is None else args.ratio
    args.order = list(conv.order) if args.order is None else args.order
    args.timesteps = conv.timesteps if args.timesteps is None else args.timesteps
    if args.resolution is None and getattr(dm, "resolution", None) is not None:
        args.resolution = list(dm.resolution)


def _check_config_against_checkpoint(args: Namespace, saved: dict) -> None:
    """A --config whose ratio/order differ from the checkpoint's own would export another converter: name it."""
    from ..converter.directions import resolve_order

    for key, from_config in (getattr(args, "config_settings", None) or {}).items():
        trained = saved.get(key)
        if trained is None:
            continue
        same = (
            abs(float(from_config) - float(trained)) <= 1e-9
            if key == "ratio"
            else resolve_order(from_config) == resolve_order(trained)
        )
        if not same:
            flag = f"--{key} {from_config}" if key == "ratio" else f"--order {','.join(map(str, from_config))}"
            raise ValueError(
                f"--config {_config_names(args)} gives {key} {from_config} but checkpoint {args.ckpt_path} was trained with "
                f"{key} {trained}: drop --config (the checkpoint records its settings), or pass {flag} to export "
                "with the config's value on purpose"
            )


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    console = Console()
    try:
        parser = build_parser()
        args = parse(parser, sys.argv[1:] if argv is None else argv)
        return _export(parser, args, console)
    except (ValueError, OSError, ImportError) as exc:
        return fail(exc)


def _export(parser: CommandParser, args: Namespace, console) -> int:  # noqa: ANN001 - rich is imported lazily
    from ..converter import I2E
    from ..onnx.export import export_classifier, export_converter, load_checkpoint_model

    if args.get("data") is not None:
        _fill_from_config(parser, args)
    if args.ckpt_path is None:
        out_dtype, layout = args.output_dtype or "bool", args.layout or "TBCHW"
        ratio = 0.12 if args.ratio is None else args.ratio
        order = 4 if args.order is None else args.order
        timesteps = 8 if args.timesteps is None else args.timesteps
        path = export_converter(
            Path(args.out),
            ratio,
            order,
            timesteps,
            input_dtype=args.input_dtype,
            output_dtype=out_dtype,
            layout=layout,
            opset=args.opset,
        )
        console.print(
            f"[green]wrote[/] {path} ({path.stat().st_size / 1024:.1f} KiB): converter ratio={ratio} "
            f"order={order} timesteps={timesteps}, images {args.input_dtype} [B, 1|3, H, W] -> "
            f"events {out_dtype} {layout}"
        )
        if args.check:
            conv = I2E(ratio, order, timesteps, dtype=out_dtype, layout=layout)
            passed, verdict = _check_export(path, conv, input_dtype=args.input_dtype)
            console.print(verdict)
            return 0 if passed else 1
        return 0

    if args.output_dtype is not None or args.layout is not None:
        raise ValueError("--output_dtype and --layout apply to the converter alone; a classifier outputs logits")
    net, saved = load_checkpoint_model(Path(args.ckpt_path))
    _check_config_against_checkpoint(args, saved)
    ratio = args.ratio if args.ratio is not None else saved.get("ratio")
    if ratio is None:
        raise ValueError(
            f"checkpoint {args.ckpt_path} does not record the converter's ratio (no i2e_lightning DataModule "
            "settings in it): pass --config configs/X.yaml (the training config) or --ratio (e.g. 0.15 for "
            "Fashion-MNIST, 0.07 for CIFAR)"
        )
    order = args.order if args.order is not None else saved.get("order", 4)
    timesteps = args.timesteps if args.timesteps is not None else int(saved.get("timesteps", 8))
    size = resolution_pair(args.resolution) or saved.get("resolution")
    if size is None:
        raise ValueError(
            f"checkpoint {args.ckpt_path} does not record the image size: pass --config configs/X.yaml or "
            "--resolution N (or [H,W])"
        )
    # DataModules save the resolution as an int (square) or as (H, W)
    size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    converter = I2E(float(ratio), order, timesteps)
    path = export_classifier(
        net,
        converter,
        Path(args.out),
        image_size=size,
        input_dtype=args.input_dtype,
        opset=args.opset,
        extra_metadata={"arch": saved.get("arch", type(net).__name__), "checkpoint": Path(args.ckpt_path).name},
    )
    console.print(
        f"[green]wrote[/] {path} ({path.stat().st_size / 2**20:.1f} MiB): {saved.get('arch')} classifier, "
        f"ratio={ratio} order={order} timesteps={timesteps}, images {args.input_dtype} [B, 1|3, {size[0]}, "
        f"{size[1]}] -> logits"
    )
    if args.check:
        passed, verdict = _check_export(path, converter, net, size, args.input_dtype)
        console.print(verdict)
        return 0 if passed else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
