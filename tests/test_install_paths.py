"""``stationflow service install|uninstall`` carried out, on systemd and on a simulated Windows, and
the paths around them: the commands really run (fake ``systemctl``/``icacls`` on PATH that record
their arguments), the errors a person sees (no systemd, not root, a command failing or missing, no
WinSW), the current account's SID read through a simulated Win32 API, and the offline bundle's
error paths (a foreign file in the wheel, a failed download, an sdist, pip's last words)."""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from stationflow.engine.cli import service_setup
from stationflow.engine.cli.main import main
from stationflow.engine.config_file import write_starter
from stationflow.engine.errors import StorageError
from stationflow.engine.install import bundle, units, winacl

NO_SUCH_USER = "sf-test-no-such-user"


# ------------------------------------------------------------------------------ fake programs

def _fake_bin(folder: Path, log: Path, programs: dict[str, int]) -> Path:
    """A folder of shell scripts: each appends its name and arguments (tab-separated) to ``log``
    and exits with its code; ``systemctl`` fails only on the subcommand named in $FAIL_ON."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, code in programs.items():
        script = folder / name
        script.write_text(
            "#!/bin/sh\n"
            f"{{ printf '%s' \"{name}\"; for a in \"$@\"; do printf '\\t%s' \"$a\"; done; printf '\\n'; }} >> '{log}'\n"
            f"if [ -n \"${{FAIL_ON:-}}\" ] && [ \"$1\" = \"$FAIL_ON\" ]; then echo 'Access is denied.'; exit 5; fi\n"
            f"exit {code}\n")
        script.chmod(0o755)
    return folder


def _ran(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split("\t") for line in log.read_text().splitlines()]


def _station(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "station.yaml"
    write_starter(config, station_name="LINE-9")
    return config


@pytest.fixture
def linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """systemd simulated: root, fake programs first on PATH, units written into tmp_path/units."""
    log = tmp_path / "ran.log"
    fake = _fake_bin(tmp_path / "bin", log, {p: 0 for p in ("systemctl", "useradd", "install", "chown", "chmod")})
    monkeypatch.setenv("PATH", str(fake))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    unit_dir = tmp_path / "units"
    monkeypatch.setattr(units, "linux_plan", functools.partial(units.linux_plan, unit_dir=unit_dir))
    monkeypatch.setattr(units, "linux_uninstall_plan", functools.partial(units.linux_uninstall_plan, unit_dir=unit_dir))
    monkeypatch.setattr(service_setup, "_THIS_OS", "linux")
    return {"log": log, "bin": fake, "units": unit_dir}


# ------------------------------------------------------------------------------- systemd

def test_install_on_systemd_writes_the_unit_and_runs_each_command(
        tmp_path: Path, linux: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path / "etc" / "stationflow")
    data = tmp_path / "etc" / "stationflow" / "stationflow-data"
    code = main(["-c", str(config), "service", "install", "--os", "linux", "--user", NO_SUCH_USER, "--no-start"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert data.is_dir()  # made before the commands run
    unit = (linux["units"] / "stationflow.service").read_text()
    assert f"User={NO_SUCH_USER}\n" in unit and f"run -c {config}" in unit
    folder = str(config.parent)
    assert _ran(linux["log"]) == [
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", NO_SUCH_USER],
        ["install", "-d", "-m", "0750", "-o", NO_SUCH_USER, "-g", NO_SUCH_USER, str(data)],
        ["chown", "-R", f"{NO_SUCH_USER}:{NO_SUCH_USER}", str(data)],
        ["chown", f"root:{NO_SUCH_USER}", str(config)],
        ["chmod", "0640", str(config)],
        ["chown", f"root:{NO_SUCH_USER}", folder],   # a folder of its own: the service may save there
        ["chmod", "0770", folder],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "stationflow.service"],  # --no-start: no restart
    ]
    assert f"installed the stationflow service for {config}\n" in out
    assert f"check it: stationflow -c {config} status\n" in out


def test_install_for_an_existing_user_adds_no_user_and_starts_the_service(
        tmp_path: Path, linux: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    assert main(["-c", str(config), "service", "install", "--os", "linux", "--user", "root", "--name", "line9"]) == 0
    commands = _ran(linux["log"])
    assert not [c for c in commands if c[0] == "useradd"]
    assert commands[-2:] == [["systemctl", "enable", "line9.service"], ["systemctl", "restart", "line9.service"]]
    assert (linux["units"] / "line9.service").is_file()
    out = capsys.readouterr().out
    # the config's folder is not stationflow's own: the person is told to give write access by hand
    assert f"saving settings through the running service writes {tmp_path}" in out


def test_uninstall_on_systemd_removes_the_unit_and_keeps_the_data(
        tmp_path: Path, linux: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    linux["units"].mkdir()
    (linux["units"] / "stationflow.service").write_text("[Unit]\n")
    spooled = tmp_path / "stationflow-data" / "spool" / "pending" / "r1.json"
    spooled.parent.mkdir(parents=True)
    spooled.write_text("{}")
    assert main(["-c", str(config), "service", "uninstall", "--os", "linux"]) == 0
    assert not (linux["units"] / "stationflow.service").exists()
    assert _ran(linux["log"]) == [["systemctl", "disable", "--now", "stationflow.service"],
                                  ["systemctl", "daemon-reload"]]
    assert spooled.read_text() == "{}"
    out = capsys.readouterr().out
    assert f"removed {linux['units'] / 'stationflow.service'}" in out
    assert f"removed the stationflow service; the data dir {tmp_path / 'stationflow-data'} is kept" in out
    # Again: the unit is gone already, which is no error.
    assert main(["-c", str(config), "service", "uninstall", "--os", "linux"]) == 0


def test_uninstall_for_the_other_os_is_refused_and_its_plan_names_what_it_would_remove(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    monkeypatch.setattr(service_setup, "_THIS_OS", "linux")
    assert main(["-c", str(config), "service", "uninstall", "--os", "windows"]) == 1
    assert "cannot uninstall a windows service on linux" in capsys.readouterr().err
    plan = units.linux_uninstall_plan(units.ServiceSpec(config_path=str(config), command=("/x/stationflow",),
                                                        data_dir="/d", station="S", grace_s=1))
    text = plan.describe()
    assert "# remove /etc/systemd/system/stationflow.service\n" in text
    assert "systemctl disable --now stationflow.service\n" in text


def test_without_systemd_install_says_so_and_changes_nothing(
        tmp_path: Path, linux: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["-c", str(config), "service", "install", "--os", "linux"]) == 1
    err = capsys.readouterr().err
    assert "systemd is not running this system (no systemctl)" in err and "service print" in err
    assert not (linux["units"]).exists() and not (tmp_path / "stationflow-data").exists()


def test_install_as_another_user_than_root_is_refused_with_sudo_as_the_hint(
        tmp_path: Path, linux: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["-c", str(config), "service", "uninstall", "--os", "linux"]) == 1
    err = capsys.readouterr().err
    assert "`stationflow service uninstall` needs root" in err and "sudo" in err
    assert _ran(linux["log"]) == []


def test_a_failing_command_stops_the_install_and_is_named(
        tmp_path: Path, linux: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    monkeypatch.setenv("FAIL_ON", "enable")
    assert main(["-c", str(config), "service", "install", "--os", "linux", "--user", "root"]) == 1
    err = capsys.readouterr().err
    assert "`systemctl enable stationflow.service` failed with exit code 5" in err
    assert _ran(linux["log"])[-1] == ["systemctl", "enable", "stationflow.service"]  # restart not attempted


def test_a_missing_program_is_exit_127_with_its_name(
        tmp_path: Path, linux: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    (linux["bin"] / "useradd").unlink()
    assert main(["-c", str(config), "service", "install", "--os", "linux", "--user", NO_SUCH_USER]) == 1
    err = capsys.readouterr().err
    assert "stationflow: useradd not found" in err
    assert "failed with exit code 127" in err
    assert _ran(linux["log"]) == []  # the first command failed: nothing after it ran


def test_without_the_pwd_module_every_user_counts_as_existing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service_setup._user_exists(NO_SUCH_USER) is False
    assert service_setup._user_exists("root") is True
    monkeypatch.setitem(sys.modules, "pwd", None)  # as on Windows: `import pwd` fails
    assert service_setup._user_exists(NO_SUCH_USER) is True


# --------------------------------------------------------------------- simulated Windows

@pytest.fixture
def windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """This process plays Windows: paths are Windows paths relative to ``cwd``, commands recorded."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(service_setup, "_THIS_OS", "windows")
    log = tmp_path / "ran.log"
    monkeypatch.setenv("PATH", str(_fake_bin(tmp_path / "bin", log, {})))  # no sc.exe: not registered
    ran: list[list[str]] = []

    def runner(command: list[str]) -> int:
        ran.append(command)
        return 0

    monkeypatch.setattr(service_setup, "_run", runner)
    return {"cwd": cwd, "ran": ran, "log": log, "bin": tmp_path / "bin"}


def _wrapper(config: Path, name: str = "stationflow") -> str:
    return str(units.service_dir(str(config)) / f"{name}-service.exe")


def _placed(cwd: Path, config: Path, name: str) -> Path:
    """Where a file of the service folder lands when this Linux process plays Windows: the Windows
    path (``\\tmp\\...``) taken through ``Path()``, relative to the current folder."""
    return cwd / Path(units.service_dir(str(config)) / name)


def test_windows_install_copies_winsw_restricts_acls_and_registers(
        tmp_path: Path, windows: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path / "stationflow")  # a folder of its own: it is restricted too
    winsw = tmp_path / "WinSW-x64.exe"
    winsw.write_bytes(b"MZ winsw")
    code = main(["-c", str(config), "service", "install", "--os", "windows", "--winsw", str(winsw),
                 "--account", r"NT AUTHORITY\LocalService"])
    out = capsys.readouterr().out
    assert code == 0, out
    wrapper = _wrapper(config)
    assert (windows["cwd"] / wrapper).read_bytes() == b"MZ winsw"  # copied, not run through cmd's copy
    data = str(tmp_path / "stationflow" / "stationflow-data")
    local_service = "*S-1-5-19"
    assert windows["ran"] == [
        ["icacls", str(config.parent), "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F",
         "*S-1-5-32-544:(OI)(CI)F", f"{local_service}:(OI)(CI)F", "/Q"],
        ["icacls", str(config), "/inheritance:r", "/grant:r", "*S-1-5-18:F", "*S-1-5-32-544:F",
         f"{local_service}:F", "/Q"],
        ["icacls", data, "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F",
         f"{local_service}:(OI)(CI)F", "/Q"],
        [wrapper, "install"],
        ["sc.exe", "failureflag", "stationflow", "1"],
        [wrapper, "start"],
    ]
    xml = _placed(windows["cwd"], config, "stationflow-service.xml").read_text()
    assert "<domain>NT AUTHORITY</domain><user>LocalService</user>" in xml
    assert f"installed the stationflow service for {config}" in out


def test_windows_install_again_stops_and_removes_the_registered_service_first(
        tmp_path: Path, windows: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path / "station one")
    _fake_bin(windows["bin"], windows["log"], {"sc.exe": 0})  # `sc.exe query stationflow` finds it
    wrapper = _wrapper(config)
    placed = _placed(windows["cwd"], config, "stationflow-service.exe")
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"MZ")  # the wrapper is already in place: no --winsw needed
    assert main(["-c", str(config), "service", "install", "--os", "windows", "--no-start",
                 "--account", "PLANT\\svc-station$"]) == 0
    assert _ran(windows["log"]) == [["sc.exe", "query", "stationflow"]]
    commands = [c for c in windows["ran"] if c[0] != "icacls"]
    assert commands == [[wrapper, "stop"], [wrapper, "uninstall"], [wrapper, "install"],
                        ["sc.exe", "failureflag", "stationflow", "1"]]  # --no-start: no start
    assert all(c[-2] == "PLANT\\svc-station$:F" or c[-2].endswith("(OI)(CI)F")
               for c in windows["ran"] if c[0] == "icacls")
    out = capsys.readouterr().out
    assert "allowservicelogon" in _placed(windows["cwd"], config, "stationflow-service.xml").read_text()
    assert "installed the stationflow service" in out


def test_windows_install_without_winsw_says_where_to_get_it(
        tmp_path: Path, windows: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    assert main(["-c", str(config), "service", "install", "--os", "windows"]) == 1
    err = capsys.readouterr().err
    assert "the WinSW service wrapper is needed" in err and "--winsw PATH" in err and "github.com/winsw" in err
    assert windows["ran"] == [] and not (tmp_path / "stationflow-data").exists()


def test_windows_uninstall_stops_and_removes_the_service_and_keeps_the_wrapper(
        tmp_path: Path, windows: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    wrapper = _wrapper(config)
    xml = _placed(windows["cwd"], config, "stationflow-service.xml")
    xml.parent.mkdir(parents=True)
    xml.write_text("<service/>")
    placed = _placed(windows["cwd"], config, "stationflow-service.exe")
    placed.write_bytes(b"MZ")
    assert main(["-c", str(config), "service", "uninstall", "--os", "windows"]) == 0
    assert windows["ran"] == [[wrapper, "stop"], [wrapper, "uninstall"]]
    assert not xml.exists() and placed.exists()
    out = capsys.readouterr().out
    assert f"removed the stationflow service; the data dir {tmp_path / 'stationflow-data'} is kept" in out
    assert f"note: kept: the data dir {tmp_path / 'stationflow-data'}" in out


def test_a_linux_service_cannot_be_installed_on_windows(
        tmp_path: Path, windows: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    assert main(["-c", str(config), "service", "install", "--os", "linux"]) == 1
    assert "cannot install a linux service on windows" in capsys.readouterr().err
    assert windows["ran"] == []


def test_windows_service_plan_notes_each_watch_folder_for_the_account() -> None:
    spec = units.ServiceSpec(config_path=r"C:\st\station.yaml", command=(r"C:\sf\python.exe", "-m", "stationflow"),
                             data_dir=r"C:\st\data", station="S&1", grace_s=10, writable=(r"D:\drop",))
    plan = units.windows_plan(spec, account="svc")
    assert "the service account (svc) must be able to read and write D:\\drop" in plan.notes
    assert any("needs WinSW" in note for note in plan.notes)
    xml = plan.files[0].text
    assert "<startargument>-m</startargument>" in xml and "S&amp;1" in xml
    assert "<user>svc</user><allowservicelogon>true</allowservicelogon>" in xml


# ---------------------------------------------------------------------- unit odds and ends

def test_without_the_script_the_service_runs_python_dash_m_stationflow(tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    this_os = "windows" if sys.platform == "win32" else "linux"
    assert units.stationflow_command(this_os, python=str(python)) == (str(python), "-m", "stationflow")
    (python.parent).mkdir(parents=True)
    script = python.parent / ("stationflow.exe" if this_os == "windows" else "stationflow")
    script.write_text("")
    assert units.stationflow_command(this_os, python=str(python)) == (str(script),)


def test_a_stationflow_in_a_home_folder_gets_a_note_about_203_exec() -> None:
    spec = units.ServiceSpec(config_path="/etc/stationflow/station.yaml", command=("/home/ops/venv/bin/stationflow",),
                             data_dir="/var/lib/stationflow", station="S-1", grace_s=60)
    notes = units.linux_plan(spec).notes
    assert any("/home/ops/venv/bin/stationflow is in a home folder" in n and "203/EXEC" in n for n in notes)


# ------------------------------------------------------------------ Windows ACLs (icacls)

def test_restrict_runs_the_real_icacls_program_and_reports_its_refusal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "icacls.log"
    monkeypatch.setenv("PATH", str(_fake_bin(tmp_path / "bin", log, {"icacls": 0})))
    secret = tmp_path / "control.token"
    secret.write_text("t")
    command = winacl.restrict(secret, ["S-1-5-21-1-2-3-1001"], platform="win32")
    assert _ran(log) == [command] == [["icacls", str(secret), "/inheritance:r", "/grant:r", "*S-1-5-18:F",
                                        "*S-1-5-32-544:F", "*S-1-5-21-1-2-3-1001:F", "/Q"]]
    # icacls refuses (it prints why): the person sees its words, not a warning in a log
    monkeypatch.setenv("FAIL_ON", str(secret))
    with pytest.raises(StorageError, match=r"cannot restrict who may read .*control.token: icacls said: "
                                           r"Access is denied\.") as info:
        winacl.restrict(secret, ["S-1-5-21-1-2-3-1001"], platform="win32")
    assert "administrator" in str(info.value)


def test_an_icacls_that_fails_silently_is_reported_by_its_exit_code(tmp_path: Path) -> None:
    def silent(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1332, "", None)

    with pytest.raises(StorageError, match="icacls said: exit code 1332"):
        winacl.restrict(tmp_path, ["PLANT\\nobody"], run=silent, platform="win32")


def test_restrict_defaults_to_the_account_running_this_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(winacl, "current_user_sid", lambda: "S-1-5-21-77-88-99-1105")
    seen: list[list[str]] = []

    def ok(command: list[str]) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, "Successfully processed 1 files", None)

    winacl.restrict(tmp_path, run=ok, platform="win32")
    assert seen[0][4:7] == ["*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F", "*S-1-5-21-77-88-99-1105:(OI)(CI)F"]


class _Function:
    """A Win32 function as ctypes shows it: argtypes/restype are set, the call is simulated."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.calls: list[tuple[Any, ...]] = []
        self.argtypes: Any = None
        self.restype: Any = None

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.body(*args)


class _Win32:
    """advapi32 and kernel32 for ``current_user_sid``: a token, a TOKEN_USER buffer, a SID string."""

    TOKEN, SID_POINTER, PROCESS = 0x1234, 0x5678, 0x77

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.freed: list[str] = []
        self.closed: list[int] = []
        size_needed = ctypes.sizeof(ctypes.c_void_p) * 2

        def open_token(process: Any, access: int, token_ref: Any) -> int:
            assert process == self.PROCESS and access == 0x0008  # TOKEN_QUERY
            if fail == "OpenProcessToken":
                return 0
            token_ref._obj.value = self.TOKEN
            return 1

        def token_info(token: Any, kind: int, buffer: Any, size: Any, size_ref: Any) -> int:
            assert token.value == self.TOKEN and kind == 1  # TokenUser
            if buffer is None:  # the first call asks for the size
                size_ref._obj.value = size_needed
                return 0
            if fail == "GetTokenInformation":
                return 0
            assert size.value == size_needed
            ctypes.cast(buffer, ctypes.POINTER(ctypes.c_void_p))[0] = self.SID_POINTER
            return 1

        def to_string(sid: Any, text_ref: Any) -> int:
            assert sid == self.SID_POINTER  # the PSID at the start of TOKEN_USER
            if fail == "ConvertSidToStringSidW":
                return 0
            text_ref._obj.value = "S-1-5-21-1004336348-1177238915-682003330-512"
            return 1

        self.functions = {
            "GetCurrentProcess": _Function(lambda: self.PROCESS),
            "OpenProcessToken": _Function(open_token),
            "GetTokenInformation": _Function(token_info),
            "ConvertSidToStringSidW": _Function(to_string),
            "LocalFree": _Function(lambda text: self.freed.append(text.value)),
            "CloseHandle": _Function(lambda handle: self.closed.append(handle.value)),
        }

    def dll(self, name: str, use_last_error: bool = False) -> Any:
        assert name in ("advapi32", "kernel32") and use_last_error
        return type("DLL", (), dict(self.functions))()


def test_the_current_accounts_sid_is_read_from_the_process_token(monkeypatch: pytest.MonkeyPatch) -> None:
    win32 = _Win32()
    monkeypatch.setattr(ctypes, "WinDLL", win32.dll, raising=False)
    assert winacl.current_user_sid() == "S-1-5-21-1004336348-1177238915-682003330-512"
    assert win32.freed == ["S-1-5-21-1004336348-1177238915-682003330-512"]  # LocalFree on the string
    assert win32.closed == [_Win32.TOKEN]  # and the token handle closed
    assert win32.functions["OpenProcessToken"].restype is not None  # declared, not left to ctypes' int


@pytest.mark.parametrize("failing", ["OpenProcessToken", "GetTokenInformation", "ConvertSidToStringSidW"])
def test_a_failing_win32_call_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    win32 = _Win32(fail=failing)
    monkeypatch.setattr(ctypes, "WinDLL", win32.dll, raising=False)
    monkeypatch.setattr(ctypes, "get_last_error", lambda: 1314, raising=False)
    with pytest.raises(OSError, match=rf"^{failing} failed \(Windows error 1314\)$"):
        winacl.current_user_sid()
    assert win32.freed == []
    # the token is closed whenever it was opened
    assert win32.closed == ([] if failing == "OpenProcessToken" else [_Win32.TOKEN])


# ----------------------------------------------------------------------- the offline bundle

def _fake_pip(extra: dict[str, bytes] | None = None, download_code: int = 0,
              sdist: bool = False) -> tuple[list[list[str]], Any]:
    """``pip wheel`` writes a stationflow wheel (with ``extra`` files in it); ``pip download``
    drops a dependency wheel (and an sdist when asked)."""
    seen: list[list[str]] = []

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        seen.append(list(command))
        if "wheel" in command:
            out = Path(command[command.index("--wheel-dir") + 1])
            out.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(out / "stationflow-9.9-py3-none-any.whl", "w") as wheel:
                wheel.writestr("stationflow/__init__.py", "")
                wheel.writestr("stationflow-9.9.dist-info/METADATA", "Name: stationflow\n")
                for name, data in (extra or {}).items():
                    wheel.writestr(name, data)
            return subprocess.CompletedProcess(command, 0, "", None)
        dest = Path(command[command.index("--dest") + 1])
        if download_code:
            return subprocess.CompletedProcess(command, download_code,
                                               "Collecting anyio\nERROR: No matching distribution found for anyio\n")
        (dest / "anyio-4.0-py3-none-any.whl").write_bytes(b"PK")
        if sdist:
            (dest / "watchdog-6.0.tar.gz").write_bytes(b"gz")
        return subprocess.CompletedProcess(command, 0, "", None)

    return seen, run


def test_bundle_from_the_command_line_writes_sums_and_scripts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen, run = _fake_pip()
    monkeypatch.setattr(bundle, "_run", run)
    monkeypatch.setattr(bundle, "_can_build_offline", lambda python: True)
    assert main(["bundle", str(tmp_path / "b"), "--platform", "local", "--python", "3.11"]) == 0
    out = capsys.readouterr().out
    assert f"copy {tmp_path / 'b'} to the station and run install.cmd (Windows) or install.sh (Linux)" in out
    sums = (tmp_path / "b" / "SHA256SUMS").read_text().splitlines()
    assert [line.split("  ")[1] for line in sums] == ["wheels/anyio-4.0-py3-none-any.whl",
                                                      "wheels/stationflow-9.9-py3-none-any.whl"]
    assert 'stationflow==9.9' in (tmp_path / "b" / "install.sh").read_text()
    assert [c[3] for c in seen] == ["wheel", "download"]
    assert "--no-build-isolation" in seen[0]  # setuptools here can build: nothing fetched for the build


def test_a_wheel_with_files_outside_the_package_is_refused(tmp_path: Path) -> None:
    _, run = _fake_pip(extra={"engine/__init__.py": b"", "tests/test_x.py": b""})
    with pytest.raises(bundle.BundleError, match="holds files outside the stationflow package: "
                                                 "engine/__init__.py, tests/test_x.py") as info:
        bundle.make_bundle(tmp_path / "b", bundle.targets(["local"], None), run=run, out=lambda _: None)
    assert "pyproject.toml" in str(info.value)


def test_a_failed_download_names_the_target_and_pips_error(tmp_path: Path) -> None:
    _, run = _fake_pip(download_code=1)
    with pytest.raises(bundle.BundleError, match="pip could not download the dependencies for") as info:
        bundle.make_bundle(tmp_path / "b", bundle.targets(["win_amd64"], ["3.12"]), run=run, out=lambda _: None)
    assert info.value.detail == "ERROR: No matching distribution found for anyio"
    assert not (tmp_path / "b" / "SHA256SUMS").exists()


def test_an_sdist_in_the_bundle_is_refused_it_would_need_building_on_the_station(tmp_path: Path) -> None:
    _, run = _fake_pip(sdist=True)
    with pytest.raises(bundle.BundleError, match="would have to be built on the station: watchdog-6.0.tar.gz"):
        bundle.make_bundle(tmp_path / "b", bundle.targets(["local"], None), run=run, out=lambda _: None)
    assert not (tmp_path / "b" / "SHA256SUMS").exists()


def test_pips_output_is_shown_when_it_fails(capfd: pytest.CaptureFixture[str]) -> None:
    done = bundle._run([sys.executable, "-c", "import sys; print('ERROR: no index'); sys.exit(3)"])
    assert done.returncode == 3
    assert "ERROR: no index" in capfd.readouterr().err


def test_an_offline_build_needs_setuptools_that_can_make_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bundle._can_build_offline("/another/python") is False  # not this interpreter: cannot tell

    def versions(**have: str) -> Any:
        def version(name: str) -> str:
            if name not in have:
                raise importlib.metadata.PackageNotFoundError(name)
            return have[name]
        return version

    for have, expected in (({}, False), ({"setuptools": "x.y"}, False), ({"setuptools": "67.9"}, False),
                           ({"setuptools": "69.5"}, False), ({"setuptools": "69.5", "wheel": "0.43"}, True),
                           ({"setuptools": "70.1"}, True)):
        monkeypatch.setattr(importlib.metadata, "version", versions(**have))
        assert bundle._can_build_offline(sys.executable) is expected, have
