"""Validated once (issue 18 item 2): the converter worker checks a report and hands over its id, and
the spool, given that id by intake, does not parse the bytes again. Every other caller is validated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.errors import InvalidReport
from stationflow.engine.spool import accepting
from stationflow.engine.spool.store import Spool
from tests.conftest import FIXTURES
from tests.test_intake import SAMPLE, SAMPLE_ID, scans, section


def _no_parsing(raw: bytes) -> None:
    raise AssertionError("parsed again")


def test_given_validated_keys_the_spool_does_not_parse_again(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [make_report_bytes(i, seed=71) for i in range(3)]
    keys = [json.loads(raw)["id"] for raw in raws]
    monkeypatch.setattr(accepting, "parse_header", _no_parsing)
    with Spool(data_dir) as spool:
        results = spool.accept_many([(raw, "/drop/x.json") for raw in raws], validated_keys=keys)
        assert [r.key for r in results] == keys  # type: ignore[union-attr]
        assert [spool.read(k) for k in keys] == raws
        with pytest.raises(ValueError):
            spool.accept_many([(raws[0], None)], validated_keys=[])


def test_anything_but_a_canonical_id_is_validated_by_the_spool(data_dir: Path) -> None:
    raw = make_report_bytes(1, seed=72)
    key = json.loads(raw)["id"]
    with Spool(data_dir) as spool:
        # not a canonical key (upper case, a path, empty): parsed, and the id comes from the bytes
        [upper, empty] = spool.accept_many([(raw, None), (raw, None)], validated_keys=[key.upper(), ""])
        assert upper.key == key and empty.already_present  # type: ignore[union-attr]
        [bad] = spool.accept_many([(b'{"id": "nope"}', None)], validated_keys=["../../etc"])
        assert isinstance(bad, InvalidReport)
        with pytest.raises(InvalidReport):
            spool.accept(b"not json")  # the plain path always validates


async def test_intake_hands_over_the_ids_the_worker_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_bytes(SAMPLE)
    shutil.copy(FIXTURES / "inputs" / "fct-sample.csv", drop / "b.csv")
    parsed: list[bytes] = []
    real = accepting.parse_header

    def counting(raw: bytes):  # the service's process must not parse what the worker validated
        parsed.append(raw)
        return real(raw)

    monkeypatch.setattr(accepting, "parse_header", counting)
    with Spool(data) as spool:
        done, _ = await scans(spool, data, section("ict", drop), section("fct", drop, "csv"))
        assert done == 2 and len(spool.keys("pending")) == 2
        assert spool.read(SAMPLE_ID) == SAMPLE
        assert spool.info(SAMPLE_ID).source == str(drop / "a.json")
    assert parsed == []

