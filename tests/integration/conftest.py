"""Integration tests need a real Juju controller: without one, every test here is skipped.

The check runs at collection time and never imports pytest-operator or python-libjuju itself.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.version import Version

HERE = Path(__file__).resolve().parent
# module name -> what to install (both pinned in tox.ini's `integration` env)
REQUIRED_PACKAGES = {"pytest_operator": "pytest-operator", "juju": "juju (python-libjuju)"}
CONTROLLER_TIMEOUT = 20.0  # seconds `juju show-controller` may take to answer
ASYNCIO_PLUGIN = "asyncio"  # pytest-asyncio's plugin name


def missing_packages() -> list[str]:
    """The packages the integration tests import that are not installed."""
    return [pip for module, pip in REQUIRED_PACKAGES.items() if not _importable(module)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def asyncio_plugin_problem() -> str | None:
    """pytest-operator 0.43 pins pytest-asyncio<0.23, whose collection hook breaks on pytest 9."""
    try:
        asyncio_version = version("pytest-asyncio")
    except PackageNotFoundError:
        return None
    if Version(pytest.__version__).major >= 9 and Version(asyncio_version) < Version("0.23"):
        return (
            f"pytest-asyncio {asyncio_version} (pytest-operator needs <0.23) cannot collect "
            f"tests on pytest {pytest.__version__}: install pytest<9 (8.4.2 works) with "
            "pytest-operator"
        )
    return None


def controller_problem(controller: str | None = None) -> str | None:
    """Why no Juju controller can be used from here, or None when one answers."""
    juju = shutil.which("juju")
    if juju is None:
        return "the `juju` CLI is not on PATH"
    command = [juju, "show-controller", "--format=json", *([controller] if controller else [])]
    shown = " ".join(["juju", *command[1:]])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=CONTROLLER_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return f"`{shown}` did not answer within {CONTROLLER_TIMEOUT:g}s"
    except OSError as e:
        return f"`{shown}` could not run: {e}"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"`{shown}` failed: {lines[-1] if lines else f'exit code {done.returncode}'}"
    return None


def unavailable_reason(config: pytest.Config) -> str | None:
    """Why the integration tests cannot run here, or None when they can."""
    missing = missing_packages()
    if missing:
        return (
            f"integration tests need {' and '.join(missing)}, not installed here "
            "(run them with `tox -e integration`)"
        )
    incompatible = asyncio_plugin_problem()
    if incompatible:
        return incompatible
    try:
        controller = config.getoption("controller", default=None)  # pytest-operator's option
    except ValueError:
        controller = None
    problem = controller_problem(controller)
    if problem:
        return f"no Juju controller reachable: {problem}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Let the module collect cleanly without pytest-operator, or with a broken pytest-asyncio."""
    config.addinivalue_line("markers", "abort_on_fail: skip the remaining tests on failure")
    if asyncio_plugin_problem() and config.pluginmanager.has_plugin(ASYNCIO_PLUGIN):
        # Its collection hook would crash before anything can be skipped; the tests are skipped
        # with the reason in pytest_collection_modifyitems.
        config.pluginmanager.unregister(name=ASYNCIO_PLUGIN)
        config.addinivalue_line("markers", "asyncio: run with pytest-asyncio (disabled here)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every integration test, with the reason, when Juju cannot be used."""
    ours = [item for item in items if HERE in Path(item.path).resolve().parents]
    if not ours:
        return
    reason = unavailable_reason(config)
    if reason is None:
        return
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=reason))
