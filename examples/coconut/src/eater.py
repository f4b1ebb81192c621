"""The coconut-eating workload: a shell loop run once per run by Pebble, started on cue.

`eat_script` is what one unit runs; `Eater` is the charm's `Workload` for the synchronized-task
library: it arms the shell (waiting for a start file), hands it the instant, and reads its count.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import ops
from charms.k6_k8s.v0.synchronized_task import (
    OneShotService,
    Run,
    Share,
    Workload,
    done_notice_command,
)

SERVICE = "eat"
NOTICE_KEY = "coconut.example/done"
WORKDIR = "/var/lib/coconut"
START_FILE = "start-at"  # the start instant, epoch seconds; the leader's choice
STARTED_FILE = "started"  # when this unit really started eating, epoch seconds with ns
EATEN_FILE = "eaten"  # one line per coconut eaten: its number in the whole
POLL_SECONDS = 0.01  # how often the armed shell looks for the start file
BITE_SECONDS = 0.01  # a coconut takes a moment, so that a run lasts a little


def eat_script(coconuts: range) -> str:
    """The shell program for one unit: wait for the start file, sleep until its instant, eat.

    dash has no floating point: awk does the subtraction. `date +%s.%N` is GNU date's epoch
    with nanoseconds.
    """
    return "\n".join(
        [
            f"until [ -s {START_FILE} ]; do sleep {POLL_SECONDS}; done",
            f"at=$(cat {START_FILE})",
            'wait=$(awk -v at="$at" -v now="$(date +%s.%N)" '
            "'BEGIN { d = at - now; printf \"%.6f\", (d > 0 ? d : 0) }')",
            'sleep "$wait"',
            f"date +%s.%N > {STARTED_FILE}",
            f"i={coconuts.start}",
            f'while [ "$i" -lt {coconuts.stop} ]; do',
            f'  echo "$i" >> {EATEN_FILE}',
            f"  sleep {BITE_SECONDS}",
            "  i=$((i + 1))",
            "done",
        ]
    )


def service_command(script: str, run_id: str) -> str:
    """The Pebble command: the script in its own shell, then the done notice.

    The script runs in a child `sh` on purpose: the library's wrapper traps TERM to still send
    the notice after a stop, and a trapped TERM only interrupts the current command of a
    compound line (the wait loop would go on polling until Pebble's SIGKILL). A child shell
    keeps TERM's default action, so a stop ends the script at once and the notice follows.
    """
    return done_notice_command(shlex.join(["/bin/sh", "-c", script]), NOTICE_KEY, run_id)


class Eater(Workload):
    """The shell loop in the `eater` container, run by Pebble, driven through files."""

    def __init__(self, container: ops.Container):
        self.container = container
        self.service = OneShotService(
            container, SERVICE, summary="eat a share of the coconuts", working_dir=WORKDIR
        )

    def arm(self, run: Run, payload: Mapping[str, Any], share: Share, address: str) -> bool:
        """Start the shell, which waits for the start file: armed as soon as Pebble says so."""
        coconuts = share.items(int(payload["coconuts"]))  # this unit's numbers of the whole
        self.container.make_dir(WORKDIR, make_parents=True)
        for stale in (START_FILE, STARTED_FILE, EATEN_FILE):
            self.container.remove_path(f"{WORKDIR}/{stale}", recursive=True)
        self.service.start(service_command(eat_script(coconuts), run.run_id))
        return True

    def release_at(self, run: Run, instant: float) -> None:
        """Write the start instant where the waiting shell looks for it."""
        self.container.push(f"{WORKDIR}/{START_FILE}", f"{instant:.6f}\n", make_dirs=True)

    def result(self, run: Run) -> dict[str, Any] | None:
        """How many coconuts this unit ate, and when it started (None: it never did)."""
        return {"eaten": self._eaten(), "started": self._started()}

    def _eaten(self) -> int:
        try:
            with self.container.pull(f"{WORKDIR}/{EATEN_FILE}") as lines:
                return sum(1 for _ in lines)
        except ops.pebble.PathError:
            return 0

    def _started(self) -> float | None:
        try:
            return float(self.container.pull(f"{WORKDIR}/{STARTED_FILE}").read())
        except (ops.pebble.PathError, ValueError):
            return None  # stopped before the instant
