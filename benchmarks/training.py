"""Training speed: runs the helpers' training benchmarks and gathers their figures in one report.

    benchmarks/train_step.py       images/s of ms_resnet18 and the small CNN vs the same networks built
                                   on SpikingJelly's multi-step LIF (same run, interleaved)
    benchmarks/conversion_share.py the share of a training step spent converting images to events

Each runs in its own subprocess with ``--json OUT`` (and ``--threads``); their own tables are shown
as they print them, and their JSON is embedded unchanged under ``train_step`` / ``conversion_share``.
Extra arguments after ``--`` go to both scripts (e.g. ``-- --device cuda``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._args import BenchParser, parse_bench
from benchmarks._common import REPO_ROOT, console, write_json

SCRIPTS = {"train_step": "benchmarks/train_step.py", "conversion_share": "benchmarks/conversion_share.py"}


def run_script(name: str, extra: list[str], threads: int, timeout: float) -> dict[str, Any]:
    """Run one helper benchmark; its JSON, or ``{"skipped": reason}``."""
    script = REPO_ROOT / SCRIPTS[name]
    if not script.exists():
        return {"skipped": f"{SCRIPTS[name]} does not exist (yet)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(script), "--json", str(out), "--threads", str(threads), *extra]
        console.rule(f"{SCRIPTS[name]}  ({' '.join(cmd[2:])})")
        try:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"skipped": f"{SCRIPTS[name]} ran past {timeout:.0f} s"}
        if proc.returncode != 0:
            return {"skipped": f"{SCRIPTS[name]} exited with status {proc.returncode}"}
        if not out.exists():
            return {"skipped": f"{SCRIPTS[name]} wrote no JSON to --json"}
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = BenchParser(
        "training",
        description="training-step speed and conversion share (helpers' scripts); arguments after -- go to both",
    )
    p.add_threads()
    p.add_json()
    p.add_list("--only", Literal[tuple(sorted(SCRIPTS))], sorted(SCRIPTS), "which of the scripts to run")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per script")
    args = parse_bench(p, argv)
    report: dict[str, Any] = {"benchmark": "training"}
    for name in args.only:
        report[name] = run_script(name, extra, args.threads, args.timeout)
        if "skipped" in report[name]:
            console.print(f"[yellow]note:[/yellow] {name}: {report[name]['skipped']}")
    write_json(args.json, report)
    return 0 if all("skipped" not in report[n] for n in args.only) else 1


if __name__ == "__main__":
    raise SystemExit(main())
