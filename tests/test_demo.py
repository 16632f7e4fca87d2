"""``stationflow demo`` end to end: real service, intake, spool and uploader against the emulator."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stationflow.engine.cli.main import main
from stationflow.engine.devtools.demo import run_demo


def test_demo_loses_nothing_through_an_outage(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(reports=60, outage_s=1.0, workdir=tmp_path, stream=out)
    text = out.getvalue()
    assert result.lost == 0 and result.sent == 60 and result.accepted == 60
    assert result.outage_s >= 1.0  # the server really went down in the middle
    assert "server taken down" in text and "server back" in text and "lost                     0" in text
    assert not list(tmp_path.iterdir())  # the temporary station is removed


def test_demo_command_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--reports", "20", "--outage", "0", "--dir", str(tmp_path)]) == 0
    assert "lost                     0" in capsys.readouterr().out
