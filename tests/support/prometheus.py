"""A real Prometheus (Debian's `prometheus` binary) on loopback, receiving remote write.

`running(workdir)` starts it with a minimal config and a throwaway TSDB, waits until it is
ready, and always kills it; `Prometheus.query` runs an instant PromQL query.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

BINARY = "prometheus"
INSTALL_HINT = "install the Debian package prometheus (apt-get install -y prometheus)"
READY_TIMEOUT = 30.0
# No scrape targets: every sample arrives through the remote-write receiver.
CONFIG = "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nscrape_configs: []\n"


def binary() -> str | None:
    """The prometheus executable, if installed."""
    return shutil.which(BINARY)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PrometheusError(RuntimeError):
    """Prometheus did not start or answered a query with an error."""


class Prometheus:
    """One running Prometheus process and a client for its HTTP API."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process = process
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.remote_write_url = f"{self.url}/api/v1/write"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector: `[{"metric": {...}, "value": [t, "v"]}, ...]`."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {response.status_code} {body}")
        return body["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        """The single value of a one-element result (None when the result is empty)."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) != 1:
            raise PrometheusError(f"{promql!r} gave {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for(
        self, promql: str, predicate: Any, timeout: float = 30.0, interval: float = 0.5
    ) -> tuple[list[dict[str, Any]], float]:
        """Poll an instant query until `predicate(result)` holds; (result, seconds waited).

        Returns the last result when `timeout` passes first: the caller asserts on it.
        """
        started = time.monotonic()
        deadline = started + timeout
        while True:
            result = self.query(promql)
            if predicate(result) or time.monotonic() >= deadline:
                return result, time.monotonic() - started
            time.sleep(interval)

    def log_tail(self, lines: int = 20) -> str:
        """The end of Prometheus' own log (for failure messages)."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _wait_ready(prometheus: Prometheus, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise PrometheusError(
                f"prometheus exited with {prometheus.process.returncode}:\n"
                + prometheus.log_tail()
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise PrometheusError(f"prometheus not ready within {timeout}s:\n{prometheus.log_tail()}")


def _start(
    executable: str, config: Path, workdir: Path, log: Path, attempts: int = 3
) -> Prometheus:
    """A ready Prometheus on a free port; another try when the port was taken meanwhile."""
    for attempt in range(1, attempts + 1):
        port = _free_port()
        argv = [
            executable,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ]
        with log.open("ab") as out:  # every attempt kept
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir
            )
        prometheus = Prometheus(process, port, log)
        try:
            _wait_ready(prometheus, READY_TIMEOUT)
            return prometheus
        except PrometheusError as e:
            _stop(process)
            if attempt == attempts or "address already in use" not in str(e):
                raise
    raise AssertionError("not reached: the last attempt returns or raises")


def _stop(process: subprocess.Popen) -> None:
    """Terminate, then kill after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def running(workdir: Path, executable: str | None = None) -> Iterator[Prometheus]:
    """Start Prometheus with the remote-write receiver and native histograms; kill it after."""
    executable = executable or binary()
    if executable is None:
        raise PrometheusError(f"the prometheus binary is missing: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(CONFIG)
    log = workdir / "prometheus.log"
    prometheus = _start(executable, config, workdir, log)
    try:
        yield prometheus
    finally:
        _stop(prometheus.process)
