"""Times the spool keeps in a report file's mtime: when it was sent (keep_sent_days counts from
there, issue 14 item 11) and when a waiting report is due (read at start-up without a sidecar per
report, issue 18 item 5)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.opening import WAITS_IN_MTIME
from stationflow.engine.spool.store import Spool

DAY = 86400.0


def _file(data_dir: Path, state: str, key: str) -> Path:
    [path] = (data_dir / "spool" / state).glob(f"{key}.*.json")
    return path


def test_keep_sent_days_counts_from_the_sending_not_the_accept_across_a_restart(data_dir: Path) -> None:
    with Spool(data_dir, keep_sent_days=1) as spool:
        old, recent = (spool.accept(make_report_bytes(i, seed=41)).key for i in range(2))
        for key in (old, recent):  # both accepted three days ago (an outage), sent just now
            path = _file(data_dir, "pending", key)
            os.utime(path, (time.time() - 3 * DAY, time.time() - 3 * DAY))
        while (claim := spool.claim_next()) is not None:
            spool.fire(claim.key, "accepted")
    sent_at = _file(data_dir, "sent", old).stat().st_mtime
    assert abs(sent_at - time.time()) < 600
    two_days_ago = time.time() - 2 * DAY  # as if "old" had been sent two days ago
    os.utime(_file(data_dir, "sent", old), (two_days_ago, two_days_ago))

    with Spool(data_dir, keep_sent_days=1) as spool:  # restarted between sending and pruning
        assert spool.prune_sent() == 1
        assert spool.keys("sent") == [recent]
        assert spool.info(recent).history[-1]["to"] == "sent"
    assert not list((data_dir / "spool" / "sent").glob(f"{old}.*"))


def test_a_waiting_report_is_due_when_it_was_due_after_a_restart_without_its_sidecar(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        key = spool.accept(make_report_bytes(1, seed=42)).key
        claim = spool.claim_next()
        assert claim is not None
        spool.fire(key, "transient_error", error="503", next_attempt_s=3600.0, count_attempt=True)
    due = _file(data_dir, "retry_wait", key).stat().st_mtime
    assert 3000 < due - time.time() <= 3600
    (data_dir / "spool" / "meta" / f"{key}.json").unlink()  # start-up must not need it
    with Spool(data_dir) as spool:
        wait = spool.next_due_in()
        assert wait is not None and 3000 < wait <= 3600
        assert spool.release_due() == 0


def test_a_spool_from_before_the_marker_reads_due_times_from_sidecars_once(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        keys = [spool.accept(make_report_bytes(i, seed=43)).key for i in range(3)]
        while (claim := spool.claim_next()) is not None:
            spool.fire(claim.key, "transient_error", error="503", next_attempt_s=3600.0, count_attempt=True)
    (data_dir / "spool" / WAITS_IN_MTIME).unlink()  # as an older version left it: mtime = accept time
    for key in keys:
        os.utime(_file(data_dir, "retry_wait", key), (time.time() - DAY, time.time() - DAY))
    with Spool(data_dir) as spool:
        wait = spool.next_due_in()
        assert wait is not None and 3000 < wait <= 3600  # from the sidecars, not due at once
        assert spool.release_due() == 0
    assert (data_dir / "spool" / WAITS_IN_MTIME).exists()
    for key in keys:  # and the files now carry their due times for the next start
        assert 3000 < _file(data_dir, "retry_wait", key).stat().st_mtime - time.time() <= 3600
