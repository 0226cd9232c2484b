"""deploy/systemd: the units pass ``systemd-analyze verify`` silently, score ≤ 2.0 in ``systemd-analyze
security``, and each service pets the watchdog as often as its unit requires.

``verify`` and ``security`` run with ``--root`` on a temporary tree: the units and drop-ins in
``etc/systemd/system``, a stub ``/opt/speck-edge/venv/bin/speck-edge`` (verify insists that
``ExecStart=``'s binary exists) and a copy of the host's ``/usr/lib/systemd/system`` (``sysinit.target``
and the other units every service depends on). ``verify`` exits 0 on unknown keys and bad values, so
any output at all is a failure. The tests skip when ``systemd-analyze`` is absent, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.launch import SERVICE_NAMES
from services.notify import parse
from tests.needs import tool, unavailable
from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
UNIT_SRC = REPO / "deploy" / "systemd"
TEMPLATE = UNIT_SRC / "speck-edge@.service"
TARGET = UNIT_SRC / "speck-edge.target"
INSTANCES = [f"speck-edge@{name}.service" for name in SERVICE_NAMES]
EXEC = "/opt/speck-edge/venv/bin/speck-edge"
MAX_SCORE = 2.0
HOST_UNITS = Path("/usr/lib/systemd/system")


def directives(path: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` of every assignment in a unit file, in order (keys may repeat)."""
    out, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(path: Path, key: str, section: str = "") -> list[str]:
    return [v for s, k, v in directives(path) if k == key and (not section or s == section)]


def effective(name: str, key: str) -> str | None:
    """``key``'s value for instance ``name``: the template's, overridden by its drop-ins (last wins)."""
    found = values(TEMPLATE, key)
    for conf in sorted((UNIT_SRC / f"speck-edge@{name}.service.d").glob("*.conf")):
        found += values(conf, key)
    return found[-1] if found else None


def seconds(text: str) -> float:
    """A systemd time span of the forms used here: ``10``, ``10s``, ``2min``, ``0``."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|ms)?", text)
    assert m, f"unsupported time span {text!r}"
    scale = {"min": 60.0, "ms": 1e-3}.get(m[2] or "s", 1.0)
    return float(m[1]) * scale


# --- the unit files themselves (no tools needed) ------------------------------------------------------


def test_template_contract() -> None:
    assert values(TEMPLATE, "Type") == ["notify"]
    assert values(TEMPLATE, "NotifyAccess") == ["main"]
    assert values(TEMPLATE, "Restart") == ["on-failure"]
    assert values(TEMPLATE, "RestartSec") and values(TEMPLATE, "StartLimitBurst", "Unit")
    assert values(TEMPLATE, "StartLimitIntervalSec", "Unit")
    assert seconds(values(TEMPLATE, "WatchdogSec")[-1]) >= 3 * 1.0  # ≥ 3 telemetry intervals
    assert values(TEMPLATE, "ExecStart") == [f"{EXEC} run %i --config %E/speck-edge/config.toml"]
    assert values(TEMPLATE, "MemoryDenyWriteExecute") == []  # numba JIT needs W+X memory
    assert values(TEMPLATE, "DynamicUser") == ["yes"]
    assert values(TEMPLATE, "PartOf", "Unit") == ["speck-edge.target"]
    assert values(TEMPLATE, "WantedBy", "Install") == ["speck-edge.target"]
    env = values(TEMPLATE, "Environment")
    assert "NUMBA_CACHE_DIR=%C/speck-edge/numba" in env and "SPECK_EDGE_CACHE=%C/speck-edge" in env


def test_target_wants_every_service() -> None:
    wanted = " ".join(values(TARGET, "Wants", "Unit")).split()
    assert sorted(wanted) == sorted(INSTANCES)


def test_install_script_is_valid_bash() -> None:
    script = UNIT_SRC / "install.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "set -euo pipefail" in text and "--uninstall" in text
    subprocess.run(["bash", "-n", str(script)], check=True)
    checker = shutil.which("shellcheck")
    if checker:
        result = subprocess.run([checker, str(script)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


# --- systemd-analyze ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A filesystem root holding the units as install.sh lays them out, for ``systemd-analyze --root``."""
    tool("systemd-analyze")
    if not HOST_UNITS.is_dir():
        unavailable(f"{HOST_UNITS} not found (systemd's own units, which ours depend on)")
    r = tmp_path_factory.mktemp("root")
    shutil.copytree(HOST_UNITS, r / HOST_UNITS.relative_to("/"), symlinks=True)
    units = r / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in (TEMPLATE, TARGET):
        shutil.copy(unit, units)
    for dropin in UNIT_SRC.glob("speck-edge@*.service.d"):
        shutil.copytree(dropin, units / dropin.name)
    stub = r / EXEC.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return r


def assert_verify_silent(root: Path, unit: str) -> None:
    """``systemd-analyze verify`` exits 0 and says nothing about ``unit``."""
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", unit], check=False, capture_output=True, text=True
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


def assert_security_ok(root: Path, unit: str) -> None:
    """``systemd-analyze security`` scores ``unit`` at most ``MAX_SCORE`` (lower is better)."""
    # --threshold takes the score × 10 as an integer (0..100).
    cmd = ["systemd-analyze", "security", "--offline=true", f"--threshold={int(MAX_SCORE * 10)}", f"--root={root}"]
    result = subprocess.run([*cmd, unit], check=False, capture_output=True, text=True)
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert m, result.stdout + result.stderr
    print(f"{unit}: {m[1]}")
    assert float(m[1]) <= MAX_SCORE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["speck-edge.target", *INSTANCES])
def test_verify_prints_nothing(root: Path, unit: str) -> None:
    assert_verify_silent(root, unit)


@pytest.mark.parametrize("unit", INSTANCES)
def test_security_score(root: Path, unit: str) -> None:
    assert_security_ok(root, unit)


@pytest.fixture(scope="module")
def realtime_root(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root`` with the optional real-time drop-in installed for the chip, as its comment says."""
    r = tmp_path_factory.mktemp("rt") / "root"
    shutil.copytree(root, r, symlinks=True)
    dropin = r / "etc/systemd/system/speck-edge@chip.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    shutil.copy(UNIT_SRC / "realtime.conf", dropin)
    return r


def test_the_realtime_dropin_verifies_and_keeps_the_score(realtime_root: Path) -> None:
    assert values(UNIT_SRC / "realtime.conf", "CPUSchedulingPolicy") == ["fifo"]
    assert_verify_silent(realtime_root, "speck-edge@chip.service")
    assert_security_ok(realtime_root, "speck-edge@chip.service")


# --- the watchdog contract: each service vs. its unit -------------------------------------------------

WATCH_AFTER_READY_S = 3.5


def pipeline_env(tmp: Path) -> dict[str, str]:
    """Every endpoint and the exporter on ports free now (other tests may hold the defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPECK_EDGE__", "NOTIFY_", "WATCHDOG_"))}
    for name in ("sensor", "filter", "chip", "readout"):
        env[f"SPECK_EDGE__ENDPOINTS__{name.upper()}"] = f"tcp://127.0.0.1:{free_port()}"
    for name in ("sensor", "filter", "chip"):
        env[f"SPECK_EDGE__ENDPOINTS__{name.upper()}_LOSSLESS"] = f"tcp://127.0.0.1:{free_port()}"
    env["SPECK_EDGE__EXPORTER__PORT"] = str(free_port())
    env["SPECK_EDGE_CACHE"] = str(tmp / "cache")
    return env


def notifications(name: str, env: dict[str, str], tmp: Path, watchdog_s: float) -> list[tuple[float, dict[str, str]]]:
    """Run ``speck-edge run NAME`` as systemd would (NOTIFY_SOCKET, WATCHDOG_USEC) until
    ``WATCH_AFTER_READY_S`` after READY=1; every notification with its time since READY=1."""
    path = tmp / f"notify-{name}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    child_env = dict(env, NOTIFY_SOCKET=str(path), WATCHDOG_USEC=str(int(watchdog_s * 1e6)))
    cmd = [sys.executable, "-m", "services.cli", "run", name]
    proc = subprocess.Popen(cmd, env=child_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    got: list[tuple[float, dict[str, str]]] = []
    ready_at: float | None = None
    deadline = time.monotonic() + 120  # a cold numba cache compiles for a while
    try:
        while time.monotonic() < deadline:
            try:
                fields = parse(sock.recv(4096))
            except TimeoutError:
                if proc.poll() is not None:
                    break
                continue
            now = time.monotonic()
            if ready_at is None and fields.get("READY") == "1":
                ready_at, deadline = now, now + WATCH_AFTER_READY_S
            got.append((now - ready_at if ready_at is not None else -1.0, fields))
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        sock.close()
    assert ready_at is not None, f"{name} never sent READY=1 (exit {proc.returncode}): {err.decode()[-2000:]}"
    return got


@pytest.fixture(scope="module")
def notified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple[float, dict[str, str]]]]]:
    """Every service's notifications, the five run side by side, each given the template's watchdog
    (also those whose drop-in turns it off, to see whether they would pet it by now)."""
    tmp = tmp_path_factory.mktemp("notify")
    env = pipeline_env(tmp)
    watchdog_s = seconds(values(TEMPLATE, "WatchdogSec")[-1])
    with ThreadPoolExecutor(len(SERVICE_NAMES)) as pool:
        futures = {name: pool.submit(notifications, name, env, tmp, watchdog_s) for name in SERVICE_NAMES}
        yield {name: f.result() for name, f in futures.items()}


WATCHED = [n for n in SERVICE_NAMES if seconds(effective(n, "WatchdogSec") or "0") > 0]


def test_every_service_is_watched() -> None:
    assert WATCHED == list(SERVICE_NAMES), "every service pets the watchdog: none needs WatchdogSec=0"


@pytest.mark.parametrize("name", WATCHED)
def test_watched_service_pets_watchdog(notified: dict[str, list[tuple[float, dict[str, str]]]], name: str) -> None:
    limit = seconds(effective(name, "WatchdogSec") or "0")
    pets = [t for t, fields in notified[name] if fields.get("WATCHDOG") == "1" and t >= 0]
    assert pets, f"{name} sent no WATCHDOG=1 within {WATCH_AFTER_READY_S} s of READY=1"
    gaps = [b - a for a, b in zip([0.0, *pets], [*pets, WATCH_AFTER_READY_S], strict=True)]
    assert max(gaps) < limit / 2, f"{name}: WATCHDOG=1 gaps {gaps} (WatchdogSec={limit})"
