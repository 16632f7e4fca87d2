"""Windows behaviour, proven on Linux by simulation.

- Imports: every module of the package, and every command's ``--help``, with the POSIX-only
  modules blocked (``tests/winsim.py``), in a real subprocess.
- A venv redirector: on Windows a venv's ``Scripts\\python.exe`` starts the real interpreter as a
  *child*, so a converter worker's parent is never the service. Simulated with a script that
  starts the real python as its child and passes its exit code back.
- Console encodings: output through a cp1252 stdout (redirected output on Windows).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.children import child_env
from stationflow.engine.convert.api import ConvertContext
from stationflow.engine.convert.pool import ConversionFailed, Converted, WorkerPool

HERE = Path(__file__).resolve().parent
WINSIM = HERE / "winsim.py"
SHA = "0" * 64

PID_CONVERTER = '''
import os, time
class Pid:
    """Converts a file into one report whose serial number names the worker process."""
    name = "pid"
    patterns = ["*"]
    def convert(self, source, context):
        fifo = context.arguments.get("fifo")
        if fifo:  # tell the test who we are, then hang with the fifo held open until we die
            fd = os.open(fifo, os.O_WRONLY)
            os.write(fd, f"{os.getpid()}\\n".encode())
            while True:
                time.sleep(60)
        return [{"type": "T", "pn": "PN-1", "sn": f"PID-{os.getpid()}", "rev": "A", "processCode": 10,
                 "result": "P", "start": "2026-11-02T08:00:00+01:00",
                 "root": {"id": 1, "group": "M", "stepType": "SequenceCall", "name": "Main", "status": "P",
                          "steps": []}}]
'''


def _redirector(tmp_path: Path) -> Path:
    """An executable that starts the real python as its child, as a Windows venv's python.exe does."""
    script = tmp_path / "venv-python"
    script.write_text(f"#!{sys.executable}\nimport subprocess, sys\n"
                      f"sys.exit(subprocess.call([{sys.executable!r}, *sys.argv[1:]]))\n")
    script.chmod(0o755)
    return script


def _context(**arguments: Any) -> ConvertContext:
    return ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="t",
                          arguments=arguments)


def _sn(result: Any) -> str:
    assert isinstance(result, Converted), result
    return str(json.loads(result.reports[0])["sn"])


# ----------------------------------------------------------------------------------- imports

def test_every_module_imports_and_every_help_works_with_the_posix_modules_blocked() -> None:
    done = subprocess.run([sys.executable, str(WINSIM), "check"], capture_output=True, text=True,
                          env=child_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    modules, commands = (int(summary.split()[1]), int(summary.split()[3]))
    assert modules >= 60 and commands >= 25, summary  # it really walked the package and the parser
    assert "0 failure(s)" in summary


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    """The simulation is only worth something if a module-level POSIX import does fail under it."""
    module = tmp_path / "posixonly.py"
    module.write_text("import resource\n")
    code = f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(tmp_path)!r}]; import winsim; winsim.install(); " \
           "import posixonly"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "resource" in done.stderr


def test_a_command_runs_with_the_posix_modules_blocked(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    done = subprocess.run([sys.executable, str(WINSIM), "run", "config", "init", str(config)],
                          capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, str(WINSIM), "run", "-c", str(config), "status", "--json"],
                          capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "reports" in json.loads(done.stdout)


# ------------------------------------------------------------------------------ the redirector

async def test_workers_behind_a_venv_redirector_convert_every_file_at_the_first_try(tmp_path: Path) -> None:
    converter = tmp_path / "pidconv.py"
    converter.write_text(PID_CONVERTER)
    sources = []
    for i in range(9):
        sources.append(tmp_path / f"f{i}.txt")
        sources[-1].write_text(str(i))

    pool = WorkerPool(1, python=str(_redirector(tmp_path)))
    results: list[Any] = []
    try:
        for batch in range(3):
            if batch:
                # A station's quiet time between files. The old liveness check (the worker's
                # parent pid against the service's, once a second) killed the worker here.
                await anyio.sleep(1.5)
            chunk = sources[batch * 3:batch * 3 + 3]
            results += await pool.convert_many(f"{converter}:Pid", [(p, _context(), SHA) for p in chunk],
                                               timeout=30)
    finally:
        await pool.aclose()
    started = pool.started
    assert len(results) == 9 and not [r for r in results if isinstance(r, ConversionFailed)]
    assert started == 1  # one worker did all three batches: none died in between
    assert len({_sn(r) for r in results}) == 1


async def test_a_worker_that_died_while_idle_is_a_retry_not_a_failed_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    converter = tmp_path / "pidconv.py"
    converter.write_text(PID_CONVERTER)
    source = tmp_path / "a.txt"
    source.write_text("a")

    with caplog.at_level(logging.INFO):
        pool = WorkerPool(1, python=str(_redirector(tmp_path)))
        try:
            converted = await pool.convert(f"{converter}:Pid", source, _context(), sha256=SHA, timeout=30)
            first = _sn(converted)
            pid = int(first.split("-")[1])
            os.kill(pid, signal.SIGKILL)  # the real interpreter behind the redirector dies while idle
            second = await pool.convert(f"{converter}:Pid", source, _context(), sha256=SHA, timeout=30)
        finally:
            await pool.aclose()
        started = pool.started
    assert isinstance(second, Converted) and _sn(second) != first  # converted, by a new worker
    assert started == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the check uses a named pipe")
def test_a_hung_worker_behind_a_redirector_exits_when_the_service_is_killed(tmp_path: Path) -> None:
    converter = tmp_path / "pidconv.py"
    converter.write_text(PID_CONVERTER)
    source = tmp_path / "a.txt"
    source.write_text("a")
    fifo = tmp_path / "worker.fifo"
    os.mkfifo(fifo)
    service = tmp_path / "service.py"
    # A stand-in service in a process of its own (its own event loop), so that it can be killed.
    service.write_text(textwrap.dedent(f"""
        import anyio
        from pathlib import Path
        from stationflow.engine.convert.api import ConvertContext
        from stationflow.engine.convert.pool import WorkerPool

        async def main():
            pool = WorkerPool(1, python={str(_redirector(tmp_path))!r})
            await pool.convert({f"{converter}:Pid"!r}, Path({str(source)!r}),
                               ConvertContext(station_name="S", arguments={{"fifo": {str(fifo)!r}}}),
                               sha256={SHA!r}, timeout=3600)

        anyio.run(main)
    """))
    process = subprocess.Popen([sys.executable, str(service)], env=child_env())
    try:
        reader = os.open(fifo, os.O_RDONLY)  # returns once the worker opened it for writing
        ready, _, _ = select.select([reader], [], [], 60)
        assert ready, "the worker never started converting"
        worker_pid = int(os.read(reader, 64).decode().strip())
        assert worker_pid != process.pid
        process.kill()  # kill -9 of the service, mid-file
        process.wait(timeout=30)
        # The fifo reaches end-of-file when its last writer, the hung worker, has exited.
        ready, _, _ = select.select([reader], [], [], 20)
        assert ready and os.read(reader, 64) == b"", "the orphaned worker is still running"
        os.close(reader)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------- encodings

def test_machines_graph_prints_through_a_cp1252_console() -> None:
    env = {**child_env(), "PYTHONIOENCODING": "cp1252", "PYTHONUTF8": "0"}
    done = subprocess.run([sys.executable, "-m", "stationflow", "machines", "graph", "report"],
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    text = done.stdout.decode("cp1252")
    assert text.startswith("stateDiagram") and "pending" in text


# ------------------------------------------------------------------ files held by another program

def _held_error(path: object) -> PermissionError:
    """What Windows raises for a file another program holds open (ERROR_SHARING_VIOLATION)."""
    return PermissionError(13, "The process cannot access the file because it is being used by another process",
                           str(path))


def test_a_rename_of_a_held_file_is_retried_and_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine import durable

    src, dst = tmp_path / "a.json", tmp_path / "b.json"
    src.write_text("report")
    real = os.replace
    failures = iter([True, True])

    def held_twice(a: Any, b: Any) -> None:
        if next(failures, False):
            raise _held_error(a)
        real(a, b)

    monkeypatch.setattr(durable, "_WINDOWS", True)
    monkeypatch.setattr(durable.os, "replace", held_twice)
    durable.replace(src, dst)
    assert dst.read_text() == "report" and not src.exists()
    note = durable.last_held()
    assert note is not None and note.succeeded and note.attempts == 3 and note.operation == "rename"
    assert "went through after 3 attempt(s)" in str(note)


def test_a_delete_of_a_file_held_for_good_gives_up_with_a_hint(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine import durable
    from stationflow.engine.errors import StorageError

    victim = tmp_path / "source.csv"
    victim.write_text("x")
    calls: list[str] = []

    def always_held(path: Any) -> None:
        calls.append(str(path))
        raise _held_error(path)

    monkeypatch.setattr(durable, "_WINDOWS", True)
    monkeypatch.setattr(durable, "HELD_RETRIES", (0.001, 0.002, 0.004))
    monkeypatch.setattr(durable.os, "unlink", always_held)
    with pytest.raises(StorageError, match="cannot remove .*antivirus"):
        durable.unlink(victim)
    assert len(calls) == 4  # the first try and one per wait: bounded
    note = durable.last_held()
    assert note is not None and not note.succeeded and note.operation == "delete"
    monkeypatch.undo()
    assert durable.unlink(tmp_path / "never-there") is False
    assert durable.unlink(victim) is True and not victim.exists()


def test_on_posix_a_permission_error_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine import durable

    calls = []

    def denied() -> None:
        calls.append(1)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(durable, "_WINDOWS", False)
    with pytest.raises(PermissionError):
        durable.retry_held("rename", tmp_path, denied)
    assert calls == [1]


def test_log_rotation_of_a_held_log_loses_no_line_and_rotates_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from stationflow.engine import durable
    from stationflow.engine.service.logs import RotatingLog

    path = tmp_path / "stationflow.log"
    handler = RotatingLog(path, maxBytes=300, backupCount=2, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.heldlog")
    logger.propagate = False
    logger.addHandler(handler)
    real_rename = os.rename

    def held(source: Any, dest: Any) -> None:
        if str(source) == str(path):
            raise _held_error(source)
        real_rename(source, dest)

    monkeypatch.setattr(durable, "_WINDOWS", True)
    monkeypatch.setattr(durable, "HELD_RETRIES", (0.001,))
    monkeypatch.setattr(os, "rename", held)
    try:
        for i in range(40):
            logger.warning("line %03d of a log a viewer holds open", i)
        assert handler.problem is not None and "could not be rotated" in handler.problem
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines == [f"line {i:03d} of a log a viewer holds open" for i in range(40)]  # none lost
        assert not (tmp_path / "stationflow.log.1").exists()
        monkeypatch.setattr(os, "rename", real_rename)  # the viewer is closed
        handler._next_try = 0.0
        logger.warning("after the viewer closed")
        assert handler.problem is None
        assert (tmp_path / "stationflow.log.1").exists()
        assert path.read_text(encoding="utf-8") == "after the viewer closed\n"
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert "Logging error" not in capsys.readouterr().err


def test_status_shows_a_held_file_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine import durable
    from stationflow.engine.config_file import write_starter
    from stationflow.engine.service.service import Service

    config = tmp_path / "station.yaml"
    write_starter(config, station_name="S-1")
    monkeypatch.setattr(durable, "_last_held", None)
    service = Service(config)
    assert service.status()["service"]["file_notes"] == []
    held = iter([True])

    def once(path: Any) -> None:
        if next(held, False):
            raise _held_error(path)

    monkeypatch.setattr(durable, "HELD_RETRIES", (0.001,))
    durable.retry_held("delete", tmp_path / "x.csv", lambda: once(tmp_path / "x.csv"), windows=True)
    [note] = service.status()["service"]["file_notes"]
    assert "x.csv" in note and "held by another program" in note and "went through" in note


async def test_a_converter_that_prints_any_character_converts_on_a_cp1252_console(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    converter = tmp_path / "chatty.py"
    converter.write_text(PID_CONVERTER.replace("        fifo = context", "        print('résultat → ✓ 合格')\n"
                                                                      "        fifo = context"), encoding="utf-8")
    source = tmp_path / "a.txt"
    source.write_text("a")
    monkeypatch.setenv("PYTHONIOENCODING", "cp1252")

    pool = WorkerPool(1)
    try:
        converted = await pool.convert(f"{converter}:Pid", source, _context(), sha256=SHA, timeout=30)
    finally:
        await pool.aclose()
    assert _sn(converted).startswith("PID-")
