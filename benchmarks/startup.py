"""Start-up time of the command line: ``python -m i2e_lightning --help`` and every subcommand's ``--help``.

Each command runs in a fresh process (what a user waits for), ``--rounds`` times interleaved with a
baseline ``python -c pass`` in the same rounds; the report gives medians and the ratio to that
baseline. Targets (issue 11 point 7): the command list under 0.5 s without importing torch, each
subcommand's help under 3 s.

    python -m benchmarks.startup --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from i2e_lightning.commands import EXTRA_COMMANDS, LIGHTNING_COMMANDS

TARGETS = {"--help": 0.5}
DEFAULT_TARGET = 3.0


def _time(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def torch_imported_by_help() -> bool:
    """Whether ``python -m i2e_lightning --help`` imports torch (it must not)."""
    code = "import runpy, sys; sys.argv=['i2e_lightning','--help']\ntry:\n runpy.run_module('i2e_lightning', run_name='__main__')\nexcept SystemExit:\n pass\nprint('torch' in sys.modules, file=sys.stderr)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return out.stderr.strip().endswith("True")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    args = p.parse_args(argv)
    cases = [["--help"]] + [[c, "--help"] for c in (*LIGHTNING_COMMANDS, *EXTRA_COMMANDS)]
    times: dict[str, list[float]] = {"python -c pass": []}
    for _ in range(args.rounds):
        times["python -c pass"].append(_time([sys.executable, "-c", "pass"]))
        for case in cases:
            times.setdefault(" ".join(case), []).append(_time([sys.executable, "-m", "i2e_lightning", *case]))
    base = statistics.median(times["python -c pass"])
    print(
        f"python -m i2e_lightning ... (median of {args.rounds} fresh processes; baseline python -c pass {base:.3f} s)"
    )
    print(f"{'command':<24} {'seconds':>8} {'x baseline':>11} {'target':>7}  ok")
    failed = 0
    for name, values in times.items():
        if name == "python -c pass":
            continue
        med = statistics.median(values)
        target = TARGETS.get(name, DEFAULT_TARGET)
        ok = med < target
        failed += not ok
        print(f"{name:<24} {med:8.3f} {med / base:11.1f} {target:7.1f}  {'yes' if ok else 'NO'}")
    print(f"torch imported by --help: {torch_imported_by_help()}")
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
