"""``scripts/fuzz``: every target, each in its own process, with a budget; one table at the end.

Exit status 1 when any target reports a finding (an untyped exception, a hang over 1 s, an
allocation beyond its bound, a broken oracle) or its process dies; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .engine import have_atheris
from .targets import NAMES

ROOT = Path(__file__).resolve().parent
RESTARTS = 5


def run_target(name: str, *, runs: int, seconds: float, engine: str, seed: int, work: Path,
               replay: list[Path] | None = None) -> dict[str, Any]:
    """Run one target in fresh processes until its budget is spent; the merged statistics.

    A process that dies (a crash inside a C extension, libFuzzer's own limits) is a finding; the
    input it died on (libFuzzer's artifact) is kept, and a new process with another seed goes on
    with the rest of the budget, at most RESTARTS times.
    """
    total: dict[str, Any] = {"target": name, "runs": 0, "typed_errors": 0, "findings": [],
                             "max_seconds": 0.0, "max_memory": 0, "elapsed": 0.0}
    seen: set[str] = set()
    began = time.monotonic()
    for attempt in range(RESTARTS + 1):
        left_runs = runs - total["runs"]
        left_seconds = seconds - (time.monotonic() - began)
        if attempt and (left_runs <= 0 or left_seconds <= 0 or replay is not None):
            break
        part = _run_once(name, runs=left_runs, seconds=left_seconds, engine=engine,
                         seed=seed + attempt, work=work / f"{name}.{attempt}", replay=replay)
        for key in ("runs", "typed_errors", "elapsed"):
            total[key] += part.get(key, 0)
        for key in ("max_seconds", "max_memory"):
            total[key] = max(total[key], part.get(key, 0))
        for finding in part["findings"]:
            if finding["kind"] + finding["signature"] not in seen:
                seen.add(finding["kind"] + finding["signature"])
                total["findings"].append(finding)
        if not part.get("died"):
            break
    return total


def _run_once(name: str, *, runs: int, seconds: float, engine: str, seed: int, work: Path,
              replay: list[Path] | None) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    stats = work / "stats.json"
    cmd = [sys.executable, "-m", "fuzz.engine", "--target", name, "--runs", str(runs),
           "--seconds", str(seconds), "--engine", engine, "--seed", str(seed),
           "--stats", str(stats), "--work", str(work)]
    if replay is not None:
        cmd += ["--replay", *map(str, replay)]
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT.parent), os.environ.get("PYTHONPATH", "")])}
    log = work / "log.txt"
    with log.open("wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,  # noqa: S603
                              cwd=ROOT.parent, check=False, timeout=seconds + 600)
    result: dict[str, Any] = json.loads(stats.read_text()) if stats.exists() else {
        "target": name, "runs": 0, "findings": [], "max_seconds": 0.0, "max_memory": 0}
    if proc.returncode != 0:
        artifacts = sorted((work / "artifacts").glob("*")) if (work / "artifacts").is_dir() \
            else []
        tail = log.read_text(errors="replace")[-600:]
        result["died"] = True
        result["findings"].append({
            "kind": "died", "signature": f"exit {proc.returncode}", "detail": tail,
            "input_hex": artifacts[0].read_bytes().hex() if artifacts else ""})
    return result


def _row(result: dict[str, Any]) -> list[str]:
    findings = result["findings"]
    crashes = sum(f["kind"] in ("crash", "died") for f in findings)
    hangs = sum(f["kind"] == "hang" for f in findings)
    allocs = sum(f["kind"] == "allocation" for f in findings)
    row = [result["target"], str(result["runs"]), str(crashes), str(hangs), str(allocs),
           f"{result['max_seconds'] * 1000:.1f}", f"{result['max_memory'] / 1024:.0f}"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seconds", type=float, default=3600.0,
                        help="time limit per target (whichever budget ends first)")
    parser.add_argument("--target", action="append", choices=NAMES,
                        help="run only this target (repeatable)")
    parser.add_argument("--engine", choices=("atheris", "builtin"),
                        default="atheris" if have_atheris() else "builtin")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replay", type=Path, nargs="+",
                        help="run these input files once through --target, no fuzzing")
    parser.add_argument("--work", type=Path, help="keep logs, findings and corpora here")
    args = parser.parse_args(argv)
    if args.replay and (not args.target or len(args.target) != 1):
        parser.error("--replay needs exactly one --target")
    names = args.target or list(NAMES)
    work = args.work or Path(tempfile.mkdtemp(prefix="blegw-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"engine {args.engine}, budget {args.runs} inputs or {args.seconds:g} s per target; "
          f"work directory {work}", flush=True)
    header = ["target", "inputs", "crashes", "hangs", "allocs", "max ms", "max KiB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|", flush=True)
    failed = 0
    reports: list[str] = []
    for name in names:
        began = time.monotonic()
        result = run_target(name, runs=args.runs, seconds=args.seconds, engine=args.engine,
                            seed=args.seed, work=work, replay=args.replay)
        print("| " + " | ".join(_row(result)) + " |", f"  ({time.monotonic() - began:.0f} s)",
              flush=True)
        failed += len(result["findings"])
        for f in result["findings"]:
            reports.append(f"{name} {f['kind']}: {f['signature']}\n    {f['detail']}\n"
                           f"    input: {f['input_hex'][:400]}")
    for line in reports:
        print(line)
    print(f"{failed} finding(s); findings saved under {work}/<target>/findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
