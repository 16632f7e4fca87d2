"""``stationflow service print|install|uninstall``: the unit runs this station, install runs exactly
the commands it should, print changes nothing; and the Windows ACL commands are exactly right."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest

from stationflow.engine.cli.main import main
from stationflow.engine.config_file import load_config, resolved, write_starter
from stationflow.engine.errors import StorageError
from stationflow.engine.install import units, winacl

STATIONFLOW = str(Path(os.path.abspath(sys.executable)).parent / "stationflow")


def _station(folder: Path, extra: str = "") -> Path:
    config = folder / "station.yaml"
    write_starter(config, station_name="LINE-7")
    if extra:
        config.write_text(config.read_text() + extra)
    (folder / "drop").mkdir(exist_ok=True)
    return config


def _spec(config: Path, command: tuple[str, ...] = (STATIONFLOW,)) -> units.ServiceSpec:
    return units.ServiceSpec.from_config(resolved(load_config(config), config), config, command=command)


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _with_intake(config: Path) -> None:
    text = config.read_text().replace("intake: []", "intake:\n  - {name: ict, watch: ./drop, converter: wsjf, "
                                                    "after: move, move_to: ./done}")
    config.write_text(text.replace("  grace_s: 60", "  grace_s: 45"))


# ------------------------------------------------------------------------------------ print

def test_print_shows_a_unit_that_runs_this_station_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    _with_intake(config)
    before = _snapshot(tmp_path)
    assert main(["-c", str(config), "service", "print", "--os", "linux"]) == 0
    out = capsys.readouterr().out
    assert _snapshot(tmp_path) == before  # nothing written, not even the data dir
    assert not (tmp_path / "stationflow-data").exists()
    assert f"ExecStart={STATIONFLOW} run -c {config}\n" in out
    assert f"ExecReload={STATIONFLOW} reload -c {config}\n" in out
    assert "Restart=on-failure\n" in out and "User=stationflow\n" in out
    assert "TimeoutStopSec=75s\n" in out  # grace_s 45 + the margin: the service may finish its work
    assert "KillMode=mixed\n" in out
    rw = next(line for line in out.splitlines() if line.startswith("ReadWritePaths="))
    assert str(tmp_path / "stationflow-data") in rw
    assert f"-{tmp_path / 'drop'}" in rw and f"-{tmp_path / 'done'}" in rw
    assert "systemctl enable stationflow.service\nsystemctl restart stationflow.service" in out


def test_print_for_windows_shows_the_winsw_xml_and_the_commands(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    assert main(["-c", str(config), "service", "print", "--os", "windows"]) == 0
    out = capsys.readouterr().out
    start = out.index("<?xml")
    root = ET.fromstring(out[start:out.index("</service>") + len("</service>")])
    exe = str(Path(os.path.abspath(sys.executable)).parent / "stationflow.exe")
    assert root.findtext("executable") == exe and root.findtext("stopexecutable") == exe
    assert [a.text for a in root.findall("startargument")] == ["run", "-c", str(config)]
    assert [a.text for a in root.findall("stopargument")] == ["stop", "-c", str(config)]
    assert root.findtext("stoptimeout") == "90 sec"
    assert [f.get("action") for f in root.findall("onfailure")] == ["restart", "restart"]
    assert root.find("log") is not None and root.find("log").get("mode") == "roll-by-size"  # type: ignore[union-attr]
    assert "icacls" in out and "stationflow-service.exe install" in out and "sc.exe failureflag stationflow 1" in out


# -------------------------------------------------------------------------------- the unit

def test_a_data_dir_under_var_lib_is_a_state_directory() -> None:
    spec = units.ServiceSpec(config_path="/etc/stationflow/station.yaml", command=("/opt/stationflow/bin/stationflow",),
                             data_dir="/var/lib/stationflow", station="S-1", grace_s=60,
                             writable=("/srv/drop one",))
    unit = units.systemd_unit(spec)
    assert "StateDirectory=stationflow\n" in unit
    assert 'ReadWritePaths=/etc/stationflow -"/srv/drop one"\n' in unit  # data dir: by StateDirectory
    assert "PrivateTmp=true\n" in unit
    plan = units.linux_plan(spec)
    assert ["chown", "root:stationflow", "/etc/stationflow"] in plan.commands  # the service may save there
    assert not [c for c in plan.commands if c[0] == "install"]  # systemd makes the state directory


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    folder = tmp_path / "a station"  # a space in every path: quoting must hold
    folder.mkdir()
    config = _station(folder)
    _with_intake(config)
    unit = tmp_path / "stationflow.service"
    unit.write_text(units.systemd_unit(_spec(config)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    assert f'ExecStart={STATIONFLOW} run -c "{config}"' in unit.read_text()
    # And it does check: a unit naming a program that is not there is refused.
    unit.write_text(unit.read_text().replace(STATIONFLOW, "/nonexistent/stationflow"))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


# -------------------------------------------------------------------------- install, uninstall

class FakeRunner:
    def __init__(self, fail_on: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, command: list[str]) -> int:
        self.commands.append(command)
        return 1 if self.fail_on and self.fail_on in command else 0


def test_install_writes_the_unit_and_runs_exactly_these_commands(tmp_path: Path) -> None:
    config = _station(tmp_path)
    spec = _spec(config)
    runner = FakeRunner()
    units.apply(units.linux_plan(spec, user_exists=False, unit_dir=tmp_path / "units"), runner, out=lambda _: None)
    assert (tmp_path / "units" / "stationflow.service").read_text() == units.systemd_unit(spec)
    data = str(tmp_path / "stationflow-data")
    assert runner.commands == [
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "stationflow"],
        ["install", "-d", "-m", "0750", "-o", "stationflow", "-g", "stationflow", data],
        ["chown", "-R", "stationflow:stationflow", data],
        ["chown", "root:stationflow", str(config)],
        ["chmod", "0640", str(config)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "stationflow.service"],
        ["systemctl", "restart", "stationflow.service"],
    ]


def test_install_stops_at_the_first_failing_command_and_says_which(tmp_path: Path) -> None:
    config = _station(tmp_path)
    runner = FakeRunner(fail_on="daemon-reload")
    with pytest.raises(Exception, match="systemctl daemon-reload.*exit code 1"):
        units.apply(units.linux_plan(_spec(config), unit_dir=tmp_path), runner, out=lambda _: None)
    assert runner.commands[-1] == ["systemctl", "daemon-reload"]  # enable was not attempted


def test_uninstall_disables_and_removes_the_unit_and_keeps_the_data(tmp_path: Path) -> None:
    config = _station(tmp_path)
    spec = _spec(config)
    (tmp_path / "stationflow.service").write_text("old")
    data = tmp_path / "stationflow-data"
    (data / "spool" / "pending").mkdir(parents=True)
    (data / "spool" / "pending" / "r1.json").write_text("{}")
    runner = FakeRunner()
    plan = units.linux_uninstall_plan(spec, unit_dir=tmp_path)
    units.apply(plan, runner, out=lambda _: None)
    assert runner.commands == [["systemctl", "disable", "--now", "stationflow.service"],
                               ["systemctl", "daemon-reload"]]
    assert not (tmp_path / "stationflow.service").exists()
    assert (data / "spool" / "pending" / "r1.json").read_text() == "{}"
    assert any("kept" in note for note in plan.notes)


def test_windows_install_plan_restricts_acls_then_registers_with_winsw() -> None:
    spec = units.ServiceSpec(config_path=r"C:\ProgramData\stationflow\station.yaml",
                             command=(r"C:\Program Files\stationflow\Scripts\stationflow.exe",),
                             data_dir=r"C:\ProgramData\stationflow\data", station="S-1", grace_s=60)
    acl = [winacl.icacls_command(spec.data_dir, ["NT AUTHORITY\\LocalService"], directory=True)]
    plan = units.windows_plan(spec, account="NT AUTHORITY\\LocalService", winsw=r"D:\WinSW-x64.exe",
                              acl_commands=acl)
    wrapper = r"C:\ProgramData\stationflow\service\stationflow-service.exe"
    assert plan.commands == [
        ["copy", "/Y", r"D:\WinSW-x64.exe", wrapper],
        ["icacls", r"C:\ProgramData\stationflow\data", "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F",
         "*S-1-5-32-544:(OI)(CI)F", "*S-1-5-19:(OI)(CI)F", "/Q"],
        [wrapper, "install"],
        ["sc.exe", "failureflag", "stationflow", "1"],
        [wrapper, "start"],
    ]
    again = units.windows_plan(spec, winsw=None, registered=True)
    assert again.commands == [[wrapper, "stop"], [wrapper, "uninstall"], [wrapper, "install"],
                              ["sc.exe", "failureflag", "stationflow", "1"], [wrapper, "start"]]
    xml = ET.fromstring(plan.files[0].text)
    assert xml.findtext("serviceaccount/domain") == "NT AUTHORITY" and xml.findtext("serviceaccount/user") == "LocalService"
    assert str(plan.files[0].path) == r"C:\ProgramData\stationflow\service\stationflow-service.xml"


def test_install_for_the_other_os_is_refused_with_a_pointer_to_print(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _station(tmp_path)
    other = "windows" if sys.platform != "win32" else "linux"
    assert main(["-c", str(config), "service", "install", "--os", other]) == 1
    err = capsys.readouterr().err
    assert f"cannot install a {other} service" in err and "service print" in err
    assert not (tmp_path / "service").exists()


# ---------------------------------------------------------------------------------- ACLs

def test_icacls_command_for_a_file_and_a_folder() -> None:
    assert winacl.icacls_command(r"C:\ProgramData\stationflow\station.yaml", ["*S-1-5-21-1-2-3-1001"],
                                 directory=False) == [
        "icacls", r"C:\ProgramData\stationflow\station.yaml", "/inheritance:r", "/grant:r",
        "*S-1-5-18:F", "*S-1-5-32-544:F", "*S-1-5-21-1-2-3-1001:F", "/Q"]
    assert winacl.icacls_command(r"D:\data", ["LocalSystem"], directory=True) == [
        "icacls", r"D:\data", "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F", "/Q"]
    assert winacl.account_grant("S-1-5-21-9") == "*S-1-5-21-9"
    assert winacl.account_grant(r"PLANT\svc-station$") == r"PLANT\svc-station$"


def test_restrict_runs_icacls_on_windows_and_nothing_elsewhere(tmp_path: Path) -> None:
    token = tmp_path / "control.token"
    token.write_text("secret")
    calls: list[list[str]] = []

    def fake(command: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, "processed 1 files", None)

    assert winacl.restrict(token, ["*S-1-5-21-7"], run=fake, platform="linux") is None
    assert calls == []
    done = winacl.restrict(token, ["*S-1-5-21-7"], run=fake, platform="win32")
    assert calls == [done] == [["icacls", str(token), "/inheritance:r", "/grant:r", "*S-1-5-18:F",
                                "*S-1-5-32-544:F", "*S-1-5-21-7:F", "/Q"]]
    winacl.restrict(tmp_path, ["*S-1-5-21-7"], run=fake, platform="win32")
    assert calls[-1][4:7] == ["*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F", "*S-1-5-21-7:(OI)(CI)F"]


def test_restrict_failing_is_an_error_the_person_sees(tmp_path: Path) -> None:
    def refuse(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 5, "station.yaml: Access is denied.", None)

    with pytest.raises(StorageError, match="Access is denied"):
        winacl.restrict(tmp_path / "station.yaml", ["*S-1-5-21-7"], run=refuse, platform="win32")


def test_the_unit_dir_default_is_systemds() -> None:
    assert units.UNIT_DIR == PurePosixPath("/etc/systemd/system")


# ------------------------------------------------------------------------ default locations

def test_the_per_os_locations() -> None:
    from stationflow.engine.config_file import system_locations

    assert system_locations("windows", {"ProgramData": r"D:\PD"}) == (
        r"D:\PD\stationflow\station.yaml", r"D:\PD\stationflow\data")
    assert system_locations("windows", {}) == (
        r"C:\ProgramData\stationflow\station.yaml", r"C:\ProgramData\stationflow\data")
    assert system_locations("linux") == ("/etc/stationflow/station.yaml", "/var/lib/stationflow")


def test_the_config_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine import config_file

    system = tmp_path / "etc" / "station.yaml"
    monkeypatch.setattr(config_file, "system_config_path", lambda: system)
    monkeypatch.delenv(config_file.ENV_VAR, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert config_file.find_config_path(None) == work / "station.yaml"  # nothing anywhere: where init writes
    system.parent.mkdir()
    system.write_text("x")
    assert config_file.find_config_path(None) == system  # the per-OS file
    (work / "station.yaml").write_text("x")
    assert config_file.find_config_path(None) == work / "station.yaml"  # ./station.yaml before it
    monkeypatch.setenv(config_file.ENV_VAR, str(tmp_path / "env.yaml"))
    assert config_file.find_config_path(None) == tmp_path / "env.yaml"
    assert config_file.find_config_path(str(tmp_path / "cli.yaml")) == tmp_path / "cli.yaml"


def test_config_init_system_writes_the_per_os_file_with_the_per_os_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from stationflow.engine.cli import config as config_cli

    system = tmp_path / "etc" / "stationflow" / "station.yaml"
    monkeypatch.setattr(config_cli, "system_config_path", lambda: system)
    monkeypatch.setattr(config_cli, "system_data_dir", lambda: tmp_path / "var lib" / "stationflow")
    assert main(["config", "init", "--system", "--station-name", "S-9"]) == 0
    cfg = load_config(system)
    assert cfg.data_dir == str(tmp_path / "var lib" / "stationflow") and cfg.station.name == "S-9"
    assert "data_dir" in capsys.readouterr().out


def test_saving_the_config_restricts_the_new_file_and_the_backup(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine import config_file

    config = _station(tmp_path)
    restricted: list[str] = []
    monkeypatch.setattr(config_file, "restrict", lambda path: restricted.append(Path(path).name))
    config_file.write_config_text(config, config.read_text() + "\n")
    # Each is restricted as its temp file, before the rename: neither is ever readable by others.
    assert restricted == [f".station.yaml.bak.{os.getpid()}.tmp", f".station.yaml.{os.getpid()}.tmp"]


def test_config_init_writes_a_new_local_file_even_when_an_installed_one_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine import config_file

    system = tmp_path / "etc" / "station.yaml"
    system.parent.mkdir()
    system.write_text("installed: true\n")
    monkeypatch.setattr(config_file, "system_config_path", lambda: system)
    monkeypatch.delenv(config_file.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["config", "init", "--station-name", "NEW-1"]) == 0
    assert load_config(tmp_path / "station.yaml").station.name == "NEW-1"
    assert system.read_text() == "installed: true\n"
