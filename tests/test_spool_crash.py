"""The one rule under crashes: injected at every write step, and kill -9 of a real process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from stationflow.engine import durable
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from tests.conftest import ROOT, assert_whole_once


class SimulatedCrash(BaseException):
    """Raised from inside a write step: the process 'dies' there."""


class CrashingDisk:
    """Wraps the durable write steps; the N-th step crashes, before or after doing its work."""

    def __init__(self, crash_at: int, after: bool) -> None:
        self.calls = 0
        self.crash_at = crash_at
        self.after = after
        self.originals = {name: getattr(durable, name) for name in ("write_file", "write_open", "fsync_all",
                                                                   "replace", "fsync_dir")}

    def install(self) -> None:
        for name, fn in self.originals.items():
            setattr(durable, name, self._wrap(fn))

    def uninstall(self) -> None:
        for name, fn in self.originals.items():
            setattr(durable, name, fn)

    def _wrap(self, fn):
        def step(*args, **kwargs):
            self.calls += 1
            if self.calls == self.crash_at and not self.after:
                raise SimulatedCrash(fn.__name__)
            result = fn(*args, **kwargs)
            if self.calls == self.crash_at and self.after:
                raise SimulatedCrash(fn.__name__)
            return result
        return step


OPS = st.lists(st.sampled_from(["accept", "accept", "accept_many", "claim", "ok", "transient", "reject", "retry", "due", "crash"]),
               min_size=1, max_size=25)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, crash_at=st.integers(min_value=1, max_value=60), after=st.booleans())
def test_every_accepted_report_survives_a_crash_at_any_write_step(ops: list[str], crash_at: int, after: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        accepted: dict[str, bytes] = {}
        spool = Spool(data_dir)
        disk = CrashingDisk(crash_at, after)
        disk.install()
        claimed: list[str] = []
        n = 0
        try:
            for op in ops:
                try:
                    if op == "accept":
                        raw = make_report_bytes(n, seed=1)
                        n += 1
                        accepted[spool.accept(raw).key] = raw
                    elif op == "accept_many":
                        raws = [make_report_bytes(n + k, seed=1) for k in range(3)]
                        n += 3
                        for raw, result in zip(raws, spool.accept_many([(r, "/src") for r in raws])):
                            if not isinstance(result, Exception):
                                accepted[result.key] = raw
                    elif op == "claim":
                        claim = spool.claim_next()
                        if claim:
                            claimed.append(claim.key)
                    elif op in ("ok", "transient", "reject") and claimed:
                        key = claimed.pop(0)
                        trigger = {"ok": "accepted", "transient": "transient_error", "reject": "rejected"}[op]
                        spool.fire(key, trigger, error=None if op == "ok" else op, next_attempt_s=0.0,
                                   count_attempt=True)
                    elif op == "retry":
                        for key in spool.keys("failed")[:1]:
                            spool.fire(key, "retry")
                    elif op == "due":
                        spool.release_due()
                    elif op == "crash":
                        raise SimulatedCrash("explicit")
                except SimulatedCrash:
                    disk.uninstall()
                    spool._filelock.release()  # the kernel releases a dead process's lock
                    spool = Spool(data_dir)
                    claimed.clear()
                    assert spool.counts()["sending"] == 0
                    disk.install()
                disk.uninstall()
                states = assert_whole_once(data_dir, accepted)
                assert set(states.values()) <= set(spool.lifecycle.states)
                counts = spool.counts()
                assert sum(counts.values()) >= len(accepted)
                disk.install()
        finally:
            disk.uninstall()
            spool.close()
        # and a clean reopen agrees with the disk
        with Spool(data_dir) as reopened:
            states = assert_whole_once(data_dir, accepted)
            for key, state in states.items():
                assert reopened.state_of(key) == state


_WRITER = r"""
import sys, random
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
data_dir, start = sys.argv[1], int(sys.argv[2])
spool = Spool(data_dir)
rng = random.Random(start)
i = start
while True:
    raw = make_report_bytes(i, seed=3, approx_bytes=1000 if i % 3 else 20000)
    key = spool.accept(raw).key
    print(f"{i} {key}", flush=True)
    i += 1
    claim = spool.claim_next()
    if claim is not None:
        r = rng.random()
        if r < 0.6:
            spool.fire(claim.key, "accepted")
        elif r < 0.8:
            spool.fire(claim.key, "transient_error", error="503", next_attempt_s=0.0, count_attempt=True)
        elif r < 0.9:
            spool.fire(claim.key, "rejected", error="400", count_attempt=True)
    spool.release_due()
"""


def test_kill_9_of_a_real_writer_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(42)
    acked: dict[str, bytes] = {}
    start = 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(data_dir), str(start)],
                                stdout=subprocess.PIPE, env=env, cwd=ROOT)
        assert proc.stdout is not None
        # Wait for the state that matters, not for a time: the writer is up and has acknowledged
        # some reports (its start-up alone can take seconds on a loaded machine). Bounded: a writer
        # that stalls is killed by the timer, readline then returns b"" and the assert below fails.
        wanted = rng.randint(1, 20)
        bound = threading.Timer(60, proc.kill)
        bound.start()
        head: list[bytes] = []
        try:
            while len(head) < wanted and (line := proc.stdout.readline()):
                head.append(line)
            time.sleep(rng.uniform(0.0, 0.3))  # not a synchronisation: places the kill at a random moment
        finally:
            proc.send_signal(signal.SIGKILL)
            bound.cancel()
        out, _ = proc.communicate()
        lines = (b"".join(head) + out).decode().split("\n")
        complete = lines[:-1]  # the last piece may be cut mid-line
        assert complete, "the writer made no progress before it was killed"
        for line in complete:
            i, key = line.split()
            i = int(i)
            acked[key] = make_report_bytes(i, seed=3, approx_bytes=1000 if i % 3 else 20000)
        start = int(complete[-1].split()[0]) + 1
        # recovery, then the rule: every report whose accept returned is in exactly one state, whole
        with Spool(data_dir) as spool:
            assert spool.counts()["sending"] == 0
        assert len(assert_whole_once(data_dir, acked)) == len(acked)
