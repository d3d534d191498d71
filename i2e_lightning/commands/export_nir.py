"""``python -m i2e_lightning export-nir``: write a trained spiking network as a NIR graph (``.nir``)."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ActionYesNo

from .arguments import CommandParser, add_resolution, fail, parse, rename, resolution_pair, size_pair

ALIASES = {"--ckpt": rename("--ckpt_path"), "--image-size": size_pair()}


def build_parser() -> CommandParser:
    p = CommandParser(
        "export-nir",
        description="Export a trained spiking_cnn or ms_resnet18/34 (SpikingClassifier checkpoint) as a NIR graph "
        "for neuromorphic hardware and simulators (Norse, Sinabs, snnTorch, Rockpool, Lava, SpiNNaker2 tools). "
        "BatchNorm is folded into the convolutions, LIF neurons are mapped with dt = 1 per timestep, max pooling "
        "becomes average pooling (see docs/deploy.md). The converter is not part of the graph: feed it I2E events.",
    )
    p.add_argument("--ckpt_path", type=str, required=True, help="SpikingClassifier Lightning checkpoint (.ckpt)")
    p.add_argument("--out", type=str, default="export/model.nir", help="output .nir file")
    add_resolution(p, "event size (default: the checkpoint's datamodule resolution, or the model's input_size)")
    p.add_argument(
        "--check",
        action=ActionYesNo,
        default=False,
        help="read the file back with Norse and compare it with PyTorch on random events (needs norse)",
    )
    p.aliases = ALIASES
    return p


def _check(path: Path, net, size: tuple[int, int], timesteps: int) -> str:
    import logging

    import torch

    from ..nir.export import nir_compatible
    from ..nir.simulate import load_norse, run_norse

    logging.disable(logging.WARNING)  # Norse warns about r per neuron; the graph writes r = 1
    try:
        events = (torch.rand(timesteps, 8, 2, *size, generator=torch.Generator().manual_seed(0)) < 0.2).float()
        got, _ = run_norse(load_norse(path), events)
        with torch.no_grad():
            ref = nir_compatible(net).eval()(events)
    finally:
        logging.disable(logging.NOTSET)
    same = float((got.argmax(1) == ref.argmax(1)).float().mean())
    return f"Norse vs PyTorch on 8 random event samples: same prediction {same * 100:.1f} %, max |logit diff| {float((got - ref).abs().max()):.2e}"


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    console = Console()
    try:
        args = parse(build_parser(), sys.argv[1:] if argv is None else argv)
        from ..models.cnn import SpikingCNN
        from ..nir.export import export_nir, layer_count, write_nir
        from ..onnx.export import load_checkpoint_model

        net, saved = load_checkpoint_model(Path(args.ckpt_path))
        size = resolution_pair(args.resolution) or saved.get("resolution")
        if size is None and isinstance(net, SpikingCNN):
            size = net.input_size
        if size is None:
            raise ValueError(
                f"checkpoint {args.ckpt_path} does not record the event size: pass --resolution N or [H,W]"
            )
        size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
        meta = {
            "i2e.checkpoint": Path(args.ckpt_path).name,
            "i2e.arch_name": str(saved.get("arch", type(net).__name__)),
        }
        for key in ("ratio", "order", "timesteps"):
            if saved.get(key) is not None:
                meta[f"i2e.converter_{key}"] = (
                    saved[key]
                    if key != "order"
                    else list(saved[key])
                    if not isinstance(saved[key], int)
                    else saved[key]
                )
        graph = export_nir(net, size, metadata=meta)
        path = write_nir(graph, Path(args.out))
        console.print(
            f"[green]wrote[/] {path} ({path.stat().st_size / 2**20:.2f} MiB): {saved.get('arch')} on "
            f"{size[0]}x{size[1]} events, nodes {layer_count(graph)}"
        )
        for note in graph.metadata["i2e.notes"]:
            console.print(f"[yellow]note:[/] {note} (retrain with average pooling for an exact export)")
        if args.check:
            console.print(_check(path, net, size, int(saved.get("timesteps", 8))))
        return 0
    except (ValueError, OSError, ImportError) as exc:
        return fail(exc)


if __name__ == "__main__":
    raise SystemExit(main())
