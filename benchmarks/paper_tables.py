"""The paper's Table 6, Table 5 and Figure 5 at small scale on Fashion-MNIST (plain PyTorch loop).

Not the paper's scale: a subset of Fashion-MNIST (default 10 000 train / 2 000 test images,
32x32, official preprocessing), the models helper's small ``spiking_cnn``, a few epochs of AdamW
on 2 CPU threads. Every run starts from the same seed (same initial weights for the same input
channels, same batch order); the figures are test top-1 of the last epoch. What they can show is the
*direction* of the paper's findings, not its numbers; with one seed and one epoch, differences of a
point or two are within noise.

    Table 6   the same network trained on the image repeated over T (RGB: 3 channels; V = max(R,G,B):
              1 channel) and on I2E events (2 channels). Fashion-MNIST is grey, so RGB and V carry
              the same information here (the paper's gap comes from colour, which this data lacks).
    Table 5   events with each of the six timestep orders (presets 0-5).
    Figure 5  events with T = 1..8 (order 4: the first T directions of gamma, alpha, beta).

Training on events uses the converter in train mode (random equivalent pairs per call, as the
official code); testing uses the canonical pairs. Plots go to ``docs/img/bench_*.png``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from benchmarks._args import BenchParser, parse_bench, usage_error
from benchmarks._common import REPO_ROOT, console, print_table, progress, setup_threads, write_json
from benchmarks._data import FASHION_MNIST_DIR, fashion_mnist, preprocess
from i2e_lightning.converter import I2E, ORDER_PRESETS

IMG_DIR = REPO_ROOT / "docs" / "img"


@dataclass(frozen=True)
class RunSpec:
    input: str  # rgb | v | events
    timesteps: int
    order: int = 4

    @property
    def key(self) -> str:
        return f"{self.input}-T{self.timesteps}" + (f"-o{self.order}" if self.input == "events" else "")

    @property
    def channels(self) -> int:
        return {"rgb": 3, "v": 1, "events": 2}[self.input]


def to_input(images_u8: torch.Tensor, spec: RunSpec, conv: I2E | None) -> torch.Tensor:
    """Network input ``[T, B, C, H, W]`` float32 for one batch of uint8 RGB images."""
    if spec.input == "events":
        assert conv is not None
        return conv(images_u8, dtype=torch.float32)
    x = images_u8.float().div_(255)
    if spec.input == "v":
        x = x.amax(dim=1, keepdim=True)
    return x.unsqueeze(0).expand(spec.timesteps, *x.shape)


def build_model(channels: int, seed: int, size: tuple[int, int] = (32, 32)) -> torch.nn.Module:
    try:
        from i2e_lightning.models import spiking_cnn
    except ImportError as exc:
        raise SystemExit(f"error: i2e_lightning.models.spiking_cnn is not available ({exc})") from exc
    torch.manual_seed(seed)
    return spiking_cnn(num_classes=10, in_channels=channels, input_size=tuple(size))


def train_eval(
    spec: RunSpec,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    batch: int,
    lr: float,
    ratio: float,
    seed: int,
) -> dict[str, Any]:
    """Train ``spiking_cnn`` on one input kind; test top-1 after every epoch."""
    model = build_model(spec.channels, seed, tuple(train[0].shape[-2:]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train[0]) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    conv_train = conv_eval = None
    if spec.input == "events":
        gen = torch.Generator().manual_seed(seed)
        conv_train = I2E(ratio=ratio, order=spec.order, timesteps=spec.timesteps, generator=gen).train()
        conv_eval = I2E(ratio=ratio, order=spec.order, timesteps=spec.timesteps).eval()
    g = torch.Generator().manual_seed(seed)
    accs, losses = [], []
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"{spec.key}", total=steps)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(train[0]), generator=g)
            total, n = 0.0, 0
            for i in range(0, len(perm), batch):
                idx = perm[i : i + batch]
                x = to_input(train[0][idx], spec, conv_train)
                loss = F.cross_entropy(model(x), train[1][idx], label_smoothing=0.1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                n += len(idx)
                bar.advance(task)
            losses.append(total / n)
            accs.append(evaluate(model, test, spec, conv_eval, batch * 2))
    return {
        **asdict(spec),
        "key": spec.key,
        "test_acc": accs[-1],
        "test_acc_per_epoch": accs,
        "train_loss_per_epoch": losses,
        "seconds": time.perf_counter() - t0,
    }


@torch.no_grad()
def evaluate(model: torch.nn.Module, test: tuple[torch.Tensor, torch.Tensor], spec: RunSpec, conv, batch: int) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(test[0]), batch):
        x = to_input(test[0][i : i + batch], spec, conv)
        correct += int((model(x).argmax(dim=1) == test[1][i : i + batch]).sum())
    return correct / len(test[0])


def plan(tables: list[str], table_t: int, max_t: int) -> dict[str, list[RunSpec]]:
    out: dict[str, list[RunSpec]] = {}
    if "6" in tables:
        out["table6"] = [RunSpec("rgb", table_t), RunSpec("v", table_t), RunSpec("events", table_t, 4)]
    if "5" in tables:
        out["table5"] = [RunSpec("events", table_t, o) for o in range(len(ORDER_PRESETS))]
    if "fig5" in tables:
        out["figure5"] = [RunSpec("events", t, 4) for t in range(1, max_t + 1)]
    return out


def _plots(report: dict[str, Any], img_dir: Path, prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    img_dir.mkdir(parents=True, exist_ok=True)
    runs = report["runs"]
    if "table6" in report["plan"]:
        keys = report["plan"]["table6"]
        labels = ["image (RGB) x T", "V image x T", "I2E events"]
        fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
        vals = [100 * runs[k]["test_acc"] for k in keys]
        ax.bar(labels, vals, color=["#888", "#bbb", "#3a7"])
        for i, v in enumerate(vals):
            ax.text(i, v + 0.3, f"{v:.1f}", ha="center", fontsize=8)
        ax.set_ylim(max(0, min(vals) - 10), min(100, max(vals) + 5))
        ax.set_ylabel("test top-1 %")
        ax.set_title(f"Table 6 analogue, Fashion-MNIST subset, T={runs[keys[0]]['timesteps']}", fontsize=9)
        fig.tight_layout()
        written.append(_save(fig, img_dir / f"{prefix}table6_inputs.png", plt))
    if "table5" in report["plan"]:
        keys = report["plan"]["table5"]
        fig, ax = plt.subplots(figsize=(6, 3), dpi=120)
        vals = [100 * runs[k]["test_acc"] for k in keys]
        names = [
            f"{o}\n" + "".join("abgg"[min(d // 2, 3)] for d in ORDER_PRESETS[o][: runs[k]["timesteps"]])
            for o, k in enumerate(keys)
        ]
        ax.bar(names, vals, color=["#3a7" if o == 4 else "#79b" for o in range(len(keys))])
        for i, v in enumerate(vals):
            ax.text(i, v + 0.2, f"{v:.1f}", ha="center", fontsize=8)
        ax.set_ylim(max(0, min(vals) - 5), min(100, max(vals) + 3))
        ax.set_xlabel("order preset (a=alpha, b=beta, g=gamma of the kept timesteps)", fontsize=8)
        ax.set_ylabel("test top-1 %")
        ax.set_title(f"Table 5 analogue: timestep orders, T={runs[keys[0]]['timesteps']}", fontsize=9)
        fig.tight_layout()
        written.append(_save(fig, img_dir / f"{prefix}table5_orders.png", plt))
    if "figure5" in report["plan"]:
        keys = report["plan"]["figure5"]
        ts = [runs[k]["timesteps"] for k in keys]
        fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
        ax.plot(ts, [100 * runs[k]["test_acc"] for k in keys], "o-", color="#3a7")
        ax.set_xlabel("timesteps T (order 4)")
        ax.set_ylabel("test top-1 %")
        ax.set_title("Figure 5 analogue: accuracy vs T", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, img_dir / f"{prefix}fig5_acc_vs_T.png", plt))
    return written


def _save(fig, path: Path, plt) -> str:
    fig.savefig(path)
    plt.close(fig)
    console.print(f"[dim]wrote {path}[/dim]")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    p = BenchParser(
        "paper_tables", description="Table 6 / Table 5 / Figure 5 of the paper at small scale (Fashion-MNIST)"
    )
    p.add_threads()
    p.add_json()
    p.add_argument("--data_dir", type=Path, default=FASHION_MNIST_DIR, help="Fashion-MNIST idx folder")
    p.add_argument("--train", type=int, default=10000, help="training images (first N of the train split)")
    p.add_argument("--test", type=int, default=2000, help="test images (first N of the test split)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--ratio", type=float, default=0.15)
    p.add_argument("--table_t", type=int, default=4, help="T of Table 6 and Table 5")
    p.add_argument("--max_t", type=int, default=8, help="Figure 5 runs T = 1..max_t")
    p.add_list("--tables", Literal["6", "5", "fig5"], ["6", "5", "fig5"], "which tables / figures to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_optional_value("--plots", str(IMG_DIR), "write PNGs into this folder")
    p.add_argument("--plot_prefix", type=str, default="bench_", help="file-name prefix of the PNGs")
    args = parse_bench(p, argv)
    if not 1 <= args.table_t <= 8 or not 1 <= args.max_t <= 8:
        usage_error("--table_t and --max_t must be in 1..8")
    if args.train < 1 or args.test < 1 or args.epochs < 1 or args.batch < 1:
        usage_error("--train, --test, --epochs and --batch must be >= 1")
    setup_threads(args.threads)
    tr_x, tr_y = fashion_mnist("train", args.data_dir)
    te_x, te_y = fashion_mnist("test", args.data_dir)
    train = (preprocess(tr_x[: args.train], 32), torch.from_numpy(tr_y[: args.train]))
    test = (preprocess(te_x[: args.test], 32), torch.from_numpy(te_y[: args.test]))
    groups = plan(args.tables, args.table_t, args.max_t)
    unique: dict[str, RunSpec] = {}
    for specs in groups.values():
        for s in specs:
            unique.setdefault(s.key, s)
    console.print(
        f"{len(unique)} training runs: Fashion-MNIST train[:{len(train[0])}] / test[:{len(test[0])}], "
        f"{args.epochs} epoch(s), batch {args.batch}, AdamW lr {args.lr} one-cycle, seed {args.seed}"
    )
    runs: dict[str, dict[str, Any]] = {}
    for key, spec in unique.items():
        runs[key] = train_eval(spec, train, test, args.epochs, args.batch, args.lr, args.ratio, args.seed)
        console.print(f"  {key}: test top-1 {100 * runs[key]['test_acc']:.2f} % ({runs[key]['seconds']:.0f} s)")
    report = {
        "benchmark": "paper_tables",
        "setup": {
            "dataset": "Fashion-MNIST 32x32 (official preprocessing)",
            "train_images": len(train[0]),
            "test_images": len(test[0]),
            "epochs": args.epochs,
            "batch": args.batch,
            "optimizer": f"AdamW lr {args.lr} wd 1e-4, one-cycle",
            "ratio": args.ratio,
            "model": "i2e_lightning.models.spiking_cnn (defaults)",
            "seed": args.seed,
        },
        "plan": {g: [s.key for s in specs] for g, specs in groups.items()},
        "runs": runs,
    }
    if "table6" in groups:
        print_table(
            "Table 6 analogue: the same network on different inputs",
            ["input", "T", "channels", "test top-1 %", "s"],
            [
                (
                    k,
                    runs[k]["timesteps"],
                    RunSpec(runs[k]["input"], 1).channels,
                    100 * runs[k]["test_acc"],
                    runs[k]["seconds"],
                )
                for k in report["plan"]["table6"]
            ],
        )
    if "table5" in groups:
        print_table(
            "Table 5 analogue: timestep orders",
            ["order", "directions", "test top-1 %"],
            [
                (
                    runs[k]["order"],
                    str(list(ORDER_PRESETS[runs[k]["order"]][: runs[k]["timesteps"]])),
                    100 * runs[k]["test_acc"],
                )
                for k in report["plan"]["table5"]
            ],
        )
    if "figure5" in groups:
        print_table(
            "Figure 5 analogue: accuracy vs T",
            ["T", "test top-1 %", "s"],
            [(runs[k]["timesteps"], 100 * runs[k]["test_acc"], runs[k]["seconds"]) for k in report["plan"]["figure5"]],
        )
    if args.plots:
        report["plots"] = _plots(report, Path(args.plots), args.plot_prefix)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
