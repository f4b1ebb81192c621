"""Inline scripts through the action's params: bigger than one shell argument may be.

Linux caps one command-line argument at 128 KiB (MAX_ARG_STRLEN), so `start script="$(cat
big.js)"` fails in the shell for a big script; `juju run k6/leader start --params params.yaml`
carries it in a file. On the emulator the params arrive as Juju hands them to the charm.
"""

from __future__ import annotations

import pytest
import yaml

import sources
from tests.e2e import scripts
from tests.support.emulated_runs import assert_all_idle, run_to_end

pytestmark = pytest.mark.timeout(90)

SHELL_ARG_LIMIT = 128 * 1024  # MAX_ARG_STRLEN: 32 pages of 4 KiB


def padded(script: str, size: int) -> str:
    """The script followed by a comment that brings it to exactly `size` bytes."""
    pad = size - len(script.encode()) - len("\n//\n")
    return f"{script}\n//{'x' * pad}\n"


def test_a_200_kib_inline_script_runs_from_a_params_file(make_model, target, tmp_path):
    script = padded(scripts.shared_iterations(30, vus=3), 200 * 1024)
    params_file = tmp_path / "params.yaml"  # what a user passes to `juju run --params`
    params_file.write_text(yaml.safe_dump({"script": script}))
    params = yaml.safe_load(params_file.read_text())
    model = make_model(3, {"environment": f"TARGET={target.url}"})

    last = run_to_end(model, **params)

    assert len(script.encode()) == 200 * 1024 > SHELL_ARG_LIMIT
    assert last["outcome"] == "passed", last["reason"]
    assert last["info"]["source"] == "inline"
    assert target.stats()["count"] == 30
    assert_all_idle(model)


def test_an_inline_script_over_the_limit_fails_the_action_and_changes_nothing(make_model):
    model = make_model(2, {})
    before = dict(model.app_data)
    too_big = padded(scripts.shared_iterations(3, vus=1), sources.MAX_SCRIPT_BYTES + 1)

    result = model.action(0, "start", script=too_big)

    assert result.failure == (
        f"the script parameter is {sources.MAX_SCRIPT_BYTES + 1} bytes; the limit is "
        f"{sources.MAX_SCRIPT_BYTES} bytes (256 KiB)"
    )
    assert model.app_data == before
    assert model.k6_running() == []
