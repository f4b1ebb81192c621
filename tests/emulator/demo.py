"""The main job on one machine: 3 emulated k6-k8s units run one synchronized test with real k6.

`tox -e demo` (or `python -m tests.emulator.demo --units 3`): progress while the protocol
advances, then the `results` action's output and the target's own count per unit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from tests.emulator.model import Hook, Model
from tests.emulator.target import Target

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "load-test.js"


class Progress:
    """Prints each protocol step once, as the hooks reveal it."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.seen: set[str] = set()

    def say(self, key: str, text: str) -> None:
        """Print a line once per key."""
        if key not in self.seen:
            self.seen.add(key)
            print(f"[{time.monotonic() - self.t0:6.2f}s] {text}", flush=True)

    def __call__(self, hook: Hook, model: Model) -> None:
        if hook.error:
            self.say(f"error-{len(model.hooks)}", f"{hook.unit} {hook.event} FAILED: {hook.error}")
        run = model.app.get("run")
        if run:
            total = len(run["participants"])
            units = {u.name: model.unit_view(u.index) for u in model.units.values()}
            armed = [
                n
                for n in run["participants"]
                if units.get(n, {}).get("run_id") == run["run_id"]
                and units[n].get("status") == "busy"
            ]
            for i, name in enumerate(armed, 1):
                self.say(f"armed-{name}", f"armed {i}/{total}: {name} (k6 paused, REST API ready)")
            if run["phase"] == "running":
                acks = [t[1] for t in run["released"].values() if t[1]]
                spread = (max(acks) - min(acks)) * 1000 if acks else float("nan")
                self.say(
                    "resumed", f"resumed all {total} units at once (ack spread {spread:.2f} ms)"
                )
                self.say("running", "running: every unit is sending load")
            for name, data in units.items():
                if data.get("run_id") == run["run_id"] and data.get("status") == "idle":
                    self.say(f"done-{name}", f"done: {name} exit code {data.get('exit_code')}")
        last = model.app.get("last_run")
        if last and not run:
            for name, result in last["units"].items():
                self.say(f"done-{name}", f"done: {name} exit code {result['exit_code']}")
            self.say(f"ended-{last['run_id']}", f"run {last['run_id']} ended: {last['outcome']}")


def main(argv: list[str] | None = None) -> int:
    """Deploy, run, print the results; leave nothing running."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=3)
    parser.add_argument("--script", type=Path, default=EXAMPLE)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    progress = Progress(t0)
    target = Target()
    print(f"target: {target.url} (local HTTP server recording every request)")
    config = {"load-test": args.script.read_text(), "environment": f"TARGET={target.url}"}
    model = Model(args.units, config, on_hook=progress)
    try:
        model.settle(timeout=30)
        names = ", ".join(u.name for u in model.units.values())
        progress.say("deployed", f"deployed {args.units} units ({names}); leader k6/0")
        print(f"$ juju run k6/leader list\n{_yaml(model.action(model.leader, 'list').results)}")
        started = model.action(model.leader, "start")
        if not started.ok:
            print(f"start failed: {started.failure}")
            return 1
        run_id = started.results["run-id"]
        progress.say("start", f"juju run k6/leader start → {started.results['message']}")
        model.settle(lambda: model.finished(run_id), timeout=90)
        report = model.action(model.leader, "results")
        print_results(report.results, target.stats())
        return 0 if model.app["last_run"]["outcome"] == "passed" else 1
    finally:
        left = model.close()
        target.close()
        print(f"cleaned up: {'no process left' if not left else f'LEFT {left}'}")


def _yaml(data: dict) -> str:
    """Action results the way `juju run` prints them."""
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True).rstrip()


def print_results(results: dict, stats: dict) -> None:
    """The `results` action's output, then what the target itself counted."""
    print("\n$ juju run k6/leader results")
    keys = ("run-id", "outcome", "exit-code", "reason", "spread-ms", "setup", "teardown", "units")
    print(_yaml({k: results[k] for k in keys if k in results}))
    print("table: |")
    print("\n".join(f"  {line}" for line in results["table"].splitlines()))
    print("\nthe target counted:")
    paths = stats.get("paths", {})
    for path, seen in sorted(paths.items(), key=lambda item: item[1]["first"]):
        units = ", ".join(f"{u} {n}" for u, n in sorted(seen["by_unit"].items()))
        print(f"  {path:10} {seen['count']:6d} requests ({units})")
    load = [p for p in paths if p not in ("/setup", "/teardown")]
    if not load:
        return
    main_path = max(load, key=lambda p: paths[p]["count"])
    setup, teardown, loaded = paths.get("/setup"), paths.get("/teardown"), paths[main_path]
    if setup and teardown:
        print(
            f"  setup() ran before the first {main_path} request: "
            f"{setup['last'] <= loaded['first']}; teardown() after the last: "
            f"{teardown['first'] >= loaded['last']}"
        )
    tokens = stats.get("tokens", {})
    if tokens:
        print(f"  setup() data seen: {len(tokens)} token in {sum(tokens.values())} requests")
    firsts = list(loaded["first_by_unit"].values())
    print(
        f"  {main_path} first-request spread over the units: "
        f"{(max(firsts) - min(firsts)) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
