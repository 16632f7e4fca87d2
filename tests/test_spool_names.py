"""Report file names in the spool have one canonical case (issue 14 item 14): an upper-case GUID
name was posted, then crashed the uploader (ReportNotFound) and stayed in ``sending``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.entries import crc_of
from stationflow.engine.spool.store import Spool
from tests.conftest import assert_whole_once
from tests.test_service import quiet_service, serve, wait_for, write_config


def _drop_upper(data_dir: Path, state: str, raw: bytes, key: str) -> Path:
    """Put a report file in a state folder by hand, named in upper case."""
    folder = data_dir / "spool" / state
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key.upper()}.{crc_of(raw).upper()}.json"
    path.write_bytes(raw)
    return path


def _key(raw: bytes) -> str:
    return str(json.loads(raw)["id"]).lower()


def test_an_upper_case_name_is_renamed_to_its_canonical_name_and_sent(data_dir: Path) -> None:
    raws = {state: make_report_bytes(i, seed=51) for i, state in enumerate(["pending", "sending", "retry_wait", "sent"])}
    keys = {state: _key(raw) for state, raw in raws.items()}
    Spool(data_dir).close()
    for state, raw in raws.items():
        _drop_upper(data_dir, state, raw, keys[state])
    with Spool(data_dir) as spool:
        assert sorted(spool.keys()) == sorted(keys.values())
        assert len([n for n in spool.recovery_notes if "renamed" in n]) == 4
        spool.release_due()
        sent = []
        while (claim := spool.claim_next()) is not None:
            assert claim.key == claim.key.lower()
            spool.fire(claim.key, "accepted")  # the key a claim hands out is the key fire finds
            sent.append(claim.key)
        assert sorted(sent) == sorted(keys[s] for s in ("pending", "sending", "retry_wait"))
    by_key = {keys[s]: raws[s] for s in raws}
    assert set(assert_whole_once(data_dir, by_key).values()) == {"sent"}
    assert all(p.name == p.name.lower() for p in (data_dir / "spool" / "sent").iterdir())


def test_an_upper_case_copy_of_a_report_already_there_is_set_aside_not_lost(data_dir: Path) -> None:
    raw = make_report_bytes(1, seed=52)
    with Spool(data_dir) as spool:
        key = spool.accept(raw).key
    twin = _drop_upper(data_dir, "retry_wait", raw, key)
    with Spool(data_dir) as spool:
        assert spool.state_of(key) == "pending"
        [copy] = spool.keys("quarantined")
        assert copy.startswith(f"{key}~") and spool.read(copy) == raw
        assert any("second copy" in n and twin.name in n for n in spool.recovery_notes)
    assert not twin.exists()


def test_a_read_only_look_leaves_an_upper_case_name_alone(data_dir: Path) -> None:
    raw = make_report_bytes(1, seed=53)
    Spool(data_dir).close()
    path = _drop_upper(data_dir, "pending", raw, _key(raw))
    assert Spool(data_dir, readonly=True).keys() == []
    assert path.exists()


async def test_the_service_delivers_upper_case_named_reports_and_leaves_nothing_in_sending(tmp_path: Path) -> None:
    data = tmp_path / "data"
    raws = [make_report_bytes(i, seed=54) for i in range(4)]
    keys = [_key(raw) for raw in raws]
    Spool(data).close()
    for i, (raw, key) in enumerate(zip(raws, keys)):
        _drop_upper(data, "pending" if i % 2 else "sending", raw, key)
    with Emulator(port=0, seed=3) as emulator:
        service = quiet_service(write_config(tmp_path, emulator.url))

        async def scenario(svc) -> dict:
            await wait_for(lambda: svc.status()["reports"]["sent"] == len(raws), timeout=30.0,
                           explain=lambda: svc.status()["reports"])
            return svc.status()

        rc, status = await serve(service, scenario)
        assert rc == 0 and status["service"]["state"] == "running"
        assert status["tasks"]["uploader"]["restarts"] == 0
        assert emulator.received_ids() == set(keys)
    assert set(assert_whole_once(data, dict(zip(keys, raws))).values()) == {"sent"}


def test_the_start_up_scan_leaves_the_garbage_collector_as_it_found_it(data_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan runs without the cyclic collector (it would walk the growing index again and again);
    it is on again afterwards, also when the scan fails, and stays off for a caller that had it off."""
    import gc

    from stationflow.engine.spool import opening

    with Spool(data_dir) as spool:
        spool.accept(make_report_bytes(1, seed=3))
    seen: list[bool] = []
    real = opening._scan

    def watching(spool: Spool, *, recover: bool) -> None:
        seen.append(gc.isenabled())
        real(spool, recover=recover)

    monkeypatch.setattr(opening, "_scan", watching)
    assert gc.isenabled()
    Spool(data_dir).close()
    assert seen == [False] and gc.isenabled()

    def failing(spool: Spool, *, recover: bool) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(opening, "_scan", failing)
    with pytest.raises(OSError):
        Spool(data_dir)
    assert gc.isenabled()
    monkeypatch.setattr(opening, "_scan", watching)
    gc.disable()
    try:
        Spool(data_dir).close()
        assert seen[-1] is False and not gc.isenabled()
    finally:
        gc.enable()
