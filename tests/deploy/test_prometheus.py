"""Prometheus configs and rules through ``promtool`` (offline), and the exporter's real output through
``promtool check metrics``.

Needs ``promtool`` from the Debian package ``prometheus``: skipped without it, a failure under CI=true.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from proto.messages import Prediction, Telemetry
from services.clock import FakeClock
from services.exporter import ExporterState, registry_for
from tests.deploy.test_grafana import load_yaml, panel_queries
from tests.needs import tool

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
SYSTEMD_CONFIG = PROMETHEUS / "prometheus.yml"
COMPOSE_CONFIG = PROMETHEUS / "prometheus-compose.yml"
RULES = PROMETHEUS / "rules" / "speck-edge.yml"
RULE_TESTS = PROMETHEUS / "tests" / "speck-edge_test.yml"
COMPOSE_RULES_DIR = "/etc/prometheus/rules/"
SEVERITIES = {"critical", "warning", "info"}


def require(name: str) -> str:
    """The path of a Prometheus program, or skip (fail under CI=true) when it is not installed."""
    return tool(name, "apt-get install --no-install-recommends prometheus")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def deploy_copy(tmp: Path) -> Path:
    """``deploy/prometheus`` copied under ``tmp`` (the rules beside the configs, as installed)."""
    dest = tmp / "prometheus"
    shutil.copytree(PROMETHEUS, dest)
    return dest


def rules_doc() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(RULES)
    return doc


def rules(kind: str) -> list[dict[str, Any]]:
    """Every ``alert`` or ``record`` rule of the rules file."""
    return [r for g in rules_doc()["groups"] for r in g["rules"] if kind in r]


# ---------------------------------------------------------------- configs and rules


def test_systemd_config_checks(tmp_path: Path) -> None:
    config = deploy_copy(tmp_path) / "prometheus.yml"
    out = promtool("check", "config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr, out.stdout + out.stderr


def test_compose_config_checks_with_the_rules_where_compose_mounts_them(tmp_path: Path) -> None:
    copy = deploy_copy(tmp_path)
    text = COMPOSE_CONFIG.read_text()
    assert COMPOSE_RULES_DIR in text
    config = copy / "prometheus-compose.yml"
    config.write_text(text.replace(COMPOSE_RULES_DIR, f"{copy / 'rules'}/"))  # the only change: the mount point
    out = promtool("check", "config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr, out.stdout + out.stderr


def test_both_configs_scrape_the_exporter_and_load_the_same_rules() -> None:
    systemd, compose = load_yaml(SYSTEMD_CONFIG), load_yaml(COMPOSE_CONFIG)
    assert systemd["global"]["scrape_interval"] == "5s"
    assert [c["static_configs"][0]["targets"] for c in systemd["scrape_configs"]] == [["127.0.0.1:8790"]]
    assert [c["static_configs"][0]["targets"] for c in compose["scrape_configs"]] == [["exporter:8790"]]
    assert systemd["rule_files"] == ["rules/*.yml"]
    assert compose["rule_files"] == [COMPOSE_RULES_DIR + "*.yml"]
    assert [p.name for p in (PROMETHEUS / "rules").iterdir()] == ["speck-edge.yml"], "one rules file, not copies"
    assert [c["job_name"] for c in systemd["scrape_configs"]] == [c["job_name"] for c in compose["scrape_configs"]]


def test_rules_check() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    n = len(rules("alert")) + len(rules("record"))
    assert f"SUCCESS: {n} rules found" in out.stdout, out.stdout


def test_rules_unit_tests_pass() -> None:
    out = promtool("test", "rules", str(RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_labelled_explained_and_unit_tested_both_ways() -> None:
    tests = load_yaml(RULE_TESTS)["tests"]
    checks = [c for t in tests for c in t.get("alert_rule_test", [])]
    alerts = rules("alert")
    assert {a["alert"] for a in alerts} >= {
        "SpeckServiceDown", "SpeckMessagesLost", "SpeckMalformedMessages", "SpeckProcessorPowerOverBudget",
        "SpeckPipelineLatencyHigh", "SpeckNoPredictions",
    }  # fmt: skip
    for a in alerts:
        assert a["labels"]["severity"] in SEVERITIES, a["alert"]
        assert a["annotations"]["summary"] and a["annotations"]["description"], a["alert"]
        mine = [c for c in checks if c["alertname"] == a["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{a['alert']}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{a['alert']}: no test where it stays quiet"


def test_recording_rules_follow_the_naming_convention() -> None:
    for r in rules("record"):
        assert re.fullmatch(r"speck:[a-z0-9_]+:[a-z0-9_]+", r["record"]), r["record"]


# ---------------------------------------------------------------- dashboard PromQL


def _as_recording_rules(queries: list[tuple[str, str]]) -> str:
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(queries):
        lines += [f"      - record: dashboard:query_{i}:check", f"        expr: {_yaml_str(expr)}"]
    return "\n".join(lines) + "\n"


def _yaml_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = panel_queries()
    path = tmp_path / "dashboard.yml"
    path.write_text(_as_recording_rules(queries))
    out = promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(queries)} rules found" in out.stdout


def test_the_dashboard_query_check_catches_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(_as_recording_rules([("broken", "sum by (stage) (rate(speck_events_total[1m])")]))
    assert promtool("check", "rules", str(path)).returncode != 0


# ---------------------------------------------------------------- the exporter's exposition


def _telemetry(stream: str, values: dict[str, float], **groups: dict[str, float]) -> Telemetry:
    return Telemetry(stream=stream, seq=1, sent_ns=1, values=values, groups=groups)


def _realistic_state(clock: FakeClock) -> ExporterState:
    """What a running pipeline tells the exporter (values from a replay of the default recording)."""
    rails = ("io", "ram", "logic", "pixel_digital", "pixel_analog")
    resting_w = dict(zip(rails, (5.39e-5, 4.52e-5, 3.21e-4, 7.89e-5, 6.109e-4), strict=True))
    common = {"up": 1, "pid": 4242, "messages_in": 2860, "messages_out": 2860}
    state = ExporterState()
    for msg in (
        _telemetry("sensor", {"events_sent": 150050, "batches_sent": 2903, "late_batches": 15, "max_late_us": 4448.8,
                              "reordered_events": 0}, dropped={"queue_full": 0}),
        _telemetry("filter", {**common, "uptime_s": 3.6, "events_in": 147900, "events_out": 147900},
                   energy_j={"io": 4.4e-5, "ram": 0.0, "logic": 1.1e-4, "pixel_digital": 0.0, "pixel_analog": 0.0},
                   active_power_w={"io": 1.5e-5, "logic": 3.0e-5},
                   dropped_events={"noise": 120, "polarity": 0, "roi": 0, "outside_sensor": 0},
                   dropped_messages={"sequence_gap": 2, "decode_bad_msgpack": 1, "no_subscriber": 3},
                   timing_us={"hop_p50": 80.0, "hop_p99": 400.0}),
        _telemetry("chip", {**common, "uptime_s": 4.3, "events_in": 138800, "events_out": 53, "synops": 41726094,
                            "neuron_updates": 41726094, "windows": 186, "masked_windows": 94,
                            "input_masked_ratio": 0.505, "model_time_s": 2.776},
                   spikes={"conv1": 219861, "conv2": 21833, "conv3": 9983, "fc1": 586, "out": 53},
                   resting_power_w=resting_w, resting_energy_j={r: w * 2.776 for r, w in resting_w.items()},
                   energy_j={"io": 4.4e-5, "ram": 7.3e-4, "logic": 5.8e-4}, active_power_w={"ram": 2.6e-4},
                   dropped_events={"masked": 70525, "outside_core": 0},
                   path_latency_ns={"conv1": 3936, "conv2": 4200, "fc1": 6040, "out": 6182}),
        _telemetry("readout", {**common, "uptime_s": 5.0, "events_in": 53, "events_out": 50, "decisions": 2783,
                               "predictions": 50}, predictions={"left_hand_wave": 26, "other": 14}),
    ):  # fmt: skip
        state.observe(msg, clock.monotonic_ns())
    for seq, (label, chip_us, wall_ms) in enumerate(
        [("left_hand_wave", 12.0, 0.9), ("other", 480.0, 3.2), ("hand_clap", 950.0, 48.0), ("arm_roll", 25e3, 2e3)]
    ):
        state.observe(
            Prediction(stream="readout", seq=seq, sent_ns=10**12 + int(wall_ms * 1e6), origin_ns=10**12, class_id=seq,
                       label=label, score=0.9, t_start_us=0, t_end_us=1000, latency_us=chip_us,
                       extras={"chip_latency_us": chip_us}),
            clock.monotonic_ns(),
        )  # fmt: skip
    state.note_decode_error("bad_header")
    return state


@pytest.mark.parametrize("fed", [True, False], ids=["running", "before-any-telemetry"])
def test_the_exporter_output_passes_promtool_check_metrics(fed: bool) -> None:
    clock = FakeClock()
    state = _realistic_state(clock) if fed else ExporterState()
    text = generate_latest(registry_for(state, clock)).decode()
    assert ("speck_predictions_total{" in text) is fed
    out = promtool("check", "metrics", stdin=text)
    assert out.returncode == 0 and not out.stdout and not out.stderr, out.stdout + out.stderr
