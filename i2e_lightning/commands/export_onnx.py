"""``python -m i2e_lightning export-onnx``: write the converter (or converter + classifier) as one ONNX file.

The library calls are :mod:`i2e_lightning.onnx.export`; this module parses, checks and reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.config import datamodule_from_config
from ..onnx.graph import DEFAULT_OPSET, INPUT_DTYPES, LAYOUTS, MAX_OPSET, MIN_OPSET, OUTPUT_DTYPES


def _order(text: str) -> int | list[int]:
    text = text.strip()
    try:
        if text.startswith("["):
            return [int(d) for d in json.loads(text)]
        if "," in text:
            return [int(d) for d in text.split(",")]
        return int(text)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise argparse.ArgumentTypeError(
            f"order must be a preset number 0-5 or 8 comma-separated direction indices, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m i2e_lightning export-onnx",
        description="Export the I2E converter (images -> events), or with --ckpt a trained spiking classifier "
        "(images -> events -> logits), as one self-contained ONNX file for ONNX Runtime.",
    )
    p.add_argument("--out", type=Path, default=Path("export/i2e.onnx"), help="output .onnx file (default: %(default)s)")
    p.add_argument(
        "--ratio", type=float, default=None, help="threshold ratio S_th0 (default 0.12, or the checkpoint's)"
    )
    p.add_argument("--order", type=_order, default=None, help="timestep order: preset 0-5 or 8 indices (default 4)")
    p.add_argument("--timesteps", type=int, default=None, help="timesteps 1-8 (default 8, or the checkpoint's)")
    p.add_argument("--input-dtype", choices=sorted(INPUT_DTYPES), default="float32", help="image dtype (uint8: 0-255)")
    p.add_argument("--output-dtype", choices=sorted(OUTPUT_DTYPES), default=None, help="event dtype (default bool)")
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="event layout (default TBCHW)")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset {MIN_OPSET}-{MAX_OPSET} (default %(default)s)"
    )
    p.add_argument(
        "--ckpt", type=Path, default=None, help="SpikingClassifier Lightning checkpoint to export with the converter"
    )
    p.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="with --ckpt: the resolution the network was trained at (default: the checkpoint's datamodule's)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="training YAML: take ratio, order, timesteps and the image size from its data: section",
    )
    p.add_argument(
        "--check", action="store_true", help="after export, compare ONNX Runtime with PyTorch on random images"
    )
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


def _fill_from_config(args: argparse.Namespace) -> None:
    """Converter settings and resolution of the config's DataModule, where the command line gives none."""
    dm = datamodule_from_config(args.config)
    conv = getattr(dm, "converter", None)
    if conv is None:
        raise ValueError(f"{args.config}: {type(dm).__name__} ships recorded events and has no converter to export")
    # what the config decided (not the command line): checked against a checkpoint's own settings
    args.config_settings = {
        k: v for k, v in (("ratio", conv.ratio), ("order", list(conv.order))) if getattr(args, k) is None
    }
    args.ratio = conv.ratio if args.ratio is None else args.ratio
    args.order = list(conv.order) if args.order is None else args.order
    args.timesteps = conv.timesteps if args.timesteps is None else args.timesteps
    if args.image_size is None and getattr(dm, "resolution", None) is not None:
        args.image_size = list(dm.resolution)


def _check_config_against_checkpoint(args: argparse.Namespace, saved: dict) -> None:
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
                f"--config {args.config} gives {key} {from_config} but checkpoint {args.ckpt} was trained with "
                f"{key} {trained}: drop --config (the checkpoint records its settings), or pass {flag} to export "
                "with the config's value on purpose"
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from rich.console import Console

    from ..converter import I2E
    from ..onnx.export import export_classifier, export_converter, load_checkpoint_model

    console = Console()
    try:
        if args.config is not None:
            _fill_from_config(args)
        if args.ckpt is None:
            out_dtype, layout = args.output_dtype or "bool", args.layout or "TBCHW"
            ratio = 0.12 if args.ratio is None else args.ratio
            order = 4 if args.order is None else args.order
            timesteps = 8 if args.timesteps is None else args.timesteps
            path = export_converter(
                args.out,
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
            raise ValueError("--output-dtype and --layout apply to the converter alone; a classifier outputs logits")
        net, saved = load_checkpoint_model(args.ckpt)
        _check_config_against_checkpoint(args, saved)
        ratio = args.ratio if args.ratio is not None else saved.get("ratio")
        if ratio is None:
            raise ValueError(
                f"checkpoint {args.ckpt} does not record the converter's ratio (no i2e_lightning DataModule "
                "settings in it): pass --config configs/X.yaml (the training config) or --ratio (e.g. 0.15 for "
                "Fashion-MNIST, 0.07 for CIFAR)"
            )
        order = args.order if args.order is not None else saved.get("order", 4)
        timesteps = args.timesteps if args.timesteps is not None else int(saved.get("timesteps", 8))
        size = args.image_size or saved.get("resolution")
        if size is None:
            raise ValueError(
                f"checkpoint {args.ckpt} does not record the image size: pass --config configs/X.yaml or --image-size H W"
            )
        # DataModules save the resolution as an int (square) or as (H, W)
        size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
        converter = I2E(float(ratio), order, timesteps)
        path = export_classifier(
            net,
            converter,
            args.out,
            image_size=size,
            input_dtype=args.input_dtype,
            opset=args.opset,
            extra_metadata={"arch": saved.get("arch", type(net).__name__), "checkpoint": Path(args.ckpt).name},
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
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]export-onnx: {exc}[/]", soft_wrap=True)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
