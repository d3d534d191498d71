"""`make docs`: regenerate every part of README.md and docs/ that depends on the default config or on a result file.

Each generated part sits between ``<!-- make-docs:NAME -->`` and ``<!-- /make-docs:NAME -->`` and is rewritten
from its source; nothing else in the files is touched. Running it twice changes nothing (the pictures are
deterministic, timings are left out of regenerated output, measured figures come from their JSON files with the
command and date recorded there).

    python docs/generate.py            # rewrite the parts, the pictures and export/i2e_runtime.py
    python docs/generate.py --check    # only say what is out of date (exit 1 if anything is)
    python docs/generate.py --fast     # skip what runs the converter on the dataset (pictures, convert output)

Sources: configs/fashion_mnist.yaml (the default), benchmarks/results/*.json (measured figures),
i2e_lightning/onnx/runtime.py (copied to export/i2e_runtime.py). It also renders every command's ``--help`` into
i2e_lightning/commands/help_texts/ (``python -m i2e_lightning --warm-help --ship``; commands/help_cache.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "fashion_mnist.yaml"
RUNTIME = REPO / "i2e_lightning" / "onnx" / "runtime.py"
RUNTIME_COPY = REPO / "export" / "i2e_runtime.py"
GIF = "docs/img/fashion_mnist_events.gif"
STRIP = "docs/img/fashion_mnist_events_strip.png"
FASHION_MNIST_TRAIN = 60_000  # images in the official training split
MARK = re.compile(r"(<!-- make-docs:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /make-docs:(?P=name) -->)", re.S)

# the commands shown in the docs, run as shown (from the repository root)
VISUALIZE_GIF = (
    f"python -m i2e_lightning visualize --config configs/fashion_mnist.yaml --split test "
    f"--index 0 1 2 8 9 13 18 19 --columns 4 --scale 3 --out {GIF}"
)
VISUALIZE_STRIP = (
    f"python -m i2e_lightning visualize --config configs/fashion_mnist.yaml --split test "
    f"--index 0 2 18 --scale 3 --out {STRIP}"
)
CONVERT = "python -m i2e_lightning convert --config configs/fashion_mnist.yaml --split train --out fmnist_train.h5"
# the published I2E-FashionMNIST: all 60,000 training images at T = 8
CONVERT_PUBLISHED = (
    "python -m i2e_lightning convert --config configs/fashion_mnist.yaml --data.init_args.val_size 0 "
    "--data.init_args.timesteps 8 --split train --out fmnist_published.h5"
)
PUBLISHED_FASHION_MNIST_RATE = 10.76  # % (the official dataset catalogue)
# the --help texts shipped in the package, rendered with this environment's libraries
HELP_TEXTS = "python -m i2e_lightning --warm-help --ship"


def default_config() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def defaults() -> dict:
    """The facts of the default config that the docs state (with LightningCLI's defaults filled in)."""
    cfg = default_config()
    data = cfg["data"]["init_args"]
    model = cfg["model"]
    return {
        "epochs": cfg["trainer"]["max_epochs"],
        "accelerator": cfg["trainer"].get("accelerator", "auto"),
        "arch": model["arch"],
        "channels": tuple(model.get("model_kwargs", {}).get("channels", ())),
        "stem": ", stride-2 first conv" if model.get("model_kwargs", {}).get("stem_stride", 1) == 2 else "",
        "interval": model.get("scheduler_interval", "epoch"),
        "optimizer": model.get("optimizer", "sgd"),
        "lr": model["lr"],
        "weight_decay": model.get("weight_decay"),
        "scheduler": model.get("scheduler"),
        "eta_min": model.get("eta_min"),
        "label_smoothing": model.get("label_smoothing"),
        "batch_size": data["batch_size"],
        "ratio": data["ratio"],
        "order": data["order"],
        "timesteps": data["timesteps"],
        "augment": data.get("augment"),
        "val_size": data["val_size"],
        "resolution": data.get("resolution", 32),
        "seed": cfg.get("seed_everything"),
    }


def _num(x: float) -> str:
    return f"{x:g}"


# -- the generated parts -------------------------------------------------------------------------


def gif_caption(prefix: str) -> str:
    d = defaults()
    text = (
        f"*Fashion-MNIST test images ({d['resolution']}x{d['resolution']}, ratio {_num(d['ratio'])}, order "
        f"{d['order']}, T = {d['timesteps']} as in the default config) beside their {d['timesteps']} event frames, "
        f"ON in orange, OFF in blue; drawn by `visualize` (command in [{prefix}events.md]({prefix}events.md); "
        "`make docs` redraws it).*\n"
    )
    if prefix == "":  # docs/events.md also shows the strip
        text += (
            f"\n![The same as a strip: image, then t = 0..{d['timesteps'] - 1}](img/fashion_mnist_events_strip.png)\n"
        )
    return text


def default_settings() -> str:
    d = defaults()
    rows = [
        ("network", f"`{d['arch']}`, channels {d['channels']}{d['stem']}", "`model.arch`, `model.model_kwargs`"),
        (
            "events",
            f"{d['resolution']}x{d['resolution']}, T = {d['timesteps']} (order {d['order']})",
            "`data.init_args.timesteps`, `order`",
        ),
        ("threshold ratio", _num(d["ratio"]), "`data.init_args.ratio`"),
        ("batch size", str(d["batch_size"]), "`data.init_args.batch_size`"),
        ("augmentation", f"`{d['augment']}`", "`data.init_args.augment`"),
        ("validation", f"{d['val_size']} training images held out", "`data.init_args.val_size`"),
        (
            "optimizer",
            f"{d['optimizer']}, lr {_num(d['lr'])}, weight decay {_num(d['weight_decay'])}",
            "`model.optimizer`, `lr`, `weight_decay`",
        ),
        (
            "schedule",
            f"{d['scheduler']} to {_num(d['eta_min'])}, per {d['interval']}",
            "`model.scheduler`, `eta_min`, `scheduler_interval`",
        ),
        ("label smoothing", _num(d["label_smoothing"]), "`model.label_smoothing`"),
        ("epochs", str(d["epochs"]), "`trainer.max_epochs`"),
        ("device", d["accelerator"], "`trainer.accelerator`"),
        ("seed", str(d["seed"]), "`seed_everything`"),
    ]
    lines = ["| setting | default | config key |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def _result(name: str) -> dict:
    return json.loads((REPO / "benchmarks" / "results" / name).read_text())


def _command(env: dict) -> str:
    # the recorded command, with this machine's absolute paths turned back into repository-relative ones
    cmd = re.sub(r"\S*/(benchmarks/\S+)", r"\1", env["command"])
    return re.sub(r" --json \S+", "", cmd)


def conversion_share() -> str:
    r = _result("training.json")["conversion_share"]
    env = r["environment"]
    return (
        f"{100 * r['share_of_step']:.2f} % of a training step ({r['median_convert_ms']:.2f} ms of "
        f"{r['median_step_ms']:.1f} ms, batch {r['batch']}, events {tuple(r['events_shape'])}, "
        f"{env['threads']} threads; `{_command(env)}`, {env['date_utc'][:10]})\n"
    )


def _convert(command: str) -> list[str]:
    name = command.rsplit("--out ", 1)[1].split()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = _run(command.replace(f"--out {name}", f"--out {tmp}/{name}") + " --no_progress")
    return [ln.replace(f"{tmp}/", "") for ln in out.splitlines() if ln.strip()]


def published_rate() -> str:
    lines = _convert(CONVERT_PUBLISHED)
    rate = next(ln for ln in lines if ln.startswith("mean event rate")).split()[3]
    return (
        f"The published I2E-FashionMNIST reports a {PUBLISHED_FASHION_MNIST_RATE} % event rate; all 60,000 training "
        f"images at T = 8 give {rate} % (`{CONVERT_PUBLISHED}`).\n"
    )


def convert_example() -> str:
    d = defaults()
    lines = _convert(CONVERT)
    kept = [ln for ln in lines if not ln.startswith("throughput")]  # machine-dependent: not regenerated
    rows = FASHION_MNIST_TRAIN - d["val_size"]
    expect = f"{rows:,} rows of shape ({d['timesteps']}, 2, {d['resolution']}, {d['resolution']})"
    if not any(expect in ln for ln in kept):
        raise SystemExit(f"convert printed {kept[:1]}, expected {expect}: the docs' claim and the command disagree")
    return (
        "```bash\n"
        + CONVERT
        + "\n```\n\nprints (after its progress bar; the throughput line is left out here):\n\n```\n"
        + "\n".join(kept)
        + "\n```\n"
    )


PARTS: dict[str, tuple[Callable[[], str], bool]] = {  # name -> (render, needs the dataset and the converter)
    "readme-gif-caption": (lambda: gif_caption("docs/"), False),
    "events-gif-caption": (lambda: gif_caption(""), False),
    "default-settings": (default_settings, False),
    "conversion-share": (conversion_share, False),
    "convert-example": (convert_example, True),
    "published-rate": (published_rate, True),
}
FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


# -- machinery -----------------------------------------------------------------------------------


def _run(cmd: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    argv = [sys.executable, *cmd.split()[1:]] if cmd.startswith("python ") else cmd.split()
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"`{cmd}` failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return res.stdout


def help_texts_stale() -> bool:
    """The shipped ``--help`` texts were rendered from other sources (their help surface differs)."""
    from i2e_lightning.commands import help_cache

    key = help_cache.shipped_key()
    return key is None or key.get("source") != help_cache.surface_hash(help_cache.package_sources())


def ship_help_texts() -> None:
    # a fixed environment: no user cache touched, no JSONARGPARSE_* setting (it would change the texts)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSONARGPARSE_")}
    res = subprocess.run(
        [sys.executable, *HELP_TEXTS.split()[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**env, "I2E_HELP_CACHE": "0"},
    )
    if res.returncode != 0:
        raise SystemExit(f"`{HELP_TEXTS}` failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    print(res.stdout.strip().splitlines()[-1])
    if res.stderr.strip():
        print(res.stderr.strip())


def render_file(text: str, rendered: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in PARTS:
            raise SystemExit(f"unknown generated part <!-- make-docs:{name} --> (known: {', '.join(PARTS)})")
        body = rendered.get(name, m.group("body"))
        return m.group(1) + body + m.group(4)

    return MARK.sub(sub, text)


def stale_parts(fast: bool = True) -> list[str]:
    """Generated parts whose text differs from a fresh rendering (``fast``: the parts that run nothing)."""
    stale = []
    for path in FILES:
        text = path.read_text()
        for m in MARK.finditer(text):
            render, slow = PARTS[m.group("name")]
            if fast and slow:
                continue
            if m.group("body") != render():
                stale.append(f"{path.relative_to(REPO)}: {m.group('name')}")
    if RUNTIME_COPY.read_bytes() != RUNTIME.read_bytes():
        stale.append(str(RUNTIME_COPY.relative_to(REPO)))
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only report out-of-date parts (exit 1 if any)")
    p.add_argument("--fast", action="store_true", help="skip the parts and pictures that run the converter")
    args = p.parse_args(argv)
    if args.check:
        stale = stale_parts(fast=args.fast)
        if help_texts_stale():
            stale.append(f"i2e_lightning/commands/help_texts (`{HELP_TEXTS}`)")
        for s in stale:
            print(f"out of date: {s}")
        return 1 if stale else 0
    names = {m.group("name") for f in FILES for m in MARK.finditer(f.read_text())}
    rendered = {n: PARTS[n][0]() for n in sorted(names) if not (args.fast and PARTS[n][1])}
    for path in FILES:
        text = path.read_text()
        new = render_file(text, rendered)
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(REPO)}")
    if RUNTIME_COPY.read_bytes() != RUNTIME.read_bytes():
        shutil.copyfile(RUNTIME, RUNTIME_COPY)
        print(f"updated {RUNTIME_COPY.relative_to(REPO)}")
    ship_help_texts()  # ~20 s: every command's parser at three widths, in one process
    if not args.fast:
        for cmd in (VISUALIZE_GIF, VISUALIZE_STRIP):
            _run(cmd)
        print(f"drew {GIF} and {STRIP}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
