"""`tox -e soak`: the property exploration split into seeded shards run side by side.

Each shard is one pytest process over tests/e2e/test_properties.py with its own hypothesis seed
and its own loopback address range, so N shards explore N different parts of the schedule space
and together run `--examples` schedules, each shard split like CI's: 4/5 on the serial
emulator and 1/5 with overlapping hooks (its concurrent mode: Juju as it runs), each of those
3/5 on the library's stand-in charm with ApiRelease, 1/5 with InstantRelease, 1/5 on the k6
charm. Exit status:
non-zero if any shard failed. `--replay 'Schedule(...)'` runs one printed schedule again, on the
charm it names (`charm='api'`, `'instant'` or `'k6'`; a schedule without one ran the k6 charm).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shard_env(shard: int, examples: int) -> dict[str, str]:
    """The environment of one shard: its seed, its share of examples, its address range."""
    return {
        **os.environ,
        "K6K8S_SOAK_SHARD": str(shard),
        "K6K8S_SOAK_EXAMPLES": str(examples),
        "K6EMU_ADDRESS_BASE": f"127.0.{40 + shard}.1",
    }


def replay(text: str) -> int:
    """Run one schedule as hypothesis printed it; print what it broke."""
    from tests.support.schedules import parse_schedule, run_schedule

    with tempfile.TemporaryDirectory(prefix="k6-replay-") as tmp:
        checker = run_schedule(parse_schedule(text), Path(tmp))
    print(f"runs started {checker.started}, ended {sorted(checker.ended)}")
    for run_id, last in checker.ended.items():
        print(f"run {run_id}: {last['outcome']} {last['reason']}".rstrip())
    for violation in checker.violations:
        print(f"VIOLATION {violation}")
    print("replay: " + ("FAILED" if checker.violations else "clean"))
    return 1 if checker.violations else 0


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (k6 stand-ins run in their own sessions, like Pebble's)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """Interrupt a shard so it tears down; past `grace`, kill it and everything it started."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        for pid in [*_descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interruptible() -> None:
    """In a shard: SIGINT interrupts (a background job starts with it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """Run the shards in parallel, wait for all, print one line per shard."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=20000, help="schedules in total")
    parser.add_argument("--shards", type=int, default=3, help="parallel pytest processes")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".soak")
    parser.add_argument("--replay", metavar="SCHEDULE", help="run one printed schedule again")
    args = parser.parse_args(argv)
    if args.replay:
        try:
            return replay(args.replay)
        except ValueError as e:
            parser.error(str(e))
    args.log_dir.mkdir(exist_ok=True)
    share = -(-args.examples // args.shards)  # ceiling: the total is at least --examples
    started = time.monotonic()
    for signum in (signal.SIGINT, signal.SIGTERM):  # either one: the shards tear down cleanly
        signal.signal(signum, _interrupt)
    procs = []
    for shard in range(1, args.shards + 1):
        log = args.log_dir / f"shard-{shard}.log"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "tests/e2e/test_properties.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            f"--basetemp={args.log_dir / f'shard-{shard}-tmp'}",  # not pruned by other pytests
        ]
        with log.open("w") as out:
            procs.append(
                (
                    shard,
                    log,
                    subprocess.Popen(
                        cmd,
                        cwd=ROOT,
                        env=shard_env(shard, share),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_interruptible,
                    ),
                )
            )
        print(f"shard {shard}: {share} schedules, seed {shard}, log {log}", flush=True)
    try:
        for _, _, proc in procs:
            proc.wait()
    except KeyboardInterrupt:
        for _, _, proc in procs:
            _stop(proc)
    failed = 0
    for shard, log, proc in procs:
        code = proc.returncode
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        print(f"shard {shard}: exit {code}: {tail[0]}", flush=True)
        failed += code != 0
    minutes = (time.monotonic() - started) / 60
    print(
        f"soak: {share * args.shards} schedules in {args.shards} shards, {minutes:.1f} min, "
        f"{'FAILED' if failed else 'clean'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
