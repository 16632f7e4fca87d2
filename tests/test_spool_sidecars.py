"""Sidecars that are valid JSON of the wrong shape, or not JSON at all, never stop the spool (issue 14/8).

A bad sidecar is set aside (renamed ``<key>.json.bad``, never deleted) with a note naming the file and
what was wrong; the report keeps going with default metadata, at start-up and in claim/fire alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.service.service import Service
from stationflow.engine.spool.store import Spool
from stationflow.schemas.sidecar import MAX_SIDECAR_BYTES
from tests.conftest import assert_whole_once
from tests.test_service import quiet_service, serve, wait_for, write_config

BAD = {
    "attempts_text": json.dumps({"attempts": "lots", "history": []}).encode(),
    "history_text": json.dumps({"attempts": 2, "history": "x"}).encode(),
    "history_items": json.dumps({"history": [1, "two", None]}).encode(),
    "epoch_text": json.dumps({"next_attempt_epoch": "soon", "next_attempt": 5}).encode(),
    "not_an_object": b"[1, 2, 3]",
    "null": b"null",
    "huge": json.dumps({"source": "x" * (MAX_SIDECAR_BYTES + 10)}).encode(),
    "truncated": b'{"attempts": 3, "history": [{"at": "2026-',
    "not_utf8": b'{"source": "caf\xe9 \xff"}',
    "empty": b"",
}
STATES = ["pending", "sending", "retry_wait", "sent", "failed", "quarantined"]


def _put_in(spool: Spool, raw: bytes, state: str) -> str:
    key = spool.accept(raw, source="/drop/a.json").key
    if state == "pending":
        return key
    claim = spool.claim_next()
    assert claim is not None and claim.key == key
    trigger = {"sending": None, "retry_wait": "transient_error", "sent": "accepted", "failed": "rejected",
               "quarantined": spool.roles.quarantine_trigger}[state]
    if trigger is not None:
        spool.fire(key, trigger, error="test", next_attempt_s=0.0, count_attempt=trigger == "transient_error")
    assert spool.state_of(key) == state
    return key


def _drive_to_sent(spool: Spool, key: str) -> None:
    """Whatever state the report rests in, take it to sent the way the service and a person would."""
    for _ in range(10):
        state = spool.state_of(key)
        if state == "sent":
            return
        if state == "pending":
            claim = spool.claim_next()
            assert claim is not None and claim.key == key and claim.attempts >= 0
            spool.fire(key, "accepted")
        elif state == "retry_wait":
            spool.release_due()
        else:
            spool.fire_operator(key, "retry")
    raise AssertionError(f"report {key} stuck in {spool.state_of(key)}")


@pytest.mark.parametrize("shape", sorted(BAD))
@pytest.mark.parametrize("state", STATES)
def test_a_bad_sidecar_is_set_aside_and_the_report_goes_on(data_dir: Path, state: str, shape: str) -> None:
    raw = make_report_bytes(1, seed=31)
    with Spool(data_dir) as spool:
        key = _put_in(spool, raw, state)
    meta = data_dir / "spool" / "meta" / f"{key}.json"
    meta.write_bytes(BAD[shape])

    with Spool(data_dir) as spool:  # start-up: recovery of sending, due times of retry_wait
        assert sum(spool.counts().values()) == 1
        info = spool.info(key)  # queue show reads the sidecar too
        assert info.attempts == 0 and info.source == "/drop/a.json"  # from the sources journal
        assert any("ignored" in (h.get("note") or "") for h in info.history)
        _drive_to_sent(spool, key)
        notes = [n for n in spool.recovery_notes if key in n]
    aside = data_dir / "spool" / "meta" / f"{key}.json.bad"
    assert aside.read_bytes() == BAD[shape]  # kept as it was, for a person to look at
    assert len(notes) == 1 and str(meta) in notes[0] and "set aside as" in notes[0]
    assert assert_whole_once(data_dir, {key: raw}) == {key: "sent"}
    if meta.exists():  # a new one, written by the moves after the bad one was set aside
        assert json.loads(meta.read_bytes())["id"] == key


def _claim(spool: Spool, key: str) -> int:
    """Claim reports until ``key`` comes; send the others; return its attempts."""
    while (claim := spool.claim_next()) is not None:
        if claim.key == key:
            return claim.attempts
        spool.fire(claim.key, "accepted")
    raise AssertionError(f"{key} was never claimed")


@pytest.mark.parametrize("shape", ["attempts_text", "history_items", "truncated", "not_utf8"])
def test_claim_and_fire_set_aside_a_sidecar_damaged_while_running(data_dir: Path, shape: str) -> None:
    raws = [make_report_bytes(i, seed=32) for i in range(3)]
    meta = data_dir / "spool" / "meta"
    with Spool(data_dir) as spool:
        keys = [spool.accept(raw).key for raw in raws]
        key = keys[1]
        assert _claim(spool, key) == 0
        spool.fire(key, "transient_error", error="503", next_attempt_s=0.0, count_attempt=True)
        assert spool.release_due() == 1 and spool.info(key).attempts == 1
        (meta / f"{key}.json").write_bytes(BAD[shape])  # damaged while the spool runs
        assert _claim(spool, key) == 0  # the claim reads the attempts: set aside, default metadata
        assert (meta / f"{key}.json.bad").read_bytes() == BAD[shape]
        spool.fire(key, "transient_error", error="503", next_attempt_s=0.0, count_attempt=True)
        assert spool.info(key).attempts == 1
        (meta / f"{key}.json").write_bytes(BAD[shape])
        # a move that writes the sidecar reads it first: set aside again, and the report moves on
        assert spool.fire(key, spool.roles.quarantine_trigger, error="test") == "quarantined"
        assert (meta / f"{key}.json.bad-2").read_bytes() == BAD[shape]
        spool.fire_operator(key, "retry")
        assert _claim(spool, key) == 0
        spool.fire(key, "accepted")
        assert spool.counts()["sent"] == 3 and spool.counts()["sending"] == 0
        assert len([n for n in spool.recovery_notes if key in n]) == 2
    assert set(assert_whole_once(data_dir, dict(zip(keys, raws))).values()) == {"sent"}


def test_a_readonly_look_sets_nothing_aside(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        key = spool.accept(make_report_bytes(1, seed=33)).key
        meta = data_dir / "spool" / "meta" / f"{key}.json"
        meta.write_bytes(BAD["history_text"])
        look = Spool(data_dir, readonly=True)
        assert look.info(key).attempts == 0
        assert meta.read_bytes() == BAD["history_text"] and not look.recovery_notes


async def test_the_service_starts_and_delivers_reports_whose_sidecars_are_bad(tmp_path: Path) -> None:
    data = tmp_path / "data"
    raws: dict[str, bytes] = {}
    with Spool(data) as spool:
        for i, (state, shape) in enumerate([("sending", "history_text"), ("sending", "attempts_text"),
                                            ("retry_wait", "epoch_text"), ("retry_wait", "not_utf8"),
                                            ("pending", "truncated"), ("pending", "huge")]):
            raw = make_report_bytes(i, seed=34)
            key = _put_in(spool, raw, state)
            raws[key] = raw
            (data / "spool" / "meta" / f"{key}.json").write_bytes(BAD[shape])
    with Emulator(port=0, seed=3) as emulator:
        service: Service = quiet_service(write_config(tmp_path, emulator.url))

        async def scenario(svc: Service) -> dict:
            await wait_for(lambda: svc.status()["reports"]["sent"] == len(raws), timeout=30.0,
                           explain=lambda: svc.status()["reports"])
            return svc.status()

        rc, status = await serve(service, scenario)
        assert rc == 0 and status["service"]["state"] == "running"
        assert emulator.received_ids() == set(raws)
    assert set(assert_whole_once(data, raws).values()) == {"sent"}
    assert len(list((data / "spool" / "meta").glob("*.json.bad"))) == len(raws)


def test_a_sidecar_that_cannot_be_read_is_left_in_place_and_the_report_goes_on(data_dir: Path) -> None:
    raw = make_report_bytes(1, seed=35)
    with Spool(data_dir) as spool:
        key = _put_in(spool, raw, "retry_wait")
    meta = data_dir / "spool" / "meta" / f"{key}.json"
    meta.unlink()
    meta.mkdir()  # opens, but reading fails (EISDIR): nothing to rename it to safely
    with Spool(data_dir) as spool:
        spool.release_due()
        _drive_to_sent(spool, key)
        assert any("cannot be" in n and str(meta) in n for n in spool.recovery_notes)
    assert meta.is_dir()
    assert assert_whole_once(data_dir, {key: raw}) == {key: "sent"}
