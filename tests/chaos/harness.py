"""The chaos harness: the real ``stationflow run`` in a subprocess, a watch folder, and the one rule.

A :class:`Station` writes a station.yaml for a temporary folder, starts, stops and kills the real
service (``python -m stationflow -c station.yaml run``, in its own process group so its converter
workers die with it), and drops report files into the watch folder the way test equipment does
(written elsewhere, then renamed in, so a file never appears half-written).

:func:`check` is the one rule, read off the disk while the service is not running: every file
that was dropped is accounted for —

* its report id was stored by the server (the emulator's ``received_ids()``), or
* its report id is in the spool, in any state (``<data_dir>/spool/<state>/<id>.<crc32>.json``), or
* its source file is still in the watch folder, or in the rejected folder with its reason.

Anything else is a lost report. Duplicates are allowed only as the same id stored again at the
server; an id the station never got, or a stored body that differs from the dropped bytes, is a
violation too. A report file outside ``quarantined/`` must be whole (its crc32 matches its name).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN
from stationflow.engine.devtools.samples import make_report

ROOT = Path(__file__).resolve().parents[2]
INTAKE = "chaos"
_SPOOL_NAME = re.compile(r"^(?P<key>[^.]+)\.(?P<crc>[0-9a-f]{8})\.json$")
_COPY_SUFFIX = re.compile(r"~\d+(?=\.[^.]+$)")
_ENOSPC_FLAG_ENV = "STATIONFLOW_CHAOS_ENOSPC_FLAG"


def crc32(data: bytes) -> str:
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def report_file(index: int, *, seed: int, approx_bytes: int = 1200) -> tuple[str, bytes]:
    """One report as test equipment would write it: (canonical id, bytes). Same inputs, same report."""
    doc = make_report(index, approx_bytes=approx_bytes, seed=seed, station="CHAOS-01")
    return doc["id"].lower(), json.dumps(doc, separators=(",", ":")).encode()


def wait_for(check: Callable[[], Any], timeout: float, what: str,
             explain: Callable[[], str] | None = None, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                 + (f": {explain()}" if explain else ""))
        time.sleep(interval)


@dataclass
class Dropped:
    """One file handed to the station."""

    name: str
    id: str
    data: bytes


# ---------------------------------------------------------------------------- the spool on disk

@dataclass
class SpoolFile:
    key: str
    state: str
    path: Path
    whole: bool


def scan_spool(data_dir: Path) -> dict[str, list[SpoolFile]]:
    """Every report file in every state directory, read straight off the disk: key -> places.

    Tolerates a running service: a file that moves away between the listing and the read is
    skipped (it is in its next state, which a later scan sees).
    """
    found: dict[str, list[SpoolFile]] = defaultdict(list)
    root = data_dir / "spool"
    if not root.is_dir():
        return found
    for state_dir in sorted(root.iterdir()):
        if not state_dir.is_dir() or state_dir.name in ("tmp", "meta"):
            continue
        for entry in os.scandir(state_dir):
            match = _SPOOL_NAME.match(entry.name)
            if not match:
                continue  # recovery quarantines strangers; they are not reports of ours
            try:
                data = Path(entry.path).read_bytes()
            except FileNotFoundError:
                continue
            found[match["key"]].append(SpoolFile(match["key"], state_dir.name, Path(entry.path),
                                                 crc32(data) == match["crc"]))
    return found


def spool_counts(data_dir: Path) -> Counter[str]:
    """Files per state directory (``ls | wc -l``), cheap enough to poll while the service runs."""
    counts: Counter[str] = Counter()
    root = data_dir / "spool"
    if root.is_dir():
        for state_dir in root.iterdir():
            if state_dir.is_dir() and state_dir.name != "meta":
                counts[state_dir.name] = sum(1 for e in os.scandir(state_dir) if e.name.endswith(".json")
                                             or state_dir.name == "tmp")
    return counts


def read_sidecar(data_dir: Path, key: str) -> dict[str, Any]:
    try:
        data = json.loads((data_dir / "spool" / "meta" / f"{key}.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def partial_files(data_dir: Path) -> list[str]:
    """Report files that are not whole outside ``quarantined/``, and anything left in ``spool/tmp``
    except a sidecar being written right now. Safe to call while the service runs."""
    bad = [f"{p.state}/{p.path.name}" for places in scan_spool(data_dir).values() for p in places
           if not p.whole and p.state != "quarantined"]
    tmp = data_dir / "spool" / "tmp"
    if tmp.is_dir():
        bad += [f"tmp/{e.name}" for e in os.scandir(tmp) if not e.name.endswith(".meta.tmp")]
    return bad


# ---------------------------------------------------------------------------- the verdict

@dataclass
class Verdict:
    """What became of every dropped file; ``problems`` must be empty for the one rule to hold."""

    dropped: int = 0
    on_server: int = 0
    in_spool: Counter[str] = field(default_factory=Counter)
    in_watch: int = 0
    in_rejected: int = 0
    lost: list[str] = field(default_factory=list)
    server_unknown: list[str] = field(default_factory=list)
    server_altered: list[str] = field(default_factory=list)
    in_two_places: list[str] = field(default_factory=list)
    not_whole: list[str] = field(default_factory=list)
    server_duplicates: int = 0
    quarantined_copies: int = 0  # recovery's ``<id>~N`` adoptions of interrupted writes

    @property
    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} LOST (not at the server, not in the spool, source gone): "
                       f"{self.lost[:10]}")
        if self.server_unknown:
            out.append(f"{len(self.server_unknown)} id(s) at the server that were never dropped: "
                       f"{self.server_unknown[:5]}")
        if self.server_altered:
            out.append(f"{len(self.server_altered)} report(s) stored with other bytes than dropped: "
                       f"{self.server_altered[:5]}")
        if self.in_two_places:
            out.append(f"{len(self.in_two_places)} report(s) in two spool states at once: {self.in_two_places[:5]}")
        if self.not_whole:
            out.append(f"{len(self.not_whole)} damaged report file(s) outside quarantine: {self.not_whole[:5]}")
        return out

    def line(self) -> str:
        spool = ", ".join(f"{s} {n}" for s, n in sorted(self.in_spool.items())) or "none"
        return (f"{self.dropped} dropped → {self.on_server} at the server, in spool only: {spool}, "
                f"source still waiting: {self.in_watch}, rejected: {self.in_rejected}, LOST: {len(self.lost)}; "
                f"server duplicates (same id again): {self.server_duplicates}; "
                f"recovered write leftovers quarantined: {self.quarantined_copies}")

    def assert_ok(self, context: str = "") -> None:
        assert not self.problems, f"the one rule is broken{(' ' + context) if context else ''}: " \
                                  + "; ".join(self.problems) + f" — {self.line()}"


def _source_names(folder: Path, *, rejected: bool = False) -> set[str]:
    """File names in a folder (recursively); in the rejected folder ``name~2.json`` counts as ``name.json``."""
    names: set[str] = set()
    if not folder.is_dir():
        return names
    for _, _, files in os.walk(folder):
        for name in files:
            if rejected:
                if name.endswith(".error.txt"):
                    continue
                name = _COPY_SUFFIX.sub("", name)
            names.add(name)
    return names


def check(dropped: Iterable[Dropped], data_dir: Path, watch: Path, server_ids: set[str], *,
          server_report: Callable[[str], bytes | None] | None = None,
          server_duplicates: int = 0) -> Verdict:
    """The one rule, read off the disk. Call it while the service is stopped (or killed)."""
    items = list(dropped)
    verdict = Verdict(dropped=len(items), server_duplicates=server_duplicates)
    spool = scan_spool(data_dir)
    waiting = _source_names(watch)
    rejected = _source_names(data_dir / "rejected", rejected=True)
    known = {d.id for d in items}
    for key, places in spool.items():
        if "~" in key:
            verdict.quarantined_copies += 1
        if len(places) > 1:
            verdict.in_two_places.append(f"{key}: {[p.state for p in places]}")
        verdict.not_whole += [f"{p.state}/{p.path.name}" for p in places if not p.whole and p.state != "quarantined"]
    for item in items:
        if item.id in server_ids:
            verdict.on_server += 1
            if server_report is not None:
                stored = server_report(item.id)
                if stored is not None and stored != item.data:
                    verdict.server_altered.append(item.id)
        elif item.id in spool:
            verdict.in_spool[spool[item.id][0].state] += 1
        elif item.name in waiting:
            verdict.in_watch += 1
        elif item.name in rejected:
            verdict.in_rejected += 1
        else:
            verdict.lost.append(f"{item.name} ({item.id})")
    verdict.server_unknown = sorted(server_ids - known)
    return verdict


# ---------------------------------------------------------------------------- the station

class Station:
    """A station in a folder: config, watch folder, data dir, and the service as a subprocess."""

    def __init__(self, root: Path, server_url: str, *, data_dir: Path | None = None, seed: int = 1,
                 report_bytes: int = 1200, after: str = "archive", settle_ms: int = 50,
                 concurrency: int = 4, rate_per_s: float | None = None, retry_initial_s: float = 0.05,
                 retry_max_s: float = 0.5, offline_after: int = 5, grace_s: float = 3.0,
                 spool: dict[str, Any] | None = None, log_level: str = "INFO",
                 enospc_flag: Path | None = None) -> None:
        self.root = Path(root)
        self.server_url = server_url
        self.watch = self.root / "drop"
        self.staging = self.root / "staging"
        self.data_dir = Path(data_dir) if data_dir is not None else self.root / "data"
        self.logs = self.root / "logs"
        self.config_path = self.root / "station.yaml"
        self.seed = seed
        self.report_bytes = report_bytes
        self.dropped: list[Dropped] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.enospc_flag = enospc_flag
        self._log_path: Path | None = None
        for folder in (self.watch, self.staging, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.settings: dict[str, Any] = {
            "station": {"name": "CHAOS-01", "location": "Chaos lab", "purpose": "Testing"},
            "server": {"url": server_url, "token": DEFAULT_TOKEN, "timeout_s": 10, "connect_timeout_s": 2},
            "data_dir": str(self.data_dir),
            "intake": [{"name": INTAKE, "watch": str(self.watch), "patterns": ["*.json"], "converter": "wsjf",
                        "settle_ms": settle_ms, "after": after}],
            "upload": {"concurrency": concurrency, "rate_per_s": rate_per_s,
                       "retry": {"initial_s": retry_initial_s, "max_s": retry_max_s,
                                 "offline_after": offline_after}},
            "spool": {"min_free_disk": 0, **(spool or {})},
            "shutdown": {"grace_s": grace_s},
            "logging": {"level": log_level},
        }
        self.write_config()

    # -------------------------------------------------------------- config

    def write_config(self) -> Path:
        self.config_path.write_text(yaml.safe_dump(self.settings, sort_keys=False), encoding="utf-8")
        return self.config_path

    @property
    def retry_max_s(self) -> float:
        return float(self.settings["upload"]["retry"]["max_s"])

    # -------------------------------------------------------------- the service

    def start(self, *, wait: bool = True, timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """Start ``stationflow run``; with ``wait``, return once it logs that it is running."""
        assert self.proc is None or self.proc.poll() is not None, "the service is already running"
        self.starts += 1
        self._log_path = self.logs / f"run-{self.starts:04d}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.enospc_flag is not None:
            env[_ENOSPC_FLAG_ENV] = str(self.enospc_flag)
            cmd = [sys.executable, "-m", "tests.chaos.harness", "-c", str(self.config_path), "run"]
        else:
            cmd = [sys.executable, "-m", "stationflow", "-c", str(self.config_path), "run"]
        with open(self._log_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        if wait:
            self.wait_running(timeout)
        return self.proc

    def log_text(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def all_logs(self) -> str:
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(self.logs.glob("run-*.log")))

    def is_running(self) -> bool:
        return "service running" in self.log_text()

    def wait_running(self, timeout: float = 60.0) -> None:
        proc = self.proc
        assert proc is not None

        def up() -> bool:
            assert proc.poll() is None, f"the service exited ({proc.returncode}):\n{self.log_tail()}"
            return self.is_running()

        wait_for(up, timeout, "the service to run", self.log_tail)

    def kill(self) -> None:
        """``kill -9`` of the service and its converter workers (its whole process group)."""
        proc = self.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(15)

    def stop(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM (the graceful two-phase stop); returns (exit code, seconds it took)."""
        proc = self.proc
        assert proc is not None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the service did not stop within {timeout:g} s of SIGTERM:\n{self.log_tail()}")
        elapsed = time.monotonic() - started
        self._reap_group()
        return rc, elapsed

    def _reap_group(self) -> None:
        """Converter workers leave with the service; make sure none outlives a test."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """Teardown: nothing of ours keeps running."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.kill()
            self._reap_group()

    # -------------------------------------------------------------- test equipment

    def drop(self, count: int = 1) -> list[Dropped]:
        """Write ``count`` new report files into the watch folder (whole, by rename)."""
        out = []
        for _ in range(count):
            index = len(self.dropped)
            report_id, data = report_file(index, seed=self.seed, approx_bytes=self.report_bytes)
            name = f"r{index:06d}.json"
            staged = self.staging / name
            staged.write_bytes(data)
            os.replace(staged, self.watch / name)
            item = Dropped(name, report_id, data)
            self.dropped.append(item)
            out.append(item)
        return out

    def waiting_sources(self) -> int:
        """Files still in the watch folder (not yet taken)."""
        return sum(1 for e in os.scandir(self.watch) if e.name.endswith(".json"))

    def sources_intact(self) -> list[str]:
        """Names of files in the watch folder whose bytes differ from what was dropped (must be [])."""
        by_name = {d.name: d.data for d in self.dropped}
        return [e.name for e in os.scandir(self.watch)
                if e.name in by_name and Path(e.path).read_bytes() != by_name[e.name]]

    # -------------------------------------------------------------- the rule

    def check(self, emulator: Any) -> Verdict:
        stats = emulator.stats()
        return check(self.dropped, self.data_dir, self.watch, emulator.received_ids(),
                     server_report=emulator.report if emulator.keep_in_memory else None,
                     server_duplicates=stats.duplicates)

    def all_at_server(self, emulator: Any) -> bool:
        ids = emulator.received_ids()
        return all(d.id in ids for d in self.dropped)

    def missing_at_server(self, emulator: Any) -> str:
        ids = emulator.received_ids()
        missing = [d for d in self.dropped if d.id not in ids]
        return (f"{len(missing)} of {len(self.dropped)} not at the server yet; waiting sources "
                f"{self.waiting_sources()}; spool {dict(spool_counts(self.data_dir))}; log:\n{self.log_tail()}")

    def stop_and_check(self, emulator: Any, context: str = "") -> Verdict:
        """The end of a scenario: a graceful stop that exits 0, then the one rule off the disk."""
        rc, _ = self.stop()
        assert rc == 0, self.log_tail()
        verdict = self.check(emulator)
        verdict.assert_ok(context)
        return verdict

    def drain_and_check(self, emulator: Any, timeout: float, context: str = "") -> Verdict:
        """After the kills or restarts, with the service running again: wait until every dropped report
        is at the server and the watch folder is empty, then :meth:`stop_and_check`."""
        wait_for(lambda: self.all_at_server(emulator) and self.waiting_sources() == 0, timeout,
                 "every report at the server", lambda: self.missing_at_server(emulator))
        return self.stop_and_check(emulator, context)


class Dropper(threading.Thread):
    """Test equipment writing files at a steady rate while a scenario does its worst (kills, restarts,
    faults): ``total`` files, ``per_s`` a second, until done or ``stop_event`` is set."""

    def __init__(self, station: Station, total: int, per_s: float) -> None:
        super().__init__(daemon=True, name="dropper")
        self.station, self.total, self.interval = station, total, 1.0 / per_s
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            for i in range(self.total):
                if self.stop_event.is_set():
                    return
                delay = start + i * self.interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.station.drop(1)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self, timeout: float = 600) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the dropper did not finish"
        assert self.error is None, f"dropping files failed: {self.error!r}"


# ---------------------------------------------------------------------------- a small real disk

def mount_tmpfs(folder: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` on ``folder`` (root only); False when that is not possible here."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                          capture_output=True, timeout=30)
    return done.returncode == 0


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill_disk(path: Path, leave_free: int) -> int:
    """Write a ballast file until only ``leave_free`` bytes are free on ``path``'s disk; its size."""
    free = shutil.disk_usage(path.parent).free
    size = max(0, free - leave_free)
    chunk = b"\0" * 65536
    written = 0
    with open(path, "wb") as f:
        while written < size:
            n = min(len(chunk), size - written)
            try:
                f.write(chunk[:n])
                f.flush()
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    break
                raise
            written += n
    return written


# ---------------------------------------------------------------------------- injected ENOSPC

def _run_with_injected_enospc(argv: list[str]) -> int:
    """``stationflow`` with every ``fsync`` failing with ENOSPC while the flag file exists.

    The fallback of the disk-full scenario where a small real file system cannot be mounted (not
    root). A failed fsync is how a full disk surfaces on many file systems (delayed allocation,
    NFS); every durable write in stationflow goes through one, so this is the write layer.
    """
    flag = Path(os.environ[_ENOSPC_FLAG_ENV])
    real_fsync = os.fsync

    def fsync(fd: Any) -> None:
        if flag.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    os.fsync = fsync  # type: ignore[assignment]
    from stationflow.engine.cli.main import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_run_with_injected_enospc(sys.argv[1:]))
