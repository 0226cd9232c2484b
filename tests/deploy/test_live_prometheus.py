"""A real Prometheus scraping a running ``speck-edge up``: every dashboard query and every rule returns data.

``up`` replays the bundled default recording at speed 1 (telemetry every 0.5 s) on free ports; Prometheus
(the Debian package's server) runs on loopback with a copy of ``deploy/prometheus/prometheus.yml`` whose
only changes are the exporter's port, a 1 s scrape/evaluation interval and the absolute rules path. The test
polls the HTTP API with a deadline (the first sample takes a few seconds, ``rate()`` needs two), never sleeps.

What "returns data" means for each kind of expression:

* dashboard queries and recording-rule expressions: the query as written has a non-empty result; the
  recorded series (``speck:...``) too — so the rules were loaded and evaluated by Prometheus itself;
* alert expressions are conditions (empty while all is well): each comparison is queried with the ``bool``
  modifier (``x > 0.05`` → ``x > bool 0.05``), which keeps every series of its operands, so the result is
  non-empty exactly when the series the alert watches exist. ``ALERTS`` is not checked.

A healthy pipeline loses no message, so ``speck_messages_dropped_total`` would have no series: the test
SIGKILLs the readout once (``up`` restarts it), and the chip counts the spikes it sent meanwhile as
``no_subscriber``. Malformed messages cannot be caused from outside, so expressions selecting
``reason=~"decode_.*"`` are queried with ``|no_subscriber`` added to the matcher (:data:`FAULT_STANDINS`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_grafana import panel_queries
from tests.deploy.test_prometheus import PROMETHEUS, require
from tests.net import free_port
from tests.services.e2e_helpers import FLOW_S, Ports, ProcessGroup, Up, pipeline_config, poll, running_up

DATA_S = 40.0
"""Deadline for every expression to return data once Prometheus is ready."""
FAULT_STANDINS = {'reason=~"decode_.*"': 'reason=~"decode_.*|no_subscriber"'}
_COMPARISON = re.compile(r"==|!=|>=|<=|>|<")


def with_bool(expr: str) -> str:
    """``expr`` with ``bool`` after every comparison outside label matchers and strings."""
    out, depth, quote, i = [], 0, "", 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            out.append(ch)
            if ch == "\\":
                out.append(expr[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
            out.append(ch)
        elif ch in "{}":
            depth += 1 if ch == "{" else -1
            out.append(ch)
        elif depth == 0 and (m := _COMPARISON.match(expr, i)):
            out.append(m[0] + ("" if re.match(r"\s*bool\b", expr[m.end() :]) else " bool"))
            i = m.end()
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def test_with_bool() -> None:
    assert with_bool('up{job="a"} == 0') == 'up{job="a"} == bool 0'
    assert with_bool('x{reason=~"a|b", r!="c"} > 1') == 'x{reason=~"a|b", r!="c"} > bool 1'
    assert (
        with_bool("(a or on() vector(0)) == 0 and on() (b >= 1)")
        == "(a or on() vector(0)) == bool 0 and on() (b >= bool 1)"
    )
    assert with_bool("a > bool b") == "a > bool b"


def standin(expr: str) -> str:
    for fault, present in FAULT_STANDINS.items():
        expr = expr.replace(fault, present)
    return expr


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def result(self, query: str) -> list[Any]:
        body = self.get("/api/v1/query", query=query)
        assert body["status"] == "success", (query, body)
        result: list[Any] = body["data"]["result"]
        return result


def prometheus_config(tmp: Path, exporter_port: int) -> Path:
    """A copy of the systemd config scraping the test's exporter every second, the rules beside it."""
    text = (PROMETHEUS / "prometheus.yml").read_text()
    for old, new in (
        ('"127.0.0.1:8790"', f'"127.0.0.1:{exporter_port}"'),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("evaluation_interval: 5s", "evaluation_interval: 1s"),
        ("- rules/*.yml", f"- {PROMETHEUS / 'rules'}/*.yml"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "prometheus.yml"
    path.write_text(text)
    return path


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[Up, Ports]]:
    ports = Ports()
    config = pipeline_config(
        tmp_path / "live.toml", ports, Path("default-recording"),
        pipeline={"telemetry_interval_s": 0.5}, sensor={"speed": 1.0, "loop": True},
    )  # fmt: skip
    with running_up(config, tmp_path) as up:
        yield up, ports


@pytest.fixture
def prometheus(tmp_path: Path, pipeline: tuple[Up, Ports]) -> Iterator[Api]:
    binary = require("prometheus")
    port = free_port()
    group = ProcessGroup(tmp_path / "prometheus.log")
    group.spawn(
        [binary, f"--config.file={prometheus_config(tmp_path, pipeline[1].http)}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip
    api = Api(port)
    try:
        try:
            poll(api.ready, FLOW_S, "Prometheus /-/ready")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{group.log_tail()}") from None
        yield api
    finally:
        leftovers = group.stop()
        assert not leftovers, leftovers


def _queries(api: Api) -> dict[str, str]:
    """What must return data, by a name for the failure message (rules as Prometheus loaded them)."""
    queries = {f"panel {name}": expr for name, expr in panel_queries()}
    groups = api.get("/api/v1/rules")["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert {r["type"] for r in loaded} == {"recording", "alerting"}, loaded
    for rule in loaded:
        if rule["type"] == "recording":
            queries[f"record {rule['name']}: expr"] = standin(rule["query"])
            if standin(rule["query"]) == rule["query"]:  # a stand-in's recorded series stays empty
                queries[f"record {rule['name']}: series"] = rule["name"]
        else:
            queries[f"alert {rule['name']}"] = standin(with_bool(_inline(rule["query"], loaded)))
    return queries


def _inline(expr: str, loaded: list[dict[str, Any]]) -> str:
    """``expr`` with each fault-only recorded series replaced by its (stood-in) expression."""
    for rule in loaded:
        if rule["type"] == "recording" and standin(rule["query"]) != rule["query"]:
            expr = re.sub(rf"{re.escape(rule['name'])}(?![\w:])", f"({rule['query']})", expr)
    return expr


def test_every_dashboard_query_and_rule_returns_data(pipeline: tuple[Up, Ports], prometheus: Api) -> None:
    up, _ = pipeline
    os.kill(up.pids["readout"], signal.SIGKILL)  # the chip's spikes find no subscriber until it is back
    up.wait_line(r"^restarted readout", FLOW_S)
    queries = _queries(prometheus)
    empty = dict(queries)

    def all_have_data() -> bool:
        for name, query in list(empty.items()):
            if prometheus.result(query):
                del empty[name]
        return not empty

    try:
        poll(all_have_data, DATA_S, "data for every query", interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}; still empty:\n" + "\n".join(f"{n}: {q}" for n, q in empty.items())) from None
    assert len(queries) >= len(panel_queries()) + 20
