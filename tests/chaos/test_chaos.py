"""Chaos: the real ``stationflow run`` against the emulator on a real disk, broken on purpose.

After each scenario the one rule is checked off the disk (``harness.check``): every file dropped
in the watch folder is at the server, or in the spool, or its source is still waiting (watch folder
or rejected folder); duplicates at the server only as the same id again. Each scenario prints its
figure (run pytest with ``-s`` to see them). The quick form is sized for CI (the whole file in
well under 5 minutes on 2 shared cores); ``--long`` multiplies reports, kills, restart cycles and
outage lengths by 10 for soak runs.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

import stationflow.engine.intake.post_actions as intake_module  # prune_archive reads the wall clock here
import stationflow.engine.spool.store as spool_module
from stationflow.engine.config_file import load_config, resolved
from stationflow.engine.control.client import ControlClient
from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.spool.store import Spool
from stationflow.engine.station import open_spool
from stationflow.engine.upload.uploader import Uploader
from tests.chaos.harness import (
    Dropper,
    Station,
    fill_disk,
    mount_tmpfs,
    partial_files,
    read_sidecar,
    report_file,
    scan_spool,
    spool_counts,
    unmount,
    wait_for,
)


def figure(number: int, text: str) -> None:
    print(f"\n[chaos {number}] {text}", flush=True)


# ---------------------------------------------------------------------------- 1. kill -9

def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path, emulator: Emulator, stations: list[Station],
                                                scale: int) -> None:
    """``kill -9`` of the service (and its workers) at random moments — during start-up, recovery,
    copying, converting, accepting, sending — then a restart, while files keep arriving."""
    files, kills = 300 * scale, 20 * scale
    rng = random.Random(20261102)
    station = Station(tmp_path / "station", emulator.url, seed=1, concurrency=4)
    stations.append(station)
    started = time.monotonic()
    dropper = Dropper(station, files, per_s=files / (kills * 1.6))
    dropper.start()
    while_running = 0
    for kill in range(kills):
        station.start(wait=False)
        # One kill in four lands early (interpreter start, lock, spool recovery), the rest while working:
        # those wait until the service runs (start-up takes seconds on a busy machine or under coverage,
        # and a fixed delay then killed every start before anything was sent).
        if kill % 4 == 0:
            time.sleep(rng.uniform(0.1, 0.7))
        else:
            station.wait_running(60 * scale)
            time.sleep(rng.uniform(0.2, 2.0))
        while_running += station.is_running()
        station.kill()
        station.check(emulator).assert_ok(f"after kill {kill + 1}")
    dropper.finish()
    sent_during_kills = len(emulator.received_ids())
    station.start()
    verdict = station.drain_and_check(emulator, 120 * scale, "at the end")
    assert verdict.on_server == files
    assert sent_during_kills > 0, "nothing was sent between the kills: the kills proved nothing"
    stats = emulator.stats()
    figure(1, f"{kills} × kill -9 ({while_running} while running, {kills - while_running} during start-up) "
              f"over {files} files in {time.monotonic() - started:.0f} s: 0 lost — {verdict.line()}; "
              f"server posts {stats.posts}")


# ---------------------------------------------------------------------------- 2. 30% faults

class FaultRotation(threading.Thread):
    """Every 0.25 s another error: 500, 502, 503 (Retry-After 0.2 s) or 429 with a Retry-After of three
    times the backoff cap (the station must not wait longer than its cap)."""

    def __init__(self, emulator: Emulator, cap_s: float) -> None:
        super().__init__(daemon=True, name="faults")
        self.emulator, self.cap_s = emulator, cap_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        rng = random.Random(5)
        while not self.stop_event.wait(0.25):
            status = rng.choice([500, 502, 503, 429])
            retry_after = {503: 0.2, 429: 3 * self.cap_s}.get(status)
            self.emulator.set_faults(error_status=status, retry_after=retry_after)


class BackoffWatch(threading.Thread):
    """Reads the sidecars of reports in ``retry_wait/`` twice a second: the wait each was given is
    ``next_attempt_epoch`` minus the time of the transition into ``retry_wait`` in its history."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(daemon=True, name="backoff-watch")
        self.data_dir = data_dir
        self.stop_event = threading.Event()
        self.waits: list[float] = []

    def sample(self) -> None:
        folder = self.data_dir / "spool" / "retry_wait"
        if not folder.is_dir():
            return
        for entry in os.scandir(folder):
            meta = read_sidecar(self.data_dir, entry.name.split(".", 1)[0])
            history = [h for h in meta.get("history", []) if h.get("to") == "retry_wait"]
            if "next_attempt_epoch" in meta and history:
                at = datetime.fromisoformat(history[-1]["at"]).timestamp()
                self.waits.append(meta["next_attempt_epoch"] - at)

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            self.sample()


def test_30_percent_server_faults_lose_nothing_and_backoff_stays_capped(
        tmp_path: Path, emulator: Emulator, stations: list[Station], scale: int) -> None:
    """5xx, 429 with Retry-After, connections reset before the report is read, and acknowledgements
    lost after it was stored — about 30% of posts — then the faults stop."""
    reports, cap = 1000 * scale, 1.0
    station = Station(tmp_path / "station", emulator.url, seed=2, retry_initial_s=0.05, retry_max_s=cap,
                      offline_after=8)
    stations.append(station)
    emulator.set_faults(error_rate=0.16, error_status=503, drop_before_rate=0.07, drop_after_rate=0.10)
    rotation, watch = FaultRotation(emulator, cap), BackoffWatch(station.data_dir)
    rotation.start()
    watch.start()
    started = time.monotonic()
    station.start()
    dropper = Dropper(station, reports, per_s=200)
    dropper.start()
    dropper.finish()
    wait_for(lambda: station.waiting_sources() == 0 and emulator.stats().posts >= reports, 120 * scale,
             "every file taken and a post per report", lambda: station.missing_at_server(emulator))
    rotation.stop_event.set()
    rotation.join()
    faulty = emulator.stats()
    emulator.clear_faults()
    faults_stopped = time.monotonic()
    wait_for(lambda: station.all_at_server(emulator), 60 * scale, "every report at the server once the faults stopped",
             lambda: station.missing_at_server(emulator))
    drained_s = time.monotonic() - faults_stopped
    watch.stop_event.set()
    watch.join()
    watch.sample()
    station.stop_and_check(emulator)
    stats = emulator.stats()
    injected = faulty.errors_injected + faulty.dropped_before + faulty.dropped_after
    fault_share = injected / faulty.posts
    assert 0.2 <= fault_share <= 0.4, f"the faults were {fault_share:.0%} of posts, not about 30%"
    assert faulty.dropped_after > 0 and faulty.dropped_before > 0 and faulty.errors_injected > 0
    assert watch.waits, "no report was ever seen waiting in retry_wait: the backoff was not observed"
    assert max(watch.waits) <= cap + 0.01, f"a backoff of {max(watch.waits):.3f} s exceeded the cap of {cap} s"
    # A report is stored twice only when its acknowledgement was lost: replace-by-id, never a new id.
    assert stats.duplicates <= stats.dropped_after
    figure(2, f"{reports} reports, {faulty.posts} posts under faults, {fault_share:.0%} faulted "
              f"({faulty.errors_injected} 5xx/429, {faulty.dropped_before} resets, {faulty.dropped_after} lost acks): "
              f"0 lost, {stats.duplicates} duplicates by id; longest backoff seen {max(watch.waits):.2f} s "
              f"(cap {cap:g} s, {len(watch.waits)} samples, Retry-After up to {3 * cap:g} s); all sent "
              f"{drained_s:.1f} s after the faults stopped; {time.monotonic() - started:.0f} s in all")


# ---------------------------------------------------------------------------- 3. a long outage

def test_a_long_outage_then_the_backlog_drains_at_the_configured_rate(
        tmp_path: Path, emulator: Emulator, stations: list[Station], scale: int) -> None:
    """The server is gone (connection refused) while files keep coming; intake keeps spooling, the
    uploader goes offline and probes; when the server is back the backlog drains at ``rate_per_s``."""
    outage_s, rate = 12.0 * scale, 40.0
    station = Station(tmp_path / "station", emulator.url, seed=3, rate_per_s=rate, retry_max_s=0.5)
    stations.append(station)
    station.start()
    station.drop(20)
    wait_for(lambda: station.all_at_server(emulator), 30, "the first reports at the server",
             lambda: station.missing_at_server(emulator))
    before = len(emulator.received_ids())
    emulator.go_down()
    down_at = time.monotonic()
    dropper = Dropper(station, int(outage_s * 15), per_s=15)
    dropper.start()
    dropper.finish()
    wait_for(lambda: station.waiting_sources() == 0, 30, "intake to take every file while the server is down",
             lambda: f"{station.waiting_sources()} waiting; {station.log_tail()}")
    time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
    status = ControlClient(station.data_dir).call("status")
    assert status["uploader"]["mode"] == "offline", status["uploader"]
    assert status["service"]["state"] == "running", status["service"]
    backlog = len(station.dropped) - before
    assert len(emulator.received_ids()) == before
    emulator.come_back()
    back_at = time.monotonic()
    samples: list[tuple[float, int]] = []

    def drained() -> bool:
        samples.append((time.monotonic(), len(emulator.received_ids())))
        return samples[-1][1] == len(station.dropped)

    wait_for(drained, 60 * scale, "the backlog to drain", lambda: station.missing_at_server(emulator), interval=0.02)
    first = next(t for t, n in samples if n > before)
    last = next(t for t, n in samples if n == len(station.dropped))
    measured = (backlog - 1) / (last - first)
    station.stop_and_check(emulator)
    assert 0.7 * rate <= measured <= 1.2 * rate, f"drained at {measured:.1f}/s; rate_per_s is {rate:g}"
    figure(3, f"server down {back_at - down_at:.0f} s while {backlog} "
              f"files arrived (all spooled; uploader offline, service running): 0 lost; sending resumed "
              f"{first - back_at:.2f} s after the server came back; backlog drained at {measured:.1f}/s "
              f"(rate_per_s {rate:g})")


# ---------------------------------------------------------------------------- 4. disk full

@pytest.fixture
def small_disk(tmp_path: Path, scale: int) -> Iterator[Path | None]:
    """A small tmpfs for the data dir when this runs as root (4 MiB; 32 MiB for --long, room for every
    report and archived source once the ballast is gone); else None (ENOSPC is injected).
    ``STATIONFLOW_CHAOS_NO_MOUNT=1`` forces the fallback."""
    folder = tmp_path / "smalldisk"
    if os.environ.get("STATIONFLOW_CHAOS_NO_MOUNT") != "1" and mount_tmpfs(folder, "4m" if scale == 1 else "32m"):
        yield folder
        unmount(folder)
    else:
        yield None


def test_disk_full_pauses_intake_and_resumes_when_space_returns(
        tmp_path: Path, emulator: Emulator, stations: list[Station], scale: int, small_disk: Path | None) -> None:
    """The data dir's disk fills up while 30 KB files arrive. Real: a small tmpfs filled with a ballast
    file (root); fallback: every fsync of the service fails with ENOSPC while a flag file exists.
    Half the posts fail meanwhile (503), so retries must be recorded on the full disk too. Sources
    must stay where they are, no partial file may appear in the spool, and everything must go on
    by itself once the ballast is deleted (or the flag removed) and the server answers again."""
    files = 40 * scale
    flag = tmp_path / "enospc.flag"
    if small_disk is not None:
        data_dir, how = small_disk / "data", f"{'4' if scale == 1 else '32'} MiB tmpfs filled up"
    else:
        data_dir, how = tmp_path / "data", "injected ENOSPC on fsync"
    station = Station(tmp_path / "station", emulator.url, seed=4, data_dir=data_dir, report_bytes=30_000,
                      enospc_flag=None if small_disk is not None else flag,
                      spool={"max_bytes": "1GB"})
    stations.append(station)
    station.start()
    station.drop(3)
    wait_for(lambda: station.all_at_server(emulator), 30, "the first reports at the server",
             lambda: station.missing_at_server(emulator))
    # Half the posts fail while the disk is full: the retry's sidecar cannot be written either.
    emulator.set_faults(error_rate=0.5, error_status=503)
    if small_disk is not None:
        ballast = small_disk / "ballast"
        fill_disk(ballast, leave_free=250_000)
    else:
        flag.write_text("full")
    full_at = time.monotonic()
    station.drop(files)
    # Let it run into the wall: no file may be taken for a while (only the few that fitted).
    progress: list[int] = []

    def stuck() -> bool:
        progress.append(station.waiting_sources())
        return len(progress) > 40 and progress[-1] == progress[-40] and progress[-1] > 0

    wait_for(stuck, 60, "intake to stop taking files on the full disk",
             lambda: f"waiting {progress[-5:]}; {station.log_tail()}", interval=0.1)
    waiting_when_full = station.waiting_sources()
    assert waiting_when_full >= files // 2, f"only {waiting_when_full} of {files} sources left on a full disk"
    assert station.sources_intact() == [], "a source file in the watch folder was changed"
    assert partial_files(station.data_dir) == [], "a partial report file in the spool"
    status = ControlClient(station.data_dir).call("status")
    note = status["intake"]["paused_reason"] or status["intake"]["intakes"]["chaos"]["last_error"]
    assert status["service"]["state"] in ("running", "degraded")
    full_s = time.monotonic() - full_at
    if small_disk is not None:
        ballast.unlink()
    else:
        flag.unlink()
    emulator.clear_faults()
    freed_at = time.monotonic()
    wait_for(lambda: station.all_at_server(emulator) and station.waiting_sources() == 0, 120 * scale,
             "everything to go on once space returned", lambda: station.missing_at_server(emulator))
    resumed_s = time.monotonic() - freed_at
    station.stop_and_check(emulator)
    assert partial_files(station.data_dir) == []
    reason = note.get("reason") if isinstance(note, dict) else note
    figure(4, f"{how}: {files + 3} files of 30 KB; {waiting_when_full} sources left in place for "
              f"{full_s:.0f} s, 0 partial files in the spool (intake said: {str(reason)[:120]!r}); everything "
              f"at the server {resumed_s:.1f} s after space returned: 0 lost")


# ---------------------------------------------------------------------------- 5. corrupt spool files

def test_corrupt_spool_files_are_quarantined_and_the_rest_flows(
        tmp_path: Path, emulator: Emulator, stations: list[Station], scale: int) -> None:
    """A crash leaves damaged files: reports truncated or with a flipped byte, a half-written file in
    ``spool/tmp``, an unreadable sidecar. Each damaged report is quarantined with its reason,
    byte for byte as found; nothing is deleted; the rest is sent."""
    files, damaged = 100 * scale, 10 * scale
    station = Station(tmp_path / "station", emulator.url, seed=5)
    stations.append(station)
    emulator.go_down()
    station.start()
    station.drop(files)
    wait_for(lambda: station.waiting_sources() == 0 and sum(spool_counts(station.data_dir)[s]
                                                            for s in ("pending", "retry_wait")) == files,
             60 * scale, "every report spooled", lambda: str(spool_counts(station.data_dir)))
    station.kill()
    rng = random.Random(55)
    spool = scan_spool(station.data_dir)
    victims = rng.sample(sorted(spool), damaged + 2)
    corrupted: dict[str, bytes] = {}
    for n, key in enumerate(victims[:damaged]):
        path = spool[key][0].path
        data = path.read_bytes()
        if n % 2:
            bad = data[: len(data) // 2]  # truncated
        else:
            i = rng.randrange(len(data))  # one byte flipped; may even still be valid JSON
            bad = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        path.write_bytes(bad)
        corrupted[key] = bad
    half_key = victims[damaged]
    half = spool[half_key][0].path.read_bytes()
    leftover = station.data_dir / "spool" / "tmp" / f"{half_key}.{'0' * 8}.json.tmp"
    leftover.write_bytes(half[: len(half) // 3])
    meta_key = victims[damaged + 1]
    (station.data_dir / "spool" / "meta" / f"{meta_key}.json").write_bytes(b'{"attempts": 3, "hist')
    files_before = sum(len(p) for p in scan_spool(station.data_dir).values()) + 1
    emulator.come_back()
    station.start()
    wait_for(lambda: len(emulator.received_ids()) == files - damaged
             and spool_counts(station.data_dir)["quarantined"] == damaged + 1, 60 * scale,
             "the whole reports sent and the damaged ones quarantined",
             lambda: f"{len(emulator.received_ids())} at the server; {dict(spool_counts(station.data_dir))}")
    station.stop_and_check(emulator)
    after = scan_spool(station.data_dir)
    assert sum(len(p) for p in after.values()) == files_before, "a file in the spool was deleted"
    received = emulator.received_ids()
    for key, bad in corrupted.items():
        assert [p.state for p in after[key]] == ["quarantined"], key
        assert after[key][0].path.read_bytes() == bad, f"quarantined report {key} was changed"
        assert key not in received, f"damaged report {key} was sent"
        assert "checksum" in (read_sidecar(station.data_dir, key).get("last_error") or ""), key
    adopted = [k for k in after if k.startswith(f"{half_key}~")]
    assert len(adopted) == 1 and after[adopted[0]][0].path.read_bytes() == half[: len(half) // 3]
    assert "tmp/" in read_sidecar(station.data_dir, adopted[0]).get("last_error", "")
    assert half_key in received and meta_key in received
    figure(5, f"{files} reports, {damaged} damaged by a crash ({damaged // 2} truncated, {damaged - damaged // 2} "
              f"with a flipped byte) + 1 half-written tmp file + 1 unreadable sidecar: {damaged + 1} quarantined "
              f"with their reason, byte for byte; {len(received)} sent; 0 files deleted; 0 lost")


# ---------------------------------------------------------------------------- 6. restart loop

def test_restart_loop_makes_progress_every_cycle(tmp_path: Path, emulator: Emulator, stations: list[Station],
                                                 scale: int) -> None:
    """The service is stopped (SIGTERM, the graceful stop) and started again every 1–3 s of running,
    for a minute (quick) or ten (--long), while files keep arriving. Every cycle must move something
    forward: files taken from the watch folder or reports acknowledged by the server."""
    duration = 60.0 * scale
    rng = random.Random(66)
    station = Station(tmp_path / "station", emulator.url, seed=6, grace_s=2.0)
    stations.append(station)
    dropper = Dropper(station, int(duration * 12), per_s=12)
    dropper.start()
    started = time.monotonic()
    cycles: list[tuple[int, int, float]] = []
    while time.monotonic() - started < duration:
        station.start()
        taken0 = len(station.dropped) - station.waiting_sources()
        sent0 = len(emulator.received_ids())

        def progress() -> tuple[int, int]:
            return (len(station.dropped) - station.waiting_sources() - taken0,
                    len(emulator.received_ids()) - sent0)

        time.sleep(rng.uniform(1.0, 3.0))  # not a synchronisation: the stop lands at a random moment
        # ... and not before this run moved something: a start (spool recovery, a converter worker's
        # start) can take longer than that on a busy machine. Bounded: a run that makes no progress fails.
        wait_for(lambda: any(progress()), 30, f"progress in cycle {len(cycles) + 1}", station.log_tail)
        _, stop_s = station.stop()
        taken, sent = progress()
        cycles.append((taken, sent, stop_s))
        assert taken > 0 or sent > 0, f"cycle {len(cycles)} made no progress: {station.log_tail()}"
        station.check(emulator).assert_ok(f"after restart {len(cycles)}")
    dropper.stop_event.set()
    dropper.finish()
    station.start()
    verdict = station.drain_and_check(emulator, 120 * scale)
    stops = sorted(s for _, _, s in cycles)
    assert stops[-1] < 2.0 + 5.0, f"a graceful stop took {stops[-1]:.1f} s (grace_s 2)"
    figure(6, f"{len(cycles)} restarts in {duration:.0f} s, {len(station.dropped)} files: every cycle made "
              f"progress (fewest taken+sent in a cycle: {min(t + s for t, s, _ in cycles)}); graceful stop "
              f"median {stops[len(stops) // 2]:.2f} s, max {stops[-1]:.2f} s; 0 lost — {verdict.line()}")


# ---------------------------------------------------------------------------- 7. clock jumps

DAY = 86400.0
YEAR = 365 * DAY


class WallClock:
    """The ``time`` module as ``engine.spool`` and ``engine.intake`` see it, with a wall clock that
    can jump. ``time.monotonic`` is left alone, as the kernel leaves CLOCK_MONOTONIC alone when
    someone sets the date."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


async def test_wall_clock_jumps_delete_nothing_early_and_strand_nothing(
        tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated in-process (the system clock cannot be set safely from a test): ``time.time`` as seen
    by ``engine.spool`` and ``engine.intake`` is shifted back a day and forward a year; ``time.monotonic``
    is not (the kernel does not move CLOCK_MONOTONIC when the date is set).

    While the spool is open: sent reports (keep_sent_days 7) and an archived source (30 days) are
    not deleted after either jump, and reports in ``retry_wait`` are released within
    ``upload.retry.max_s``. Across a restart: the spool is reopened under a clock a year ahead and
    a day behind the one its sidecars' ``next_attempt_epoch`` were written with; no report may wait
    longer than ``max_s``, and a real uploader then sends them all to the emulator within it.
    (Pruning at a start-up under a clock a year ahead is not checked: a station cannot tell a wrong
    clock at boot from a year powered off, and sent reports are already at the server.)
    """
    clock = WallClock()
    monkeypatch.setattr(spool_module, "time", clock)
    monkeypatch.setattr(intake_module, "time", clock)
    cap = 1.0
    station = Station(tmp_path / "station", emulator.url, seed=7, retry_max_s=cap, spool={"keep_sent_days": 7})
    cfg = resolved(load_config(station.config_path), station.config_path)
    archived = station.data_dir / "archive" / date.today().isoformat() / "chaos" / f"{'0' * 64}-r000001.json"
    archived.parent.mkdir(parents=True)
    archived.write_bytes(b"{}")
    sent_dir = station.data_dir / "spool" / "sent"

    def to_retry_wait(spool: Spool) -> None:
        while (claim := spool.claim_next()) is not None:
            spool.fire(claim.key, "transient_error", error="503 (simulated)", next_attempt_s=cap, count_attempt=True)

    # While the spool is open: 10 sent, 20 waiting for their next attempt (the cap).
    spool = open_spool(cfg)
    for i in range(30):
        spool.accept(report_file(i, seed=7)[1])
    for _ in range(10):
        spool.fire(spool.claim_next().key, "accepted")  # type: ignore[union-attr]
    to_retry_wait(spool)
    intake_clock_ref = (time.time(), time.monotonic())  # what a running intake took at its start
    waits = []
    for jump in (-DAY, +YEAR):
        clock.offset = jump
        assert spool.prune_sent() == 0, f"sent reports pruned after a jump of {jump / DAY:+.0f} days"
        today = (datetime.now() + timedelta(seconds=jump)).date()
        assert intake_module.prune_archive(station.data_dir, 30, clock_ref=intake_clock_ref, today=today) == 0
        waits.append(spool.next_due_in() or 0.0)
    clock.offset = -DAY
    started = time.monotonic()
    while spool.counts()["retry_wait"] and time.monotonic() - started < cap + 1.0:
        spool.release_due()
        time.sleep(0.02)
    released_in = time.monotonic() - started
    assert spool.counts()["retry_wait"] == 0, "reports stuck in retry_wait after the clock jumped back a day"
    assert len(list(sent_dir.iterdir())) == 10 and archived.exists()

    # Across restarts: sidecars written with the right clock, read under a clock a year ahead and a day behind.
    clock.offset = 0.0
    to_retry_wait(spool)
    spool.close()
    restart_waits = {}
    for label, offset in (("a year ahead", YEAR), ("a day behind", -DAY)):
        clock.offset = offset
        spool = open_spool(cfg)
        restart_waits[label] = spool.next_due_in() or 0.0
        assert spool.counts()["retry_wait"] == 20 and spool.counts()["sent"] == 10
        spool.close()
    assert max(restart_waits.values()) <= cap + 0.05, \
        f"after a restart under a jumped clock the next attempt is {restart_waits} s away; the cap is {cap:g} s"
    spool = open_spool(cfg)  # still a day behind
    waiting = set(spool.keys("retry_wait"))
    uploader = Uploader(spool, cfg.server, cfg.upload)

    try:
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            with anyio.fail_after(cap + 5):
                while not waiting <= emulator.received_ids():
                    await anyio.sleep(0.02)
            uploader.drain()
        sent_in = time.monotonic() - began
    finally:
        spool.close()
    assert len(list(sent_dir.iterdir())) == 30 and archived.exists()
    figure(7, f"wall clock -1 day / +1 year, while running and across restarts: 0 sent reports or archived "
              f"sources deleted early; next attempt never further than {max(waits + list(restart_waits.values())):.2f} s "
              f"(cap {cap:g} s); released {released_in:.2f} s after a jump back; after a restart a day behind, "
              f"the {len(waiting)} waiting reports were at the server {sent_in:.2f} s after the uploader started")
