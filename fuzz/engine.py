"""Runs one target over inputs and judges each one; writes what it saw as JSON.

Every input is checked the same way, whichever engine produced it:

* only the layer's typed errors may escape (``Target.typed``); anything else is a *crash*,
  deduplicated by exception type and the innermost project frame it came from;
* an input that takes more than :data:`HANG_SECONDS` is a *hang*;
* the peak of Python allocations while the input runs (tracemalloc) must stay below
  ``Target.memory_base + MEMORY_PER_BYTE * len(input)``: a parser that allocates what a length
  field declares, rather than what arrived, is an *allocation* finding.

Two engines feed it: atheris (coverage-guided libFuzzer, the default when installed) and a small
built-in mutator (random byte edits and splices over the corpus) for machines where atheris has no
wheel. Both call :meth:`Judge.run_one`, so a finding means the same thing from either. The process
stops itself when its budget (inputs or seconds) is spent, after writing the statistics file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["HANG_SECONDS", "MEMORY_PER_BYTE", "FuzzOracleError", "Judge", "Target", "main"]

HANG_SECONDS = 1.0
CUT_SECONDS = 1.2
"""An input still running after this long is interrupted (SIGALRM), reported as a hang, and the
run goes on: one pathological input must not end the run or stall CI. The alarm repeats every
50 ms until the interruption gets through: C code (cbor2) may swallow the first one."""
MEMORY_PER_BYTE = 64
"""Allowed peak bytes per input byte: CBOR maps and Python objects cost a few dozen bytes for
each byte they were decoded from; a declared-length allocation costs thousands."""
PERIODIC = 500
SOURCE_ROOTS = ("/src/", "/fuzz/targets/")
INSTRUMENTED = ["ble_profile", "e2e", "relay_contract", "secure_channel", "symmetric_card"]
"""Modules atheris instruments for coverage: the sans-IO cores every target ends up in.
Never coroutine code: atheris 2.3.0 rewrites Python 3.11 coroutine bytecode wrongly (the relay's
worker raised ``AttributeError: 'RelayResponse' object has no attribute 'queue'`` under it), so
the asyncio adapters run as they are and only the parsers they call guide the fuzzer."""


class InputCut(BaseException):
    """Raised by the alarm inside an input that ran past :data:`CUT_SECONDS`. A BaseException,
    so the code under test cannot catch it as an ordinary error."""


_armed = [False]


def _cut(_signum: int, _frame: object) -> None:
    if _armed[0]:  # only inside an input: never in the judge's own bookkeeping
        raise InputCut


@contextlib.contextmanager
def _cut_after() -> Iterator[None]:
    """Interrupt the block with :class:`InputCut` once it has run :data:`CUT_SECONDS`."""
    signal.setitimer(signal.ITIMER_REAL, CUT_SECONDS, 0.05)
    _armed[0] = True
    try:
        yield
    finally:
        _armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)


class FuzzOracleError(AssertionError):
    """A harness found the code under test misbehaving without raising (a request left
    unanswered, money not conserved, bytes accepted that do not re-encode to themselves)."""


@dataclass(frozen=True)
class Target:
    """One parser of untrusted bytes and how to judge it."""

    name: str
    one_input: Callable[[bytes], None]
    typed: tuple[type[BaseException], ...]
    """Exceptions that are the layer's answer to bad input; anything else is a finding."""
    seeds: Callable[[], list[bytes]]
    """Real encoded inputs (built with the project's own encoders) to start from."""
    memory_base: int = 256 * 1024
    max_len: int = 4096
    periodic: Callable[[], None] | None = None
    """A check too slow for every input (a full ledger audit): run every PERIODIC inputs,
    outside the timing, its FuzzOracleError recorded like any other finding."""


@dataclass
class Finding:
    kind: str
    signature: str
    detail: str
    input_hex: str


@dataclass
class Judge:
    """Runs inputs through one target and keeps the statistics of the run."""

    target: Target
    stats_path: Path | None = None
    findings_dir: Path | None = None
    runs: int = 0
    typed_errors: int = 0
    max_seconds: float = 0.0
    max_memory: int = 0
    findings: dict[str, Finding] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _last_write: float = 0.0

    def run_one(self, data: bytes) -> None:
        """Run one input and record what happened; never raises."""
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        began = time.perf_counter()
        error: BaseException | None = None
        cut = False
        try:
            with _cut_after():
                self.target.one_input(data)
        except self.target.typed:
            self.typed_errors += 1
        except InputCut:
            cut = True  # reported below as a hang
        except Exception as exc:  # every other exception is what we are looking for
            error = exc
        elapsed = time.perf_counter() - began
        peak = max(tracemalloc.get_traced_memory()[1] - before, 0)
        self.runs += 1
        self.max_seconds = max(self.max_seconds, elapsed)
        self.max_memory = max(self.max_memory, peak)
        if error is not None:
            self._record("crash", _signature(error), _describe(error), data)
        if elapsed > HANG_SECONDS:
            self._record("hang", f"hang>{HANG_SECONDS}s", f"{elapsed:.3f} s", data)
        limit = self.target.memory_base + MEMORY_PER_BYTE * len(data)
        if peak > limit and not cut and self._peak_again(data) > limit:
            self._record("allocation", "allocation", f"peak {peak} B > limit {limit} B", data)
        if self.target.periodic is not None and self.runs % PERIODIC == 0:
            try:
                self.target.periodic()
            except FuzzOracleError as exc:
                self._record("crash", _signature(exc), _describe(exc), data)
        now = time.monotonic()
        if now - self._last_write > 2.0:
            self.write()

    def _peak_again(self, data: bytes) -> int:
        """The peak of a second run: a first run may pay for a lazy import or a cache fill
        (cbor2 importing its date-time support on a tag, for one), a length-driven allocation
        is paid every time."""
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        with contextlib.suppress(Exception, InputCut), _cut_after():  # judged by the first run
            self.target.one_input(data)
        return max(tracemalloc.get_traced_memory()[1] - before, 0)

    def _record(self, kind: str, signature: str, detail: str, data: bytes) -> None:
        key = f"{kind}:{signature}"
        if key in self.findings:
            return
        self.findings[key] = Finding(kind, signature, detail, data.hex())
        if self.findings_dir is not None:
            self.findings_dir.mkdir(parents=True, exist_ok=True)
            name = f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
            (self.findings_dir / name).write_bytes(data)
        self.write()

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target.name, "runs": self.runs, "typed_errors": self.typed_errors,
            "findings": [dataclasses.asdict(f) for f in self.findings.values()],
            "crashes": sum(f.kind == "crash" for f in self.findings.values()),
            "hangs": sum(f.kind == "hang" for f in self.findings.values()),
            "allocations": sum(f.kind == "allocation" for f in self.findings.values()),
            "max_seconds": self.max_seconds, "max_memory": self.max_memory,
            "elapsed": time.monotonic() - self.started,
        }

    def write(self) -> None:
        self._last_write = time.monotonic()
        if self.stats_path is not None:
            tmp = self.stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.summary()))
            tmp.replace(self.stats_path)


def _signature(exc: BaseException) -> str:
    """Exception type and the innermost project frame: one line per distinct bug."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        path = frame.filename.replace(os.sep, "/")
        for root in SOURCE_ROOTS:
            if root in path:
                where = f"{path.split(root, 1)[1]}:{frame.name}"
    name = type(exc).__name__
    if isinstance(exc, FuzzOracleError):  # one oracle may catch several bugs: tell them apart
        name += "(" + re.sub(r"[0-9a-f]{8,}|\d+|'.*?'", "#", str(exc))[:60] + ")"
    return f"{name}@{where}"


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:300]


def _mutate(rng: random.Random, data: bytes, corpus: Sequence[bytes], max_len: int) -> bytes:
    """One random edit: the built-in engine's whole strategy (no coverage feedback)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        pos = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[pos % len(out)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif choice == 2:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 3 and out:
            del out[pos:pos + rng.randint(1, 8)]
        elif choice == 4:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            out[pos:pos] = other[start:start + rng.randint(1, 32)]
        elif choice == 5 and out:
            out = out[:pos]
        else:
            width = rng.choice((1, 2, 4, 8))
            out[pos:pos + width] = rng.choice((b"\xff", b"\x00", b"\x7f\xff", b"\xff\xff"))[:width]
    return bytes(out[:max_len])


def _run_builtin(judge: Judge, corpus: list[bytes], budget_runs: int, budget_seconds: float,
                 seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible mutations, not secrets
    pool = corpus or [b""]
    deadline = time.monotonic() + budget_seconds
    while judge.runs < budget_runs and time.monotonic() < deadline:
        judge.run_one(_mutate(rng, rng.choice(pool), pool, judge.target.max_len))


def _run_atheris(judge: Judge, corpus_dir: Path, budget_runs: int, budget_seconds: float,
                 seed: int, artifacts: Path, scratch: Path) -> None:
    import atheris  # type: ignore[import-not-found,unused-ignore]

    deadline = time.monotonic() + budget_seconds

    def one(data: bytes) -> None:
        judge.run_one(data)
        if judge.runs >= budget_runs or time.monotonic() >= deadline:
            _done(judge, scratch)  # libFuzzer never returns; the budget is ours

    artifacts.mkdir(parents=True, exist_ok=True)
    # -timeout=0: libFuzzer's own SIGALRM timer would replace ours (CUT_SECONDS), and it ends
    # the process on the first slow input instead of reporting it and going on.
    argv = [sys.argv[0], str(corpus_dir), f"-seed={seed}", "-timeout=0",
            f"-max_len={judge.target.max_len}", "-rss_limit_mb=4096", "-print_final_stats=0",
            f"-artifact_prefix={artifacts}/", "-close_fd_mask=0"]
    atheris.Setup(argv, one)
    atheris.Fuzz()


def load_target(name: str, instrument: bool) -> Target:
    """Import a target, instrumenting the project's packages for coverage when asked."""
    from .targets import module_for

    instrumenting: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if instrument:
        import atheris

        instrumenting = atheris.instrument_imports(include=INSTRUMENTED)
    with instrumenting:
        module = module_for(name)
    target: Target = module.TARGET
    return target


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """One target in this process (the runner starts one process per target)."""
    parser = argparse.ArgumentParser(prog="python -m fuzz.engine")
    parser.add_argument("--target", required=True)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--engine", choices=("atheris", "builtin"), default="atheris")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True,
                        help="scratch directory: working corpus, findings, artifacts")
    parser.add_argument("--replay", type=Path, nargs="*", default=None,
                        help="run exactly these input files once each, no fuzzing")
    args = parser.parse_args(argv)
    # The targets' own files (a registry, a ledger, a socket) go in one directory of this
    # process, on tmpfs where there is one (a ledger fsyncs every input); _done removes it.
    shm = Path("/dev/shm")  # noqa: S108 - tmpfs, fast fsync
    scratch = Path(tempfile.mkdtemp(prefix="blegw-fuzz-", dir=shm if shm.is_dir() else None))
    tempfile.tempdir = str(scratch)
    logging.disable(logging.CRITICAL)  # the code under test logs every bad input it refuses
    use_atheris = args.engine == "atheris" and args.replay is None
    target = load_target(args.target, use_atheris)
    tracemalloc.start()
    signal.signal(signal.SIGALRM, _cut)
    judge = Judge(target, stats_path=args.stats, findings_dir=args.work / "findings")
    if args.replay is not None:
        for path in args.replay:
            judge.run_one(path.read_bytes())
        _done(judge, scratch)
    corpus = [*target.seeds(), *_files(Path(__file__).parent / "corpus" / target.name)]
    regressions = _files(Path(__file__).parent / "regressions" / target.name)
    for data in (*corpus, *regressions):  # every seed and regression input once
        judge.run_one(data)
    # Regression inputs are not mutated further: a known hang would make its variants dominate
    # the run (each costs CUT_SECONDS) without finding anything new.
    if use_atheris:
        work_corpus = args.work / "corpus"
        work_corpus.mkdir(parents=True, exist_ok=True)
        for data in corpus:
            (work_corpus / hashlib.sha256(data).hexdigest()).write_bytes(data)
        judge.write()
        _run_atheris(judge, work_corpus, args.runs, args.seconds, args.seed,
                     args.work / "artifacts", scratch)
    else:
        _run_builtin(judge, corpus, args.runs, args.seconds, args.seed)
    _done(judge, scratch)


def _done(judge: Judge, scratch: Path) -> NoReturn:
    """Write the statistics, remove the scratch directory and leave at once: targets keep an
    event loop and worker tasks for the whole process, and tearing them down would only print
    noise."""
    judge.write()
    shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _files(directory: Path) -> list[bytes]:
    if not directory.is_dir():
        return []
    return [p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix == ".bin"]


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: the targets raise
    # fuzz.engine.FuzzOracleError, which must be the class the judge recognises.
    from fuzz.engine import main as _main

    sys.exit(_main())
