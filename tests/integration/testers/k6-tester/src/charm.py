#!/usr/bin/env python3
"""k6-tester: publishes the k6 scripts of its `tests/` folder over the `k6_tests` interface.

A test double for the k6-k8s integration tests; `K6TestProvider` does all the work.
"""

from __future__ import annotations

import ops
from charms.k6_k8s.v0.k6_test import K6TestProvider, read_tests_dir

TESTS_DIR = "tests"
# Read by the scripts as __ENV.GREETING; their checks fail if it does not arrive.
ENVIRONMENT = {"GREETING": "hello from k6-tester"}


class K6TesterCharm(ops.CharmBase):
    """Provides the k6 tests in `tests/` to every related k6 application."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.k6_tests = K6TestProvider(self, tests_dir=TESTS_DIR, environment=ENVIRONMENT)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        tests = read_tests_dir(self.charm_dir / TESTS_DIR)
        if not tests:
            event.add_status(ops.BlockedStatus(f"no k6 tests in {TESTS_DIR}/"))
            return
        event.add_status(ops.ActiveStatus(f"providing {len(tests)} k6 test(s)"))


if __name__ == "__main__":  # pragma: nocover
    ops.main(K6TesterCharm)
