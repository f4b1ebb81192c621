"""k6 scripts for end-to-end runs, all aimed at the local target and bounded in time."""

from __future__ import annotations

HEADER = "headers: { 'X-K6-Unit': __ENV.K6_K8S_UNIT }"


def shared_iterations(iterations: int, vus: int = 4, path: str = "/", thresholds: str = "") -> str:
    """A fixed number of requests shared by every unit (exactly `iterations` in total)."""
    return f"""
import http from 'k6/http';
export const options = {{
  scenarios: {{ s: {{ executor: 'shared-iterations', vus: {vus}, iterations: {iterations},
                     maxDuration: '30s' }} }},
  {thresholds}
}};
export default function () {{ http.get(`${{__ENV.TARGET}}{path}`, {{ {HEADER} }}); }}
"""


def constant_vus(vus: int, duration: str, sleep: float = 0.05) -> str:
    """Steady load for a bounded duration."""
    return f"""
import http from 'k6/http';
import {{ sleep }} from 'k6';
export const options = {{ vus: {vus}, duration: '{duration}' }};
export default function () {{ http.get(`${{__ENV.TARGET}}/`, {{ {HEADER} }}); sleep({sleep}); }}
"""


def constant_arrival_rate(rate: int, duration: str, vus: int = 60) -> str:
    """A fixed request rate per second across every unit (VUs to spare: none is dropped)."""
    return f"""
import http from 'k6/http';
export const options = {{
  scenarios: {{ r: {{ executor: 'constant-arrival-rate', rate: {rate}, timeUnit: '1s',
                     duration: '{duration}', preAllocatedVUs: {vus} }} }},
}};
export default function () {{ http.get(`${{__ENV.TARGET}}/`, {{ {HEADER} }}); }}
"""


def paced_iterations(iterations: int, vus: int, sleep: float, failing: bool = False) -> str:
    """Exactly `iterations` iterations, each followed by a sleep, so the run lasts a while.

    Each iteration sends one request, or with `failing` two: one answered 200, one 500.
    """
    fail = f"http.get(`${{__ENV.TARGET}}/status/500`, {{ {HEADER} }});" if failing else ""
    return f"""
import http from 'k6/http';
import {{ sleep }} from 'k6';
export const options = {{
  scenarios: {{ s: {{ executor: 'shared-iterations', vus: {vus}, iterations: {iterations},
                     maxDuration: '30s' }} }},
}};
export default function () {{
  http.get(`${{__ENV.TARGET}}/`, {{ {HEADER} }});
  {fail}
  sleep({sleep});
}}
"""


UNIT_AND_TOKEN = "'X-K6-Unit': __ENV.K6_K8S_UNIT, 'X-Token': data.token"


def one_test(
    iterations: int = 60,
    vus: int = 6,
    thresholds: str = "",
    setup: str = "",
    load: str = "",
    executor: str = "",
) -> str:
    """One test with a lifecycle: setup() returns a token that every request then carries.

    setup() calls /setup, every iteration /load, teardown() /teardown. `setup` and `load` add JS
    lines at the start of setup() / each iteration (to throw, fail or abort); `executor`
    replaces the shared-iterations scenario (a scenario's JS object).
    """
    scenario = executor or (
        f"{{ executor: 'shared-iterations', vus: {vus}, iterations: {iterations}, "
        "maxDuration: '30s' }"
    )
    return f"""
import http from 'k6/http';
import exec from 'k6/execution';
import {{ sleep }} from 'k6';
export const options = {{
  scenarios: {{ s: {scenario} }},
  thresholds: {{ {thresholds} }},
}};
export function setup() {{
  http.get(`${{__ENV.TARGET}}/setup`, {{ {HEADER} }});
  {setup}
  return {{ token: `t-${{Math.random()}}` }};
}}
export default function (data) {{
  {load}
  http.get(`${{__ENV.TARGET}}/load`, {{ headers: {{ {UNIT_AND_TOKEN} }} }});
}}
export function teardown(data) {{
  http.get(`${{__ENV.TARGET}}/teardown`, {{ headers: {{ {UNIT_AND_TOKEN} }} }});
}}
"""


def slow_init_on(unit: str, seconds: float, script: str) -> str:
    """`script`, its init context busy-waiting `seconds` on `unit` only (that k6 arms late)."""
    wait = f"const end = Date.now() + {seconds * 1000:g}; while (Date.now() < end) {{}}"
    return f"if (__ENV.K6_K8S_UNIT === '{unit}') {{ {wait} }}\n{script}"
