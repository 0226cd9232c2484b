"""The speck-edge command line: inspect, replay + listen, help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.io import read_recording
from emulator.stats import summarize
from services.cli import INSPECT_KEYS, main
from tests.net import free_port
from tests.real_data import real_file
from tests.services.test_sensor import SHORT

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def test_inspect_json_has_exactly_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    path = real_file(SHORT)
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert tuple(report) == INSPECT_KEYS
    events, rec = read_recording(path)
    s = summarize([events])
    assert report["format"] == rec.info.format == "aedat2"
    assert (report["width"], report["height"]) == (rec.info.width, rec.info.height)
    assert report["events"] == len(events)
    assert (report["t_first_us"], report["t_last_us"]) == (s.t_first_us, s.t_last_us)
    assert report["duration_s"] == pytest.approx(s.duration_s)
    assert report["on_fraction"] == pytest.approx(s.on_fraction, abs=1e-6)
    assert report["monotonic"] is True


def test_inspect_text_lists_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(real_file(SHORT))]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[: len(INSPECT_KEYS)]] == list(INSPECT_KEYS)


def test_inspect_damaged_file_exits_2_naming_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = real_file(SHORT).read_bytes()
    cut = tmp_path / "cut.aedat"
    cut.write_bytes(data[:-3])
    assert main(["inspect", str(cut)]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and re.search(r"byte offset \d+", err)
    assert main(["inspect", str(cut), "--lenient", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["events"] == len(read_recording(real_file(SHORT))[0]) - 1
    assert "stopped early" in captured.err


@pytest.mark.parametrize("command", [[], ["inspect"], ["replay"], ["listen"]])
def test_help_explains_every_command(command: list[str]) -> None:
    out = _cli(*command, "--help")
    assert out.returncode == 0
    assert "usage: speck-edge" in out.stdout
    assert len(out.stdout.splitlines()) > 5


def test_listen_prints_one_line_per_replayed_batch() -> None:
    path = real_file(SHORT)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    listen = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "listen", "events.raw", "--endpoint", endpoint, "--count", "5"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    replay = _cli("replay", str(path), "--speed", "max", "--endpoint", endpoint, "--wait-subscriber", "60")
    out, _ = listen.communicate(timeout=60)
    assert replay.returncode == 0, replay.stderr
    lines = out.splitlines()
    assert len(lines) == 5
    for seq, line in enumerate(lines):
        assert line.startswith("events")
        assert f"seq={seq} " in line and "count=" in line and " us (" in line


def test_listen_refuses_unknown_topic() -> None:
    out = _cli("listen", "nonsense")
    assert out.returncode == 2
    assert "prediction" in out.stderr  # the error lists the valid topics


def test_up_takes_a_realtime_priority_and_refuses_a_bad_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``up --realtime-priority N`` reaches the settings and, through the environment, the children."""
    from services import cli

    monkeypatch.setenv("SPECK_EDGE__PIPELINE__REALTIME_PRIORITY", "0")  # restored after the test
    monkeypatch.setattr(cli, "stop_on_signals", lambda stop: None)  # keep pytest's own Ctrl-C
    seen: list[int] = []
    monkeypatch.setattr("services.up.up", lambda settings, *a: seen.append(settings.pipeline.realtime_priority) or 0)
    assert cli.main(["up", "--realtime-priority", "7", "--duration", "0"]) == 0
    assert seen == [7]
    assert os.environ["SPECK_EDGE__PIPELINE__REALTIME_PRIORITY"] == "7"
    out = _cli("up", "--realtime-priority", "100")
    assert out.returncode == 2 and "1-99" in out.stderr
