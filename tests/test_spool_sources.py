"""Where a report came from, without a sidecar per report (issue 18 item 2): one journal line per
accepted report, found again after a restart, compacted once reports are pruned."""

from __future__ import annotations

from pathlib import Path

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.sidecar import SOURCES_LOG
from stationflow.engine.spool.store import Spool


def test_sources_survive_a_restart_and_the_journal_drops_pruned_reports(data_dir: Path) -> None:
    names = ["/drop/a.json", "/drop/b b.json", "/drop/caf\udce9\n.json"]  # a space, a non-UTF-8 byte, a newline
    with Spool(data_dir) as spool:
        keys = [r.key for r in spool.accept_many([(make_report_bytes(i, seed=61), n) for i, n in enumerate(names)])]
        anonymous = spool.accept(make_report_bytes(9, seed=61)).key
    journal = data_dir / "spool" / "meta" / SOURCES_LOG
    assert len(journal.read_bytes().splitlines()) == 3
    with Spool(data_dir, keep_sent_days=0) as spool:
        assert [spool.info(k).source for k in keys] == names
        assert spool.info(anonymous).source is None
        spool._meta.compact_bytes = 0  # compact at every prune
        while (claim := spool.claim_next()) is not None:
            if claim.key != keys[2]:
                spool.fire(claim.key, "accepted")
            else:
                spool.fire(claim.key, "transient_error", error="503", next_attempt_s=3600.0, count_attempt=True)
        assert spool.prune_sent() == 3
        assert spool.info(keys[2]).source == names[2]
    assert len(journal.read_bytes().splitlines()) == 1


def test_a_torn_journal_line_costs_only_that_source(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        first = spool.accept(make_report_bytes(1, seed=62), source="/drop/one.json").key
    journal = data_dir / "spool" / "meta" / SOURCES_LOG
    with open(journal, "ab") as f:
        f.write(b'["torn-by-a-cra')  # a crash mid-append
    with Spool(data_dir) as spool:
        second = spool.accept(make_report_bytes(2, seed=62), source="/drop/two.json").key
        assert spool.info(first).source == "/drop/one.json"
        assert spool.info(second).source == "/drop/two.json"  # the open ended the torn line


def test_a_journal_that_cannot_be_used_costs_the_sources_never_a_report(data_dir: Path) -> None:
    Spool(data_dir).close()
    journal = data_dir / "spool" / "meta" / SOURCES_LOG
    journal.mkdir()  # neither readable nor appendable as a file
    with Spool(data_dir, keep_sent_days=0) as spool:
        key = spool.accept(make_report_bytes(1, seed=63), source="/drop/one.json").key
        assert spool.info(key).source is None and spool.state_of(key) == "pending"
        claim = spool.claim_next()
        assert claim is not None
        spool.fire(key, "accepted")
        spool._meta.compact_bytes = 0
        assert spool.prune_sent() == 1  # compaction fails quietly; the prune stands


def test_pruning_without_a_journal_is_quiet(data_dir: Path) -> None:
    with Spool(data_dir, keep_sent_days=0) as spool:
        spool.accept(make_report_bytes(1, seed=64))
        claim = spool.claim_next()
        assert claim is not None
        spool.fire(claim.key, "accepted")
        spool._meta.compact_bytes = 0
        assert spool.prune_sent() == 1
    assert not (data_dir / "spool" / "meta" / SOURCES_LOG).exists()
