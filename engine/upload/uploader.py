"""The uploader: takes reports from the spool through the ``send`` trigger and posts them as WSJF.

Each answer is one *outcome* of the ``upload`` action; the report lifecycle's sending state maps
it to a trigger (``outcomes:`` in ``machines/report.yaml``), so a site decides where each answer
leads. With the shipped machine:

=====================================  ===========================  ====================================
answer (outcome)                       the report                   the uploader
=====================================  ===========================  ====================================
2xx (acknowledged)                     ``accepted`` → sent          counts consecutive failures back to 0
400, 413, 422, other 4xx (refused)     ``rejected`` → failed        goes on
401, 403 (bad token), 404, 3xx (URL)   ``recover`` → pending        pauses all sending until the config
  (paused)                                                          changes, ``queue resume``, or a long
                                                                    wait (hold.py); a probe cannot lift it
TLS failure (paused)                   ``recover`` → pending        pauses; probes until fixed
2xx with an HTML page (a proxy's)      ``transient_error``          as any transient failure
408, 429, 5xx, refused, reset          ``transient_error``          backoff (Retry-After honoured); after
  (transient)                          → retry_wait                 ``offline_after`` in a row: offline, one
no answer within the state's timeout   ``on_timeout`` of the state  probe at a time until the server answers
=====================================  ===========================  ====================================

A busy server (``BUSY_IN_A_ROW`` answers 429/503 with Retry-After, none acknowledged between) makes
the whole station wait its Retry-After, then post one report at a time until one is acknowledged,
at its own pace (pace.py); probes of a server that is down wait a full-jitter backoff. Together they
keep a fleet back from an outage from hitting the server in the same second (bench_fleet.py).

At most ``answers.BODY_LIMIT`` (64 KiB) of any answer is read. The bytes posted are the bytes the
spool accepted, so a report whose answer never came is sent again with the same id, never a new one.
One pooled ``httpx.AsyncClient`` serves every worker; reports go to its connection pool through
``client.ReportPoster``, past the client layers the uploader never uses.
"""

from __future__ import annotations

import asyncio
import collections
import math
import logging
import random
import ssl
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import anyio
import httpx

from ..errors import IllegalTransition
from ..backoff import backoff_delay
from ..lifecycle import Lifecycle, load_lifecycle
from .answers import Answer, classify_exception, classify_reply, read_reply
# Re-exported: the service, the CLI and the benchmarks import these from here.
from .client import PROBE_PATH as PROBE_PATH, REPORT_PATH as REPORT_PATH, build_client as build_client
from .client import ReportPoster, loop_now, skip_sniffio_lookups as skip_sniffio_lookups
from .hold import Hold, describe
from .pace import Pace, TokenBucket
from .stall import StallGate
from ..spool.store import Claim, Spool
from ...schemas.config import RetrySection, ServerSection, UploadSection, masked_url

log = logging.getLogger(__name__)


#: The states of the shipped connection lifecycle (``machines/connection.yaml``). The uploader itself
#: finds them by role (see ``Link``), so a site file may rename them.
ONLINE, OFFLINE, PAUSED, STOPPED = "online", "offline", "paused", "stopped"
#: Busy answers (429/503 with Retry-After) in a row, no acknowledgement between, that make the whole
#: station wait and slow down: a busy server answers so to most posts, a random one to a few.
BUSY_IN_A_ROW = 2
# The GIL switch interval for the service process. At Python's default (5 ms) a thread that gives up
# the GIL for a system call (intake's accept: write, fsync, rename) waits up to 5 ms to get it back
# from a busy event loop, once per call: measured, accept latency at a steady 50 reports/s went from
# ~3 ms to ~290 ms at p95. 1 ms keeps threads and the loop taking turns without thrashing.
SWITCH_INTERVAL_S = 0.001


class Backoff:
    """Capped exponential backoff with jitter. Never returns more than ``max_s``."""

    def __init__(self, retry: RetrySection, rng: random.Random | None = None) -> None:
        self.initial = retry.initial_s
        self.cap = retry.max_s
        self.multiplier = retry.multiplier
        self.jitter = retry.jitter
        self._rng = rng or random.Random()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1); safe at any
        attempt count (engine/backoff.py caps the exponent: no OverflowError at attempt 1025)."""
        return backoff_delay(attempt, initial_s=self.initial, max_s=self.cap, multiplier=self.multiplier,
                             jitter=self.jitter, rng=self._rng, retry_after=retry_after)

    def full_jitter(self, attempt: int) -> float:
        """Anywhere from 0 to the capped exponential wait ("full jitter"): for the probe of a server
        that is down, so a fleet that lost it at the same instant does not find it again together."""
        base = backoff_delay(attempt, initial_s=self.initial, max_s=self.cap, multiplier=self.multiplier,
                             jitter=0.0, rng=self._rng)
        return self._rng.uniform(0.0, base)

    def spread(self, retry_after: float) -> float:
        """The server's Retry-After, spread over as long again, at most a second more (never sooner;
        capped): stations told the same by a busy server do not all come back in the same instant."""
        return min(retry_after + self._rng.uniform(0.0, min(retry_after, 1.0)), self.cap)


class Latencies:
    """The last 2,000 upload round trips, for p50/p95/p99 in ``status``."""

    def __init__(self) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=2000)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def percentiles(self) -> dict[str, float | None]:
        data = sorted(self._samples)
        if not data:
            return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
        def pick(q: float) -> float:
            return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 2)

        return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


class Link:
    """The connection lifecycle as the uploader's mode: states found by role, moved by trigger.

    ``online`` is the initial state (the only one that sends); ``offline``, ``paused`` and
    ``stopped`` are where ``unreachable``, ``refused`` and ``stop`` lead from it.
    """

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.online = lifecycle.initial
        self.offline = lifecycle.next_state(self.online, "unreachable")
        self.paused = lifecycle.next_state(self.online, "refused")
        self.stopped = lifecycle.next_state(self.online, "stop")

    def after(self, state: str, trigger: str) -> str:
        """Where ``trigger`` leads from ``state``; the same state when the machine has no such move
        (``refused`` again while paused: only the reason changes)."""
        try:
            return self.lifecycle.next_state(state, trigger)
        except IllegalTransition:
            return state


class Uploader:
    """Upload workers, the retry scheduler and the server probe, around one spool.

    ``run()`` serves until ``drain()`` is called (or it is cancelled). State is readable through
    ``status()`` at any time; ``mode`` is online, offline (server unreachable, probing) or paused
    (the server refused the token or the URL; needs a person or a config reload).
    """

    def __init__(self, spool: Spool, server: ServerSection, upload: UploadSection, *,
                 client: httpx.AsyncClient | None = None, rng: random.Random | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.spool = spool
        self.server = server
        self.upload = upload
        self._own_client = client is None
        self._retired_clients: list[httpx.AsyncClient] = []  # replaced by a reconfiguration, to close
        self.client = client or build_client(server, upload)
        self._poster_of: ReportPoster | None = None  # posts through ``self.client`` (``_poster``)
        self.backoff = Backoff(upload.retry, rng)
        self.bucket = TokenBucket(upload.rate_per_s)
        self.pace = Pace()  # the station's own rate after a busy server's answers (pace.py)
        self.latencies = Latencies()
        machines = getattr(spool, "machines", {})
        self.link = Link(machines.get("connection") or load_lifecycle("connection"))
        self.mode = self.link.online
        self.reason: str | None = None
        self.since: str | None = None  # wall-clock time of the last mode change, for a person to read
        self.consecutive_failures = 0
        self.counters = collections.Counter[str]()
        self.in_flight = 0
        self.last_error: str | None = None
        self._on_event = on_event
        self._resume = anyio.Event()
        self.hold = Hold()
        self._not_before = 0.0  # monotonic: no post before (a busy server's Retry-After, for the station)
        # One post at a time until one is acknowledged: after a busy server's Retry-After and when the
        # server answers again after an outage, so a fleet's first round is one post per station, not
        # ``concurrency`` refused ones.
        self._cautious = False
        self._busy_in_a_row = 0  # 429/503 answers with Retry-After since the last acknowledgement
        self._draining = False
        self._roles = spool.roles
        self._sending_state = spool.roles.sender
        self._send_timeout = spool.roles.timeout
        self._put_back_trigger = spool.roles.recover[self._sending_state]
        self._limiter = anyio.CapacityLimiter(upload.concurrency + 2)
        self._work = anyio.Event()
        self._wake_scheduled = False  # a wake-up from a spool thread is on its way to the loop
        self._holding = 0  # reports claimed by workers and not yet recorded (cautious mode counts them)
        # Counts changes of the server settings and operator resumes: a refusal that answers a post
        # made before the last one says nothing about the settings in force now (see ``_outcome``).
        self._settings_epoch = 0
        self._acknowledged = spool.roles.outcomes["acknowledged"]
        self._gate = StallGate()  # whether quick spool work runs on the event loop (``_timed_inline``)

    def _wake(self) -> None:
        """A report became ready, or the one cautious post is done: wake idle workers (on the event loop)."""
        self._wake_scheduled = False
        old, self._work = self._work, anyio.Event()
        old.set()

    # ------------------------------------------------------------------ public

    async def run(self) -> None:
        """Serve until drained. Cancelled uploads are put back in the spool (or by start-up recovery)."""
        loop = asyncio.get_running_loop()

        def wake_from_any_thread() -> None:
            # One wake-up of the loop for a burst of accepted reports, not one per report: the flag is
            # set before the call and cleared by ``_wake`` on the loop before it wakes anyone, so a
            # report that becomes ready after the clearing schedules a wake-up of its own.
            if not self._wake_scheduled:
                self._wake_scheduled = True
                loop.call_soon_threadsafe(self._wake)

        self.spool.add_listener(wake_from_any_thread)
        # The scheduler's thread syncs sent/ by the spool's batch rule, checked at every tick (0.25 s).
        self.spool.final_sync_elsewhere = True
        try:
            async with anyio.create_task_group() as tg:
                for n in range(self.upload.concurrency):
                    tg.start_soon(self._worker, name=f"upload-worker-{n}")
                tg.start_soon(self._scheduler, name="upload-scheduler")
                tg.start_soon(self._prober, name="upload-prober")
        finally:
            self.spool.final_sync_elsewhere = False
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.spool.sync_final, limiter=self._limiter)
            self.spool.remove_listener(wake_from_any_thread)
            self._gate.close()
            self.mode = self.link.after(self.mode, "stop")
            await self._close_retired()
            if self._own_client:
                with anyio.CancelScope(shield=True):
                    await self.client.aclose()

    def drain(self) -> None:
        """Stop taking new reports; in-flight uploads finish, then ``run()`` returns."""
        self._draining = True
        self._resume.set()
        self._work.set()

    def update_server(self, server: ServerSection, upload: UploadSection | None = None) -> None:
        """A reloaded config: new address or token take effect now, and a pause is lifted to re-probe."""
        changed = (server.url != self.server.url or server.token != self.server.token
                   or server.ca_bundle != self.server.ca_bundle or server.verify_tls != self.server.verify_tls)
        self.server = server
        if upload is not None:
            self.upload = upload
            self.backoff = Backoff(upload.retry)
            self.bucket = TokenBucket(upload.rate_per_s)
        if changed and self._own_client:
            old = self.client
            self.client = build_client(server, self.upload)
            self._close_later(old)
        if changed:
            self._settings_epoch += 1
            self.hold.lift()
            if self.mode == self.link.paused:
                self._set_mode("reconfigured", "configuration changed; checking the server")

    def resume(self) -> bool:
        """An operator says the cause of a pause is fixed (e.g. the token was given the right to
        submit on the server): probe at once, then send. False when sending was not paused."""
        self._settings_epoch += 1
        self.hold.lift()
        if self.mode != self.link.paused:
            return False
        self._set_mode("reconfigured", "resumed by an operator; checking the server")
        return True

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "reason": self.reason, "since": self.since, "server": masked_url(self.server.url),
            "consecutive_failures": self.consecutive_failures, "in_flight": self.in_flight,
            # a held pause (hold.py): seconds until the server is tried again by itself
            "held_for_s": round(self.hold.remaining(), 1) if self.hold.active else None,
            "pace_rps": round(self.pace.rate, 1) if self.pace.rate is not None else None,  # after busy answers
            "counters": dict(self.counters), "latency": self.latencies.percentiles(), "last_error": self.last_error,
            # which report lifecycle drives the uploads: shipped or a site file, and its sha256
            "lifecycle": {"file": self.spool.lifecycle.source, "sha256": self.spool.lifecycle.sha256,
                          "shipped": self.spool.lifecycle.shipped},
            # every lifecycle in force at the station (the uploader, the spool and the intake run them)
            "lifecycles": {name: {"file": m.source, "sha256": m.sha256, "shipped": m.shipped}
                           for name, m in sorted(getattr(self.spool, "machines", {}).items())},
        }

    # ------------------------------------------------------------------ workers

    # The lean path (issue 18 item 3): each worker claims, posts and records its own report, one at
    # a time. No feeder, settler or streams between them: each hop was a task switch and a wake-up
    # per report. Claiming (a rename into the non-durable sending state and a read from the page
    # cache) and recording a 2xx (a rename into sent, whose directory fsync the scheduler batches in
    # its thread) run on the event loop (``_timed_inline``), so a report the server acknowledges
    # costs no thread hand-off at all; whatever writes a sidecar or fsyncs goes to a thread. A claim
    # is taken only when its post can start at once, so no report waits claimed in ``sending``.
    # Durability is the spool's: a claim is a ``send`` trigger, an answer is recorded by the
    # trigger its outcome names before the worker does anything else, and a report claimed but not
    # posted (cancelled, or sending stopped meanwhile) goes back by the ``recover`` trigger; if even
    # that cannot happen, start-up recovery moves it back from ``sending``.

    async def _worker(self) -> None:
        """Claim a report when sending is allowed, post it, record the answer; until drained."""
        claim: Claim | None = None
        while True:
            if claim is None:
                if self._draining:
                    return
                if not await self._wait_for_turn():
                    continue
                claim = await self._claim()
                if claim is None:
                    continue
            try:
                epoch = self._settings_epoch
                answer = await self._send(claim)  # a cancelled send puts its report back itself
                trigger, kwargs = self._outcome(claim, answer, stale=epoch != self._settings_epoch)
            except BaseException:
                self._release()
                raise
            claim = await self._settle(claim, trigger, kwargs, then_claim=self._next_at_once())

    def _may_claim(self) -> bool:
        """Whether a worker may claim now: online, not told to wait by a busy server, and in cautious
        mode (after a busy server's Retry-After, or after an outage) only when no report is claimed
        or on its way."""
        return (not self._draining and self.mode == self.link.online and self._not_before <= time.monotonic()
                and not (self._cautious and self._holding))

    def _next_at_once(self) -> bool:
        """Whether a worker that has just had its answer may claim its next report in the same trip
        to the spool (tokens taken): only when nothing would make it wait."""
        return (self.spool.has_pending() and self._may_claim() and self.pace.try_acquire()
                and self.bucket.try_acquire())

    async def _wait_for_turn(self) -> bool:
        """Wait for the next moment a claim may be allowed; True when it is allowed now, with the rate
        limit's and the pace's tokens taken."""
        if self.mode != self.link.online:
            await self._wait_resume()
            return False
        busy_for = self._not_before - time.monotonic()
        if busy_for > 0:  # the server asked for a pause: no claims until it is over
            with anyio.move_on_after(busy_for):
                await self._wait_resume()
            return False
        if not self.spool.has_pending() or not self._may_claim():
            with anyio.move_on_after(0.5):  # woken by the spool's listener or the end of a cautious post
                await self._work.wait()
            return False
        await self.bucket.acquire()
        await self.pace.acquire()
        return self._may_claim()  # checked again: the waits for tokens let other workers run

    async def _claim(self) -> Claim | None:
        """Take the next ready report (``send`` trigger); None when none can be taken right now."""
        self._holding += 1  # before any wait, so cautious mode lets no second worker claim meanwhile
        try:
            if self._gate.use_inline():
                claim: Claim | None = self._timed_inline(self._claim_next, None)
            else:
                claim = await anyio.to_thread.run_sync(self.spool.claim_next, limiter=self._limiter)
        except BaseException:
            self._release()
            raise
        return await self._checked(claim)

    async def _checked(self, claim: Claim | None) -> Claim | None:
        """A claim just taken (its hold counted), if it may be posted now; else none, and the hold
        given up — the report back in line when sending stopped while a thread claimed it."""
        if claim is None:
            self._release()
            # Pending, but nothing claimable right now (each is being moved by another thread):
            # wait a little instead of spinning on the event loop.
            with anyio.move_on_after(0.05):
                await self._work.wait()
            return None
        if self._draining or self.mode != self.link.online or self._not_before > time.monotonic():
            await self._settle(claim, self._put_back_trigger, {})  # claimed, not sent: back in line
            return None
        return claim

    def _claim_next(self, _: None) -> Claim | None:
        return self.spool.claim_next()

    async def _settle(self, claim: Claim, trigger: str, kwargs: dict[str, Any], *,
                      then_claim: bool = False) -> Claim | None:
        """Record one outcome in the spool — a 2xx on the event loop, anything else in a thread —
        and, with ``then_claim``, claim the worker's next report in the same trip (one thread
        hand-off per report where spool work runs in threads). Returns that next claim."""
        if then_claim:
            self._holding += 1
        try:
            if trigger == self._acknowledged and self._gate.use_inline():
                # No await: nothing can cancel it, so no shield (a cancel scope per report).
                following = self._timed_inline(self._record, (claim, trigger, kwargs, then_claim))
            else:
                with anyio.CancelScope(shield=True):  # an answer received is never forgotten
                    following = await anyio.to_thread.run_sync(self._record, (claim, trigger, kwargs, then_claim),
                                                                limiter=self._limiter)
        except BaseException:
            if then_claim:
                self._release()
            raise
        finally:
            self._release()
        return await self._checked(following) if then_claim else None

    def _record(self, job: tuple[Claim, str, dict[str, Any], bool]) -> Claim | None:
        """The answer recorded first (a failure puts the report back in the queue and raises, and
        nothing more is claimed); then the next claim when asked for."""
        claim, trigger, kwargs, then_claim = job
        try:
            self.spool.fire(claim.key, trigger, **kwargs)
        except Exception:
            self._put_back(claim.key)  # left in the sending state it would wait for the next start
            raise
        return self.spool.claim_next() if then_claim else None

    def _release(self) -> None:
        """A claimed report is recorded (or given back): in cautious mode the next may be claimed."""
        self._holding -= 1
        if self._cautious and not self._holding:
            self._wake()

    def _timed_inline(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """Run quick spool work on the event loop; fall back to threads for a while if the disk is slow.

        Claiming (a rename into the non-durable ``sending`` state and a read from the page cache)
        and recording a 2xx (a rename into ``sent``, whose directory fsync the scheduler batches in
        its thread) take tens of microseconds. Done in a worker thread they cost ten times that,
        because every system call hands the GIL back and forth with the busy event loop; measured,
        that held uploads to about half of what plain posts reach. Everything that fsyncs or writes
        a sidecar a person relies on stays in threads. When the disk stalls these calls, they move
        to threads too (stall.py's ``StallGate``).
        """
        return self._gate.timed(fn, arg)

    def _put_back(self, key: str) -> None:
        try:
            if self.spool.state_of(key) == self._sending_state:
                self.spool.fire(key, self._put_back_trigger)  # no note: a plain rename, no sidecar
        except Exception:  # noqa: BLE001 - the caller raises the real error; recovery finishes this
            log.exception("report %s could not be put back in the queue; start-up recovery will", key)

    async def _send(self, claim: Claim) -> Answer:
        self.in_flight += 1
        started = time.monotonic()
        try:
            answer = await self._post(claim)
        except BaseException:
            # Cancelled mid-send (phase two of a shutdown): put it back, shielded; if even that
            # cannot happen, start-up recovery will.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._fire, claim.key, self._put_back_trigger, None, None,
                                               "cancelled")
            raise
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._retired_clients:
                await self._close_retired()
        self.latencies.add(time.monotonic() - started)
        return answer

    def _poster(self) -> ReportPoster:
        """The lean post of the client in use (client.py), built once per client."""
        if self._poster_of is None or self._poster_of.client is not self.client:
            self._poster_of = ReportPoster(self.client)
        return self._poster_of

    async def _post(self, claim: Claim) -> Answer:
        # The state's timeout as a bare scope: ``move_on_after`` asks anyio for the running library's
        # clock at every post; asyncio's is the loop's (client.py, ``loop_now``).
        with anyio.CancelScope(deadline=loop_now() + self._send_timeout) as scope:
            try:
                reply = await self._poster().post(claim.data)
            except (httpx.HTTPError, ssl.SSLError) as exc:
                return classify_exception(exc)
            return classify_reply(reply)
        assert scope.cancelled_caught
        return Answer("timeout", f"no answer within the {self._send_timeout:g} s limit of the "
                                 f"'{self._sending_state}' state")

    def _outcome(self, claim: Claim, answer: Answer, *, stale: bool = False) -> tuple[str, dict[str, Any]]:
        """Decide the report's trigger from the answer — through the sending state's ``outcomes``
        (or its ``on_timeout``) — and update the uploader's mode and counters. ``stale``: the post
        left before the server settings last changed (or an operator resumed)."""
        outcomes = self._roles.outcomes
        if answer.kind == "accepted":
            self.counters["sent"] += 1
            self.consecutive_failures = 0
            if self._cautious:  # the one post at a time went through: every worker may claim again
                self._cautious = False
                self._wake()
            self._busy_in_a_row = 0
            self.pace.acknowledged()
            self.hold.acknowledged()
            return outcomes["acknowledged"], {}
        self.last_error = answer.message
        # Whatever state the YAML leads this answer to, a waiting state needs its time.
        delay = self.backoff.delay(claim.attempts + 1, answer.retry_after)
        if answer.retry_after:  # the server said when: that (spread), not this report's growing backoff
            delay = max(self.backoff.spread(answer.retry_after), self.backoff.initial)
        if answer.kind == "rejected":
            self.counters["failed"] += 1
            log.warning("report %s rejected: %s", claim.key, answer.message)
            return outcomes["refused"], {"error": answer.message, "count_attempt": True, "next_attempt_s": delay}
        if answer.kind == "pause":
            if stale:  # the refusal of the old settings, arriving late: it must not pause the new ones
                return outcomes["paused"], {"note": f"not sent: {answer.message} (to the server settings in force "
                                                    "before the last change)", "next_attempt_s": delay}
            if answer.hold:  # how it ends: status (held_for_s) and the log say; the reason says what to fix
                length = self.hold.start()
                if self.mode != self.link.paused:
                    log.warning("sending stays paused until server settings change, `stationflow queue resume`, "
                                "or %s from now", describe(length))
            self._set_mode("refused", answer.message)
            return outcomes["paused"], {"note": f"not sent: {answer.message}", "next_attempt_s": delay}
        self.counters["retried"] += 1
        if not answer.retry_after:  # a busy server answers: its Retry-After is honoured below, not "offline"
            self.consecutive_failures += 1
        self._busy_in_a_row = self._busy_in_a_row + 1 if answer.retry_after else 0
        if self._busy_in_a_row >= BUSY_IN_A_ROW:
            # The server is busy, not unlucky (one 429 among acknowledgements is not a reason to slow
            # the station): the whole station waits its Retry-After, then paces itself (pace.py).
            if time.monotonic() >= self._not_before:
                self.pace.busy()  # once per pause: the answers in flight all say the same
            self._not_before = max(self._not_before, time.monotonic() + self.backoff.spread(answer.retry_after or 0))
            self._cautious = True
        if self.consecutive_failures >= self.upload.retry.offline_after and self.mode == self.link.online:
            self._set_mode("unreachable", f"{self.consecutive_failures} failures in a row; last: {answer.message}")
        trigger = self._roles.on_timeout if answer.kind == "timeout" else outcomes["transient"]
        return trigger, {"error": answer.message, "next_attempt_s": delay, "count_attempt": True}

    def _fire(self, key: str, trigger: str, error: str | None, delay: float | None, note: str | None,
              count: bool = False) -> None:
        self.spool.fire(key, trigger, error=error, next_attempt_s=delay, note=note, count_attempt=count)

    # ------------------------------------------------------------------ scheduler and probe

    async def _scheduler(self) -> None:
        """Release reports whose backoff is over; make batched renames durable; prune old sent."""
        last_prune: float | None = None  # at start, then hourly (the monotonic clock may start near 0)
        while not (self._draining and self.in_flight == 0 and self._holding == 0):
            await anyio.to_thread.run_sync(self._tick, limiter=self._limiter)
            if last_prune is None or time.monotonic() - last_prune > 3600:
                last_prune = time.monotonic()
                pruned = await anyio.to_thread.run_sync(self.spool.prune_sent, limiter=self._limiter)
                if pruned:
                    log.info("pruned %d sent reports older than keep_sent_days", pruned)
            due = self.spool.next_due_in()
            await anyio.sleep(0.25 if due is None else min(max(due, 0.01), 0.25))
        await anyio.to_thread.run_sync(self.spool.sync_final, limiter=self._limiter)

    def _tick(self) -> None:
        """The scheduler's trip to a thread: release reports whose wait is over (when one is), then
        make the batched renames into final states durable when the spool's batch rule says so
        (``sent_sync_every`` renames or ``sent_sync_s``: at a steady trickle one journal commit a
        second, not four). One trip, not one per job."""
        due = self.spool.next_due_in()
        if due is not None and due <= 0:
            self.spool.release_due()
        self.spool.sync_final_if_due()

    async def _prober(self) -> None:
        """While offline or paused: one probe at a time, with backoff, until the server answers."""
        attempt = 0
        while not self._draining:
            if self.mode == self.link.online:
                attempt = 0
                await self._wait_resume()
                continue
            if self.mode == self.link.paused and self.hold.active:
                # A probe cannot tell that a refused POST would now go through (hold.py): wait for
                # the hold to end, a config change or an operator's resume.
                if self.hold.remaining() > 0:
                    with anyio.move_on_after(self.hold.remaining()):
                        await self._wait_resume()
                    continue
                self.hold.expire()
                log.info("the pause of %s is over; trying the server again", describe(self.hold.length_s))
            attempt += 1
            ok, message = await self.probe()
            if ok:
                log.info("server %s answers again; sending resumes", masked_url(self.server.url))
                self.consecutive_failures = 0
                self._cautious = True
                if self.mode == self.link.offline:
                    self.pace.start()
                self._set_mode("answered", None)
                continue
            if self.mode == self.link.paused and message != self.reason:
                self.reason = message if "401" in message or "403" in message or "404" in message else self.reason
            self.counters["probes_failed"] += 1
            with anyio.move_on_after(self.backoff.full_jitter(attempt)):
                await self._wait_resume()

    async def probe(self) -> tuple[bool, str]:
        """One authenticated ``GET /api/App/Version``: (answers well, what happened)."""
        try:
            reply = await read_reply(await self.client.send(self.client.build_request("GET", PROBE_PATH),
                                                            stream=True))
        except (httpx.HTTPError, ssl.SSLError) as exc:
            return False, classify_exception(exc).message
        answer = classify_reply(reply)
        if answer.kind == "accepted":
            return True, reply.text[:200]
        return False, answer.message

    # ------------------------------------------------------------------ plumbing

    def _set_mode(self, trigger: str, reason: str | None) -> None:
        """Fire ``trigger`` on the connection lifecycle (``machines/connection.yaml``)."""
        mode = self.link.after(self.mode, trigger)
        if mode == self.mode and reason == self.reason:
            return
        previous = self.mode
        self.mode, self.reason = mode, reason
        self.since = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        level = logging.INFO if mode == self.link.online else logging.WARNING
        log.log(level, "uploader %s -> %s%s", previous, mode, f": {reason}" if reason else "")
        self.counters[f"went_{mode}"] += 1
        if self._on_event:
            self._on_event("uploader_mode", {"from": previous, "to": mode, "reason": reason})
        old, self._resume = self._resume, anyio.Event()
        old.set()

    async def _wait_resume(self) -> None:
        await self._resume.wait()

    def _close_later(self, client: httpx.AsyncClient) -> None:
        """A client replaced by a reconfiguration: closed as soon as no post is in flight (posts
        under way may still use it), or when the uploader ends (its connections were leaked)."""
        self._retired_clients.append(client)

    async def _close_retired(self) -> None:
        clients, self._retired_clients = self._retired_clients, []
        for client in clients:
            with anyio.CancelScope(shield=True):
                await client.aclose()
