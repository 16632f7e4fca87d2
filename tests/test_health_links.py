"""Links the intake ignores are a warning on the banner, pointing at the setting that decides."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from stationflow.engine.health import health_of
from stationflow.engine.intake import Intake, IntakeOptions
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection

STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")


async def _status_after_a_pass(tmp_path: Path, follow_links: str) -> dict[str, object]:
    data, drop, outside = tmp_path / "data", tmp_path / "drop", tmp_path / "outside"
    drop.mkdir()
    outside.mkdir()
    (outside / "r.json").write_text("{}")
    os.symlink(outside / "r.json", drop / "out.json")  # leads out of the watch folder: never followed
    section = IntakeSection(name="links", watch=str(drop), converter="wsjf", follow_links=follow_links)
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(notifications=False))
        await intake.scan_once()
        status = {"intake": intake.status()}
        await intake.aclose()
    return status


async def test_ignored_links_are_a_warning_naming_the_follow_links_field(tmp_path: Path) -> None:
    reasons = health_of(await _status_after_a_pass(tmp_path, "never"))["reasons"]
    [reason] = [r for r in reasons if "symbolic link" in r["text"]]
    assert reason["level"] == "warning"
    assert reason["field"] == "intake[0].follow_links" and reason["page"] == "Intake"
    assert reason["text"].startswith("intake links: 1 symbolic link in the watch folder is ignored (e.g. ")
    assert "out.json" in reason["text"] and "Follow symbolic links to inside" in reason["text"]


async def test_no_warning_without_ignored_links(tmp_path: Path) -> None:
    status = await _status_after_a_pass(tmp_path, "never")
    status["intake"]["intakes"]["links"]["links_ignored"] = 0  # type: ignore[index]
    assert not [r for r in health_of(status)["reasons"] if "symbolic link" in r["text"]]
