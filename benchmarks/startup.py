"""Start-up time of the command line: ``python -m i2e_lightning --help`` and every subcommand's ``--help``.

Each command runs in a fresh process (what a user waits for), interleaved with a baseline
``python -c pass`` in the same rounds; the report gives medians and the ratio to that baseline.

A subcommand's help is measured twice, because it is served from a cache (``commands/help_cache.py``):

* **cold**: the cache off (``I2E_HELP_CACHE=0``): the parser is built, importing torch and Lightning;
  this is what the very first ``--help`` after an install or an edit costs (unless ``make install``'s
  ``--warm-help`` already filled the cache);
* **warm**: the cache filled (in a temporary ``XDG_CACHE_HOME``, so the user's cache is untouched):
  every later call.

Targets (issue 11 point 7): the command list under 0.5 s without importing torch, each subcommand's
help under 3 s; the targets are checked on the warm figures and the cold ones are reported beside them.

    python -m benchmarks.startup --rounds 5 --cold_rounds 1
"""

from __future__ import annotations

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
from i2e_lightning.commands import EXTRA_COMMANDS, LIGHTNING_COMMANDS

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
    p.add_argument("--rounds", type=int, default=3, help="interleaved warm rounds (median reported)")
    p.add_argument("--cold_rounds", type=int, default=1, help="rounds with the cache off (0: skip them)")
    args = parse_bench(p, argv)
    cases = [["--help"]] + [[c, "--help"] for c in (*LIGHTNING_COMMANDS, *EXTRA_COMMANDS)]
    with tempfile.TemporaryDirectory() as cache:
        # a fixed width: the cache key includes it, and every process here must agree
        env = {**os.environ, "XDG_CACHE_HOME": cache, "I2E_HELP_CACHE": "1", "COLUMNS": "100"}
        cold_env = {**env, "I2E_HELP_CACHE": "0"}
        cold: dict[str, list[float]] = {}
        for _ in range(args.cold_rounds):
            for case in cases[1:]:
                cold.setdefault(" ".join(case), []).append(
                    _time([sys.executable, "-m", "i2e_lightning", *case], cold_env)
                )
        for case in cases[1:]:  # fill the cache (not timed)
            subprocess.run([sys.executable, "-m", "i2e_lightning", *case], capture_output=True, check=False, env=env)
        warm: dict[str, list[float]] = {"python -c pass": []}
        for _ in range(args.rounds):
            warm["python -c pass"].append(_time([sys.executable, "-c", "pass"], env))
            for case in cases:
                warm.setdefault(" ".join(case), []).append(_time([sys.executable, "-m", "i2e_lightning", *case], env))
        top_level = heavy_imports(["--help"], env)
        warm_fit = heavy_imports(["fit", "--help"], env)
    base = statistics.median(warm["python -c pass"])
    print(
        f"python -m i2e_lightning ... : median of {args.rounds} fresh processes with the help cache filled (warm), "
        f"{args.cold_rounds} with it off (cold); baseline python -c pass {base:.3f} s"
    )
    print(f"{'command':<22} {'warm s':>7} {'x base':>7} {'cold s':>7} {'target':>7}  ok")
    failed = 0
    for name, values in warm.items():
        if name == "python -c pass":
            continue
        med = statistics.median(values)
        target = TARGETS.get(name, DEFAULT_TARGET)
        ok = med < target
        failed += not ok
        cold_s = f"{statistics.median(cold[name]):7.2f}" if name in cold else f"{'-':>7}"
        print(f"{name:<22} {med:7.3f} {med / base:7.1f} {cold_s} {target:7.1f}  {'yes' if ok else 'NO'}")
    print(f"heavy modules imported by --help: {top_level}; by a warm fit --help: {warm_fit}")
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
