"""The pipeline's floor: the same durable steps in one minimal Python loop, and CPU per report.

The whole-pipeline benchmark compares ``stationflow run`` with raw HTTP posts, but raw posts
skip every durable step, so that ratio alone cannot say how much the service's own machinery
costs. The floor does, per file and in one process, exactly what the design requires and nothing
else: copy the source and fsync the copy, convert it (the real WSJF converter and validation),
write the report + fsync + rename into ``pending`` + directory fsync, post it to the same server,
rename it into ``sent``, and remove the source. ``pipeline ÷ floor`` is then the price of the
service's plumbing (processes, threads, lifecycles), measured in the same run.

CPU per report is read on Linux: the service process and every process of its session (its
intake process and converter workers), each from its CPU clock, plus what its exited children used
(``/proc``'s ``cutime``/``cstime``), so a recycled worker's time is counted too. Elsewhere it is
not measured (None).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from .. import durable
from ..convert.api import ConvertContext, WsjfConverter, finish_reports
from ..upload.uploader import REPORT_PATH
from .emulator import DEFAULT_TOKEN

_CHUNK = 1024 * 1024


def floor_rate(root: Path, url: str, reports: list[bytes]) -> tuple[float, float]:
    """(reports per second, CPU ms per report of this process) for the minimal durable loop."""
    source, copies, tmp, pending, sent = (root / n for n in ("source", "copies", "tmp", "pending", "sent"))
    for folder in (source, copies, tmp, pending, sent):
        folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.json" for i in range(len(reports))]
    for name, raw in zip(names, reports):
        (source / name).write_bytes(raw)
    os.sync()  # as the pipeline arm: no earlier dirty pages slow these fsyncs
    converter = WsjfConverter()
    context = ConvertContext(station_name="BENCH-01", location="Lab", purpose="Benchmark", intake="bench")
    headers = {"Authorization": f"Basic {DEFAULT_TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        started, cpu = time.perf_counter(), time.process_time()
        for name in names:
            copy = copies / name
            digest = hashlib.sha256()
            with open(source / name, "rb") as src, open(copy, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            [raw] = finish_reports(converter.convert(copy, context), context, sha256=digest.hexdigest(),
                                   converter="wsjf")
            durable.write_file(tmp / name, raw)
            os.replace(tmp / name, pending / name)
            durable.fsync_dir(pending)
            client.post(REPORT_PATH, content=raw).raise_for_status()
            os.replace(pending / name, sent / name)
            os.unlink(source / name)
            os.unlink(copy)
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    return len(reports) / elapsed, used * 1000 / len(reports)


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # after "pid (comm) ": the name may hold spaces


def session_cpu_s(leader: int) -> float | None:
    """CPU seconds (user + system) used so far by ``leader``'s session: the process, every live
    process in its session, and the exited children it waited for. None where /proc is absent.

    A live process's time is read from its CPU clock (nanoseconds, all its threads, also the ones
    that ended), not from ``/proc``'s clock ticks: at 10 ms a tick, a short run's figure was mostly
    rounding (a dozen 1 KB files read as 0 ms in one round of three). Exited children are only
    known in ticks (``cutime``/``cstime``)."""
    own = _stat_fields(leader)
    if own is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    # fields after the name: [0] state, [3] session (the 6th field of stat), [11..14] utime stime cutime cstime
    total = (int(own[13]) + int(own[14])) / tick + _process_cpu_s(leader, own)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        fields = _stat_fields(entry.name)
        if fields is not None and int(fields[3]) == leader:
            total += _process_cpu_s(int(entry.name), fields)  # its waited children are in ours once it is reaped
    return total


def _process_cpu_s(pid: int, fields: list[str]) -> float:
    """``pid``'s own CPU seconds: its CPU clock (Linux's ``clock_getcpuclockid``: the clock id is
    ``~pid << 3 | 2``), else the ticks ``/proc`` gave (``fields``)."""
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except (OSError, OverflowError):
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
