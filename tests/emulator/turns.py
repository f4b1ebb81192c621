"""Hooks of different units running at once in one process: threads that take turns at sleeps.

Every unit of a concurrent `Model` runs its hook code in a thread of its own, but only the
thread holding the model's `Baton` runs: the main thread (the scheduler, and the test itself)
holds it except while it sleeps, and a hook thread gives it up only while it sleeps (Pebble's
start check, a poll of k6's API). So hook code that waits overlaps with other units' hooks, as it
does when every unit has a pod of its own, while no two threads ever touch the model, the
emulated Pebble or `os.environ` at once. ops.testing sets the hook's `JUJU_*` variables in
`os.environ` for the length of a run: each thread gets its own view back when its turn comes.

`time.sleep` is replaced while any concurrent model is open; a thread that holds no baton (the
test's HTTP target, a plain serial model) sleeps as before.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_REAL_SLEEP = time.sleep
_LOCAL = threading.local()
_INSTALLED = 0
_INSTALL_LOCK = threading.Lock()


def _held() -> list[Baton]:
    if not hasattr(_LOCAL, "held"):
        _LOCAL.held = []
    return _LOCAL.held


class Baton:
    """One model's right to run Python, taken in turns by its main thread and hook threads.

    The main thread (the scheduler) goes first whenever it is waiting, so commits and hook
    starts are not held up behind a crowd of hook threads.
    """

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._held = False
        self._main_waiting = 0

    def take(self) -> None:
        """Wait for the turn; this thread runs until it sleeps or gives it back."""
        main = threading.current_thread() is threading.main_thread()
        with self._turn:
            self._main_waiting += main
            while self._held or (not main and self._main_waiting):
                self._turn.wait()
            self._main_waiting -= main
            self._held = True
        _held().append(self)

    def give(self) -> None:
        """Give the turn back."""
        _held().remove(self)
        with self._turn:
            self._held = False
            self._turn.notify_all()

    @property
    def mine(self) -> bool:
        """This thread holds the baton now."""
        return self in _held()


def cooperative_sleep(seconds: float) -> None:
    """`time.sleep` for every thread: a baton holder lets the others run meanwhile."""
    held = list(_held())
    if not held:
        _REAL_SLEEP(seconds)
        return
    environment = dict(os.environ)
    for baton in reversed(held):
        baton.give()
    try:
        _REAL_SLEEP(max(seconds, 0.0005))  # sleep(0) still lets a waiting thread in
    finally:
        for baton in held:
            baton.take()
        restore_environment(environment)


def restore_environment(environment: dict[str, str]) -> None:
    """Make os.environ exactly `environment` again (another thread's hook may have changed it)."""
    if os.environ == environment:
        return
    for key in [k for k in os.environ if k not in environment]:
        del os.environ[key]
    os.environ.update(environment)


@contextmanager
def sleeps_take_turns() -> Iterator[None]:
    """Install the cooperative `time.sleep` (counted: nested models share one install)."""
    global _INSTALLED
    with _INSTALL_LOCK:
        _INSTALLED += 1
        time.sleep = cooperative_sleep
    try:
        yield
    finally:
        with _INSTALL_LOCK:
            _INSTALLED -= 1
            if not _INSTALLED:
                time.sleep = _REAL_SLEEP


def run_in_turn(baton: Baton, body: Callable[[], None], name: str) -> threading.Thread:
    """Start `body` in a thread that runs only when it holds `baton`, in the caller's environment.

    The caller (holding the baton) goes on; the thread runs when the caller next sleeps.
    """
    environment = dict(os.environ)

    def turn() -> None:
        baton.take()
        try:
            restore_environment(environment)
            body()
        finally:
            baton.give()

    thread = threading.Thread(target=turn, name=name, daemon=True)
    thread.start()
    return thread


def let_run(baton: Baton, threads: list[threading.Thread], timeout: float) -> list[str]:
    """Give the turn away until `threads` end (teardown); the names of those still running."""
    held = baton.mine
    if held:
        environment = dict(os.environ)
        baton.give()
    try:
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    finally:
        if held:
            baton.take()
            restore_environment(environment)
    return [t.name for t in threads if t.is_alive()]
