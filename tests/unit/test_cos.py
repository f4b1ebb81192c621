"""COS wiring: URLs read from remote databags, and the k6 arguments and environment they give."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import pytest

import cos
from cos import REPORT_FILE

INTERFACES = Path(__file__).parent / "data" / "interfaces"  # sources: README.md there
REMOTE_WRITE_SCHEMA = json.loads(
    (INTERFACES / "prometheus_remote_write/v0/provider.json").read_text()
)
LOKI_SCHEMA = json.loads((INTERFACES / "loki_push_api/v1/provider.json").read_text())
# What Juju itself puts in every unit databag, next to what the provider writes.
JUJU_KEYS = {
    "egress-subnets": "10.1.2.3/32",
    "ingress-address": "10.1.2.3",
    "private-address": "10.1.2.3",
}

RW = "http://prometheus-0.prometheus-endpoints:9090/api/v1/write"
LOKI = "http://loki-0.loki-endpoints:3100/loki/api/v1/push"
REPORT_ENV = {
    "K6_WEB_DASHBOARD": "true",
    "K6_WEB_DASHBOARD_PORT": "-1",
    "K6_WEB_DASHBOARD_PERIOD": "1s",
    "K6_WEB_DASHBOARD_EXPORT": REPORT_FILE,
}


def rw(url: object) -> dict[str, str]:
    """A prometheus_remote_write provider unit's databag."""
    return {"remote_write": json.dumps({"url": url})}


def loki(url: object) -> dict[str, str]:
    """A loki_push_api provider unit's databag."""
    return {"endpoint": json.dumps({"url": url})}


# ---------------------------------------------------------------- URLs from databags


def test_no_related_units_means_no_urls():
    assert cos.remote_write_url([]) is None
    assert cos.loki_url([]) is None


def test_remote_write_url_is_read_from_the_remote_write_key():
    assert cos.remote_write_url([rw(RW)]) == RW


def test_loki_url_is_read_from_the_endpoint_key():
    assert cos.loki_url([loki(LOKI)]) == LOKI


def test_each_interface_reads_only_its_own_key():
    both = {**rw(RW), **loki(LOKI)}

    assert cos.remote_write_url([loki(LOKI)]) is None
    assert cos.loki_url([rw(RW)]) is None
    assert cos.remote_write_url([both]) == RW
    assert cos.loki_url([both]) == LOKI


def test_https_is_accepted():
    url = "https://cos.example.com:443/cos-prometheus-0/api/v1/write"

    assert cos.remote_write_url([rw(url)]) == url


def test_first_valid_unit_wins():
    other = "http://prometheus-1.prometheus-endpoints:9090/api/v1/write"

    assert cos.remote_write_url([rw(RW), rw(other)]) == RW


def test_units_without_the_key_or_with_an_empty_value_are_skipped():
    databags = [{}, {"remote_write": ""}, {"egress-subnets": "10.0.0.0/32"}, rw(RW)]

    assert cos.remote_write_url(databags) == RW


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",  # malformed JSON
        '"http://x:9090/api/v1/write"',  # a JSON string, not an object
        "[1, 2]",  # a JSON list
        "null",
        '{"URL": "http://x:9090/api/v1/write"}',  # no "url" key
    ],
)
def test_malformed_data_is_skipped_with_a_warning_and_the_next_unit_taken(raw, caplog):
    with caplog.at_level(logging.WARNING, logger="cos"):
        url = cos.remote_write_url([{"remote_write": raw}, rw(RW)])

    assert url == RW
    assert "ignoring malformed 'remote_write' relation data" in caplog.text


def test_malformed_data_alone_gives_no_url():
    assert cos.loki_url([{"endpoint": "{oops"}]) is None


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://loki:3100/loki/api/v1/push",
        "file:///etc/passwd",
        "loki:3100/loki/api/v1/push",  # no scheme
        "http:///loki/api/v1/push",  # no host
        "",
        None,
        3100,
        ["http://loki:3100/loki/api/v1/push"],
    ],
)
def test_url_that_is_not_http_is_skipped_and_the_next_valid_one_taken(bad, caplog):
    with caplog.at_level(logging.WARNING, logger="cos"):
        url = cos.loki_url([loki(bad), loki(LOKI)])

    assert url == LOKI
    assert "not http(s)" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [
        "http://loki:3100/loki/api/v1/push,label.evil=1",  # would inject a k6 output option
        "http://loki:3100/push?a=1,2",
        "http://loki:3100/loki push",
        "http://loki:3100/loki\tpush",
        "http://loki:3100/loki/api/v1/push\n",
    ],
)
def test_url_with_comma_or_whitespace_is_ignored_and_the_next_valid_one_taken(bad, caplog):
    with caplog.at_level(logging.WARNING, logger="cos"):
        url = cos.loki_url([loki(bad), loki(LOKI)])

    assert url == LOKI
    assert "comma or whitespace" in caplog.text


def test_comma_in_remote_write_url_is_ignored_too():
    assert cos.remote_write_url([rw(RW + ",x"), rw(RW)]) == RW
    assert cos.remote_write_url([rw(RW + ",x")]) is None


def test_generator_of_databags_is_consumed_once():
    databags = (d for d in [loki("gopher://x"), loki(LOKI)])

    assert cos.loki_url(databags) == LOKI


# ---------------------------------------------------------------- contracts: what we read
# A provider unit's databag as the interface's schema describes it (published for
# prometheus_remote_write; derived from the official library for loki_push_api), and as the
# official provider libraries write it.


def decoded(databag: dict[str, str]) -> dict:
    """A databag with its JSON-encoded values decoded: what the schemas describe."""
    return {key: json.loads(value) for key, value in databag.items()}


def test_every_example_of_the_published_remote_write_schema_is_read():
    examples = REMOTE_WRITE_SCHEMA["examples"]

    read = [cos.remote_write_url([{k: json.dumps(v) for k, v in e.items()}]) for e in examples]

    assert examples and read == [e["remote_write"]["url"] for e in examples]


def test_the_databag_the_official_remote_write_provider_writes_is_valid_and_read():
    # PrometheusRemoteWriteProvider._set_endpoint_on_relation (prometheus-k8s, commit
    # 006ef5be): the unit databag's `remote_write` = json.dumps({"url": scheme://fqdn:port/path})
    url = "http://prometheus-0.prometheus-endpoints.cos.svc.cluster.local:9090/api/v1/write"
    written = {"remote_write": json.dumps({"url": url})}

    jsonschema.validate(decoded(written), REMOTE_WRITE_SCHEMA)
    assert cos.remote_write_url([{**JUJU_KEYS, **written}]) == url


@pytest.mark.parametrize(
    ("value", "schema_valid", "read"),
    [
        ({"url": RW}, True, RW),
        (
            {"url": "https://cos.example.com/p-0/api/v1/write"},
            True,
            "https://cos.example.com/p-0/api/v1/write",
        ),
        # valid to the schema (any string), refused here: k6 writes over http(s) only, and a
        # comma or a space cannot be in a value the charm puts on k6's command line
        ({"url": "ftp://x:9090/api/v1/write"}, True, None),
        ({"url": RW + ",x"}, True, None),
        # refused by the schema and here
        ({}, False, None),
        ({"URL": RW}, False, None),
        ({"url": 9090}, False, None),
        (RW, False, None),
        # refused by v0's schema (no other key), read here: a newer provider may add keys
        ({"url": RW, "headers": {}}, False, RW),
    ],
)
def test_remote_write_data_is_read_as_the_published_schema_says(value, schema_valid, read):
    databag = {"remote_write": json.dumps(value)}

    valid = jsonschema.Draft7Validator(REMOTE_WRITE_SCHEMA).is_valid(decoded(databag))

    assert (valid, cos.remote_write_url([databag])) == (schema_valid, read)


def test_the_databag_the_official_loki_provider_writes_is_valid_and_read():
    # LokiPushApiProvider (loki-k8s, commit 03bb7612): in each unit databag, `endpoint` =
    # json.dumps({"url": url.rstrip("/") + "/loki/api/v1/push"}) and `public_address`
    fqdn = "loki-0.loki-endpoints.cos.svc.cluster.local"
    url = f"http://{fqdn}:3100/loki/api/v1/push"
    written = {"endpoint": json.dumps({"url": url}), "public_address": json.dumps(fqdn)}

    jsonschema.validate(decoded(written), LOKI_SCHEMA)
    assert cos.loki_url([{**JUJU_KEYS, **written}]) == url


@pytest.mark.parametrize(
    ("value", "schema_valid", "read"),
    [
        ({"url": LOKI}, True, LOKI),
        ({"url": LOKI, "tenant": "x"}, True, LOKI),
        # the official provider always ends the URL so; another path is the provider's choice
        ({"url": "http://loki:3100/other/path"}, False, "http://loki:3100/other/path"),
        ({"url": "loki:3100/loki/api/v1/push"}, True, None),  # no scheme: k6 could not push
        ({}, False, None),
        ({"url": None}, False, None),
        (LOKI, False, None),
    ],
)
def test_loki_data_is_read_as_the_official_library_writes_it(value, schema_valid, read):
    databag = {"endpoint": json.dumps(value)}

    valid = jsonschema.Draft7Validator(LOKI_SCHEMA).is_valid(decoded(databag))

    assert (valid, cos.loki_url([databag])) == (schema_valid, read)


# ---------------------------------------------------------------- k6 outputs

LABELS = {"run_id": "abc123", "juju_unit": "k6/0", "juju_model": "emu"}
LABEL_TEXT = "label.juju_model=emu,label.juju_unit=k6/0,label.run_id=abc123"


def test_no_outputs_still_exports_the_html_report():
    args, env = cos.k6_outputs(None, None, LABELS)

    assert args == []
    assert env == REPORT_ENV


def test_remote_write_only_adds_the_rw_output_with_native_histograms():
    args, env = cos.k6_outputs(RW, None, LABELS)

    assert args == ["-o", "experimental-prometheus-rw"]
    assert env == {
        **REPORT_ENV,
        "K6_PROMETHEUS_RW_SERVER_URL": RW,
        "K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM": "true",
    }


def test_loki_only_adds_a_log_output_with_every_label_sorted():
    args, env = cos.k6_outputs(None, LOKI, LABELS)

    assert args == ["--log-output", f"loki={LOKI},{LABEL_TEXT}"]
    assert env == REPORT_ENV


def test_both_outputs_metrics_first_then_logs():
    args, env = cos.k6_outputs(RW, LOKI, LABELS)

    assert args == [
        "-o",
        "experimental-prometheus-rw",
        "--log-output",
        f"loki={LOKI},{LABEL_TEXT}",
    ]
    assert env["K6_PROMETHEUS_RW_SERVER_URL"] == RW
    assert env["K6_WEB_DASHBOARD_EXPORT"] == REPORT_FILE


def test_loki_without_labels_has_no_trailing_comma():
    args, _ = cos.k6_outputs(None, LOKI, {})

    assert args == ["--log-output", f"loki={LOKI}"]


def test_labels_with_a_comma_in_key_or_value_are_left_out():
    labels = {"good": "1", "bad": "a,b", "worse,key": "x", "also": "ok"}

    args, _ = cos.k6_outputs(None, LOKI, labels)

    assert args == ["--log-output", f"loki={LOKI},label.also=ok,label.good=1"]
