"""Start-up time of the command line: ``python -m i2e_lightning --help`` and every subcommand's ``--help``.

Each command runs in a fresh process (what a user waits for), interleaved with a baseline
``python -c pass`` in the same rounds; the report gives medians and the ratio to that baseline.

A subcommand's help is served from a per-user cache, else from texts shipped in the package
(``commands/help_cache.py``), so it is measured three ways:

* **warm**: the user cache filled (in a temporary ``XDG_CACHE_HOME``, so the user's own cache is
  untouched): every call after the first, and the first too after ``make install`` (``--warm-help``);
* **shipped**: an empty user cache (a new empty ``XDG_CACHE_HOME`` for every call): the first call after
  a fresh clone, ``pip install`` of the wheel or ``pip install -e .``, served from ``help_texts/`` when they
  were rendered under this installation's libraries (the report says whether they were);
* **cold**: everything off (``I2E_HELP_CACHE=0``): the parser is built, importing torch and Lightning;
  what a miss costs (a new library version, a terminal narrower than 80 columns, an edit of a signature,
  docstring or default not yet rendered).

Targets (issue 11 point 7): the command list under 0.5 s without importing torch, each subcommand's
help under 3 s; checked on the warm and shipped figures, the cold ones are reported beside them.

    python -m benchmarks.startup --rounds 3 --cold_rounds 1
"""

from __future__ import annotations

import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._args import BenchParser, parse_bench
from i2e_lightning.commands import CACHED_HELP, EXTRA_COMMANDS, LIGHTNING_COMMANDS, help_cache

TARGETS = {"--help": 0.5}
DEFAULT_TARGET = 3.0


def _time(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
    return time.perf_counter() - t0


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    """Which of torch / lightning ``python -m i2e_lightning ARGS`` imports (the answer for --help must be none)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['i2e_lightning', *{args!r}]\n"
        "try:\n runpy.run_module('i2e_lightning', run_name='__main__')\nexcept SystemExit:\n pass\n"
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    ).stderr.strip()
    return out.splitlines()[-1] if out else "?"


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("startup", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved warm and shipped rounds (median reported)")
    p.add_argument("--cold_rounds", type=int, default=1, help="rounds with the cache off (0: skip them)")
    args = parse_bench(p, argv)
    cases = [["--help"]] + [[c, "--help"] for c in (*LIGHTNING_COMMANDS, *EXTRA_COMMANDS)]
    with tempfile.TemporaryDirectory() as tmp:
        # a fixed width: the cache key includes its bucket, and every process here must agree
        env = {**os.environ, "XDG_CACHE_HOME": os.path.join(tmp, "warm"), "I2E_HELP_CACHE": "1", "COLUMNS": "100"}
        env = {k: v for k, v in env.items() if not k.startswith("JSONARGPARSE_")}
        cold_env = {**env, "I2E_HELP_CACHE": "0"}
        shipped_matches = help_cache.shipped_key() == help_cache.environment_key()
        cold: dict[str, list[float]] = {}
        for _ in range(args.cold_rounds):
            for case in cases[1:]:
                cold.setdefault(" ".join(case), []).append(
                    _time([sys.executable, "-m", "i2e_lightning", *case], cold_env)
                )
        for case in cases[1:]:  # fill the warm cache (not timed)
            subprocess.run([sys.executable, "-m", "i2e_lightning", *case], capture_output=True, check=False, env=env)
        warm: dict[str, list[float]] = {"python -c pass": []}
        shipped: dict[str, list[float]] = {}
        for r in range(args.rounds):
            warm["python -c pass"].append(_time([sys.executable, "-c", "pass"], env))
            for case in cases:
                name = " ".join(case)
                warm.setdefault(name, []).append(_time([sys.executable, "-m", "i2e_lightning", *case], env))
                if case[0] in CACHED_HELP:
                    empty = {**env, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix=f"empty{r}-", dir=tmp)}
                    shipped.setdefault(name, []).append(_time([sys.executable, "-m", "i2e_lightning", *case], empty))
        top_level = heavy_imports(["--help"], env)
        warm_fit = heavy_imports(["fit", "--help"], env)
        shipped_fit = heavy_imports(["fit", "--help"], {**env, "XDG_CACHE_HOME": tempfile.mkdtemp(dir=tmp)})
    base = statistics.median(warm["python -c pass"])
    print(
        f"python -m i2e_lightning ... : {datetime.date.today()}, median of {args.rounds} fresh processes with the help "
        f"cache filled (warm) and empty (shipped), {args.cold_rounds} with it off (cold); "
        f"baseline python -c pass {base:.3f} s"
    )
    print(f"shipped help texts rendered under this installation's key: {'yes' if shipped_matches else 'NO (live)'}")
    print(f"{'command':<22} {'warm s':>7} {'x base':>7} {'shipped s':>9} {'cold s':>7} {'target':>7}  ok")
    failed = 0
    for name, values in warm.items():
        if name == "python -c pass":
            continue
        med = statistics.median(values)
        first = statistics.median(shipped[name]) if name in shipped else None
        target = TARGETS.get(name, DEFAULT_TARGET)
        ok = med < target and (first is None or first < target)
        failed += not ok
        cold_s = f"{statistics.median(cold[name]):7.2f}" if name in cold else f"{'-':>7}"
        first_s = f"{first:9.3f}" if first is not None else f"{'-':>9}"
        print(f"{name:<22} {med:7.3f} {med / base:7.1f} {first_s} {cold_s} {target:7.1f}  {'yes' if ok else 'NO'}")
    print(
        f"heavy modules imported by --help: {top_level}; by fit --help warm: {warm_fit}, "
        f"with an empty cache: {shipped_fit}"
    )
    # what the first --help after an edit of the sources adds: parsing them for their help surface
    parse = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        help_cache.surface_hash(help_cache.package_sources())
        parse.append(time.perf_counter() - t0)
    print(
        f"help surface of the edited sources (first --help after an edit, then remembered): {statistics.median(parse):.3f} s"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
