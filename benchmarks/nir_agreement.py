"""NIR export checked by a second simulator (Norse) on the Fashion-MNIST test set, and the cost of NIR pooling.

    .venv/bin/python benchmarks/nir_agreement.py                    # ~3-4 min on 2 CPU cores
    .venv/bin/python benchmarks/nir_agreement.py --json runs/nir.json

Trains two small spiking CNNs (conv-BN-pool-LIF x2 -> fc, 28x28 I2E events, T=4) for one short epoch
on the CPU, identical except for the pooling: ``pool="max"`` (the project default, which NIR lacks) and
``pool="avg"`` (NIR-ready). Then, on the 10,000 test images converted once by I2E:

* accuracy of both in PyTorch, and of the max-pool model with its pools swapped for average pools
  without retraining (what exporting it as-is would give): the accuracy cost of NIR-compatible pooling;
* each model written to a ``.nir`` file, read back by Norse (``norse.torch.from_nir``), stepped over
  the same events: the share of images where Norse and PyTorch predict the same class, the largest
  logit difference, and the share of output values that differ at all.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonargparse import Namespace  # noqa: E402

from benchmarks._args import BenchParser, parse_bench  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def parse_args(argv: list[str] | None) -> Namespace:
    p = BenchParser("nir_agreement", description=__doc__)
    p.add_argument("--data_dir", type=str, default=FMNIST, help="Fashion-MNIST idx folder")
    p.add_argument("--train_images", type=int, default=10000, help="training images per model")
    p.add_argument("--test_images", type=int, default=10000)
    p.add_argument("--timesteps", type=int, default=4)
    p.add_argument("--ratio", type=float, default=0.15)
    p.add_argument("--channels", type=tuple[int, int], default=(8, 16), help="channels of the two conv layers")
    p.list_options["--channels"] = False  # the earlier `--channels 8 16` still parses
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_threads()
    p.add_argument("--seed", type=int, default=0)
    p.add_json()
    return parse_bench(p, argv)


def to_events(images: np.ndarray, ratio: float, timesteps: int) -> torch.Tensor:
    from i2e_lightning.converter import I2E

    conv = I2E(ratio, 4, timesteps).eval()
    x = torch.from_numpy(images).unsqueeze(1)  # uint8 [N, 1, 28, 28]
    return torch.cat([conv(x[i : i + 2048]).clone() for i in range(0, len(x), 2048)], dim=1)  # bool [T, N, 2, H, W]


def train(pool: str, events: torch.Tensor, labels: torch.Tensor, args: Namespace) -> torch.nn.Module:
    from i2e_lightning.models import create_model

    torch.manual_seed(args.seed)
    model = create_model(
        "spiking_cnn", num_classes=10, channels=tuple(args.channels), pool=pool, input_size=(28, 28)
    ).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    n = events.shape[1]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    steps = (n + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    for i in range(steps):
        idx = order[i * args.batch : (i + 1) * args.batch]
        loss = F.cross_entropy(model(events[:, idx].float()), labels[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, events: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(events[:, i : i + 1000].float()) for i in range(0, events.shape[1], 1000)])


def norse_logits(path: Path, events: torch.Tensor) -> torch.Tensor:
    from i2e_lightning.nir import load_norse, run_norse

    module = load_norse(path)
    return torch.cat([run_norse(module, events[:, i : i + 1000])[0] for i in range(0, events.shape[1], 1000)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import logging

    logging.disable(logging.WARNING)  # Norse warns that r != 1 is unsupported; our graphs write r = 1 anyway
    from i2e_lightning.data.mnist import load_idx_split
    from i2e_lightning.nir import export_nir, nir_compatible, write_nir

    t0 = time.perf_counter()
    train_x, train_y = load_idx_split(args.data_dir, "train")
    test_x, test_y = load_idx_split(args.data_dir, "test")
    train_x, train_y = train_x[: args.train_images], torch.from_numpy(train_y[: args.train_images])
    test_x, test_y = test_x[: args.test_images], torch.from_numpy(test_y[: args.test_images])
    train_ev = to_events(train_x, args.ratio, args.timesteps)
    test_ev = to_events(test_x, args.ratio, args.timesteps)
    print(f"events: train {tuple(train_ev.shape)}, test {tuple(test_ev.shape)} ({time.perf_counter() - t0:.1f} s)")

    results: dict = {"settings": {k: v for k, v in vars(args).items() if k not in ("json", "config")}}
    with tempfile.TemporaryDirectory() as tmp:
        for pool in ("max", "avg"):
            t1 = time.perf_counter()
            model = train(pool, train_ev, train_y, args)
            train_s = time.perf_counter() - t1
            torch_logits = predict(model, test_ev)
            acc = float((torch_logits.argmax(1) == test_y).float().mean())
            entry = {"train_s": train_s, "torch_accuracy": acc}
            twin = nir_compatible(model).eval()
            twin_logits = predict(twin, test_ev)
            entry["nir_pooling_accuracy"] = float((twin_logits.argmax(1) == test_y).float().mean())
            path = write_nir(export_nir(model), Path(tmp) / f"{pool}.nir")
            t2 = time.perf_counter()
            n_logits = norse_logits(path, test_ev)
            entry["norse_s"] = time.perf_counter() - t2
            entry["norse_accuracy"] = float((n_logits.argmax(1) == test_y).float().mean())
            same = (n_logits.argmax(1) == twin_logits.argmax(1)).float().mean()
            entry["prediction_agreement"] = float(same)
            entry["max_logit_difference"] = float((n_logits - twin_logits).abs().max())
            entry["outputs_differing"] = float((n_logits != twin_logits).float().mean())
            entry["nir_file_bytes"] = path.stat().st_size
            results[pool] = entry
            print(
                f"pool={pool}: trained {train_s:.0f} s; accuracy torch {acc:.4f}, same net with average pools "
                f"{entry['nir_pooling_accuracy']:.4f}, Norse {entry['norse_accuracy']:.4f}; Norse vs PyTorch "
                f"(NIR-pooled net): same prediction {float(same) * 100:.2f} %, max |logit diff| "
                f"{entry['max_logit_difference']:.3g}, outputs differing {entry['outputs_differing'] * 100:.3f} %"
            )
    cost_swap = results["max"]["torch_accuracy"] - results["max"]["nir_pooling_accuracy"]
    cost_retrain = results["max"]["torch_accuracy"] - results["avg"]["torch_accuracy"]
    results["pooling_cost_swap_points"] = cost_swap * 100
    results["pooling_cost_retrained_points"] = cost_retrain * 100
    print(
        f"accuracy cost of NIR pooling: {cost_swap * 100:+.2f} points swapping max->avg in the trained net, "
        f"{cost_retrain * 100:+.2f} points training with avg pooling instead (total {time.perf_counter() - t0:.0f} s)"
    )
    if args.json:
        from benchmarks._common import write_json

        write_json(args.json, {"benchmark": "nir_agreement", **results})
    return 0 if min(results[p]["prediction_agreement"] for p in ("max", "avg")) >= 0.999 else 1


if __name__ == "__main__":
    raise SystemExit(main())
