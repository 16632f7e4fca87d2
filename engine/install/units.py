"""What runs a station at boot: a systemd unit on Linux, a WinSW service on Windows.

Both are generated from the station's own config, so the service runs *this* station (its config
file, its data dir, its watch folders) with *this* installation's ``stationflow`` (the absolute
path beside the interpreter running the command: the venv the admin installed into).

Pure functions: a :class:`Plan` says which files would be written and which commands run, in
order. ``stationflow service print`` shows it and changes nothing; ``install`` carries it out
(:func:`apply`) through a runner that tests replace with a fake to check every command exactly.

Why these settings:

- Stopping is graceful and bounded: the service gets ``shutdown.grace_s`` to finish in-flight
  work, so the manager's stop timeout is that plus a margin (``STOP_MARGIN_S``), and systemd
  signals only the main process (``KillMode=mixed``): converter workers finish their file and
  are closed by the service, not killed under it.
- Windows services get no Ctrl+C: WinSW runs ``stationflow stop`` (the control protocol) instead,
  which waits until the service has stopped.
- A config that does not load (exit 3), or a data dir another process holds (exit 8), is not
  restarted in a loop; any other failure is.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from xml.sax.saxutils import escape, quoteattr

from ...schemas.config import StationConfig

__all__ = ["Plan", "PlannedFile", "ServiceSpec", "linux_plan", "windows_plan", "linux_uninstall_plan",
           "windows_uninstall_plan", "systemd_unit", "winsw_xml", "stationflow_command", "apply",
           "STOP_MARGIN_S", "DEFAULT_NAME", "DEFAULT_USER", "DEFAULT_ACCOUNT", "UNIT_DIR"]

DEFAULT_NAME = "stationflow"
DEFAULT_USER = "stationflow"          # Linux: a system user of its own
DEFAULT_ACCOUNT = "LocalSystem"       # Windows: WinSW's default; see the README for another account
UNIT_DIR = PurePosixPath("/etc/systemd/system")
STATE_ROOT = PurePosixPath("/var/lib")
STOP_MARGIN_S = 30
CONFIG_EXIT = 3                       # engine/errors.py: ConfigError
LOCKED_EXIT = 8                       # AlreadyRunning: another process holds the data dir
WINSW_URL = "https://github.com/winsw/winsw/releases (WinSW-x64.exe, v2.12 or later)"


@dataclass(frozen=True)
class PlannedFile:
    path: PurePath
    text: str
    mode: int = 0o644


@dataclass
class Plan:
    """Files to write, then commands to run; ``notes`` are what a person should know or do by hand."""

    os: str
    files: list[PlannedFile] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    removals: list[PurePath] = field(default_factory=list)

    def describe(self) -> str:
        """The text ``service print`` shows: each file in full, then the commands, then the notes."""
        parts: list[str] = []
        for planned in self.files:
            parts.append(f"# ---- {planned.path} ----\n{planned.text.rstrip()}\n")
        for path in self.removals:
            parts.append(f"# remove {path}\n")
        if self.commands:
            parts.append("# ---- then run ----\n" + "".join(f"{_show(c, self.os)}\n" for c in self.commands))
        if self.notes:
            parts.append("".join(f"# note: {note}\n" for note in self.notes))
        return "\n".join(parts)


@dataclass(frozen=True)
class ServiceSpec:
    """Everything a unit needs, taken from a resolved config and this installation."""

    config_path: str
    command: tuple[str, ...]           # how to start stationflow: (path/to/stationflow,) or (python, -m, stationflow)
    data_dir: str
    station: str
    grace_s: float
    writable: tuple[str, ...] = ()     # watch folders and move_to folders: the service moves files there
    log_max_bytes: int = 10_000_000
    log_backups: int = 5
    name: str = DEFAULT_NAME

    @classmethod
    def from_config(cls, cfg: StationConfig, config_path: str | os.PathLike[str], *, command: Sequence[str],
                    name: str = DEFAULT_NAME) -> ServiceSpec:
        """``cfg`` must be resolved (absolute paths)."""
        writable: list[str] = []
        for intake in cfg.intake:
            for folder in (intake.watch, intake.move_to):
                if folder and folder not in writable:
                    writable.append(folder)
        return cls(config_path=str(config_path), command=tuple(command), data_dir=cfg.data_dir,
                   station=cfg.station.name, grace_s=float(cfg.shutdown.grace_s), writable=tuple(writable),
                   log_max_bytes=int(cfg.logging.file_max_bytes), log_backups=cfg.logging.file_backups,
                   name=name)

    @property
    def stop_timeout_s(self) -> int:
        return int(self.grace_s) + STOP_MARGIN_S


def stationflow_command(target_os: str, python: str = sys.executable) -> tuple[str, ...]:
    """This interpreter's ``stationflow`` script, by absolute path (venvs are not on a service's PATH).

    The interpreter path is not resolved: a venv's ``python`` is a link to the base interpreter,
    and the script lives beside the link. Without the script (a bare checkout) it is
    ``python -m stationflow``.
    """
    scripts = Path(os.path.abspath(python)).parent
    name = "stationflow.exe" if target_os == "windows" else "stationflow"
    script = scripts / name
    if script.exists() or target_os != _this_os():
        return (str(script),)
    return (os.path.abspath(python), "-m", "stationflow")


def _this_os() -> str:
    return "windows" if sys.platform == "win32" else "linux"


# ------------------------------------------------------------------------------------- Linux

def systemd_unit(spec: ServiceSpec, *, user: str = DEFAULT_USER) -> str:
    exe = " ".join(_systemd_quote(part) for part in spec.command)
    config = _systemd_quote(spec.config_path)
    state = _state_directory(spec.data_dir)
    writable = [] if state else [spec.data_dir]
    writable.append(str(PurePosixPath(spec.config_path).parent))  # Save from the configurator writes it
    paths = " ".join(_systemd_quote(p) for p in writable)
    optional = " ".join("-" + _systemd_quote(p) for p in spec.writable)  # "-": a missing folder is no error
    lines = [
        f"# stationflow service for station {spec.station}, written by `stationflow service install`.",
        f"# Settings live in {spec.config_path}; after changing them: systemctl reload {spec.name}",
        "[Unit]",
        f"Description=stationflow WATS station client ({spec.station})",
        "Wants=network-online.target",
        "After=network-online.target local-fs.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        f"ExecStart={exe} run -c {config}",
        f"ExecReload={exe} reload -c {config}",
        "Restart=on-failure",
        "RestartSec=5s",
        f"RestartPreventExitStatus={CONFIG_EXIT} {LOCKED_EXIT}",  # restarting will not fix these
        f"TimeoutStopSec={spec.stop_timeout_s}s",
        "KillMode=mixed",
    ]
    if state:
        lines += [f"StateDirectory={state}", "StateDirectoryMode=0750"]
    lines += [f"ReadWritePaths={paths}" + (f" {optional}" if optional else "")]
    everything = [spec.data_dir, spec.config_path, *spec.writable, *spec.command]
    in_tmp = any(PurePosixPath(p).is_relative_to(t) for p in everything for t in ("/tmp", "/var/tmp"))
    lines += [
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        *([] if in_tmp else ["PrivateTmp=true"]),  # a private /tmp would hide a station kept in /tmp
        "NoNewPrivileges=true",
        "UMask=0027",
        "Environment=PYTHONUNBUFFERED=1",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _state_directory(data_dir: str) -> str | None:
    """``/var/lib/stationflow`` → ``stationflow``: systemd creates it and gives it to the user."""
    path = PurePosixPath(data_dir)
    if path != STATE_ROOT and path.is_relative_to(STATE_ROOT):
        return str(path.relative_to(STATE_ROOT))
    return None


def _systemd_quote(text: str) -> str:
    if text and not any(c.isspace() or c in "\"'\\;$%" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def linux_plan(spec: ServiceSpec, *, user: str = DEFAULT_USER, user_exists: bool = True,
               unit_dir: PurePath = UNIT_DIR, enable: bool = True) -> Plan:
    unit = PurePosixPath(unit_dir) / f"{spec.name}.service"
    plan = Plan("linux", files=[PlannedFile(unit, systemd_unit(spec, user=user))])
    if not user_exists:
        plan.commands.append(["useradd", "--system", "--user-group", "--no-create-home",
                              "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", user])
    if not _state_directory(spec.data_dir):
        plan.commands.append(["install", "-d", "-m", "0750", "-o", user, "-g", user, spec.data_dir])
        plan.commands.append(["chown", "-R", f"{user}:{user}", spec.data_dir])
    config_dir = str(PurePosixPath(spec.config_path).parent)
    plan.commands.append(["chown", f"root:{user}", spec.config_path])
    plan.commands.append(["chmod", "0640", spec.config_path])
    if PurePosixPath(config_dir).name == "stationflow":  # a folder of its own: the service may save there
        plan.commands.append(["chown", f"root:{user}", config_dir])
        plan.commands.append(["chmod", "0770", config_dir])
    else:
        plan.notes.append(f"saving settings through the running service writes {config_dir}: give user "
                          f"{user} write access to it, or keep the config in /etc/stationflow/")
    plan.commands.append(["systemctl", "daemon-reload"])
    plan.commands.append(["systemctl", "enable", f"{spec.name}.service"])
    if enable:  # restart, not start: installing again (a new venv, a new unit) takes effect now
        plan.commands.append(["systemctl", "restart", f"{spec.name}.service"])
    if any(PurePosixPath(part).is_relative_to(home) for part in spec.command[:1] for home in ("/root", "/home")):
        plan.notes.append(f"{spec.command[0]} is in a home folder: user {user} may not be allowed to run it "
                          "(systemd then reports status 203/EXEC); install into /opt/stationflow instead")
    for folder in spec.writable:
        plan.notes.append(f"user {user} must be able to read and write {folder} "
                          f"(e.g. setfacl -R -m u:{user}:rwX -m d:u:{user}:rwX {folder})")
    plan.notes.append(f"check it: systemctl status {spec.name}; journalctl -u {spec.name}; stationflow status")
    return plan


def linux_uninstall_plan(spec: ServiceSpec, *, unit_dir: PurePath = UNIT_DIR) -> Plan:
    unit = PurePosixPath(unit_dir) / f"{spec.name}.service"
    plan = Plan("linux", commands=[["systemctl", "disable", "--now", f"{spec.name}.service"]], removals=[unit])
    plan.commands.append(["systemctl", "daemon-reload"])
    plan.notes.append(f"kept: the data dir {spec.data_dir} (spool, archive, logs) and the config "
                      f"{spec.config_path}; the reports still in the spool are sent at the next start")
    return plan


# ----------------------------------------------------------------------------------- Windows

def winsw_xml(spec: ServiceSpec, *, account: str = DEFAULT_ACCOUNT) -> str:
    exe, *pre = spec.command
    start = [*pre, "run", "-c", spec.config_path]
    stop = [*pre, "stop", "-c", spec.config_path]
    logs = str(PureWindowsPath(spec.data_dir) / "logs")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- stationflow service for station {escape(spec.station)}, written by `stationflow service "
        "install`. -->",
        "<service>",
        f"  <id>{escape(spec.name)}</id>",
        f"  <name>{escape(f'stationflow ({spec.station})')}</name>",
        "  <description>WATS station client: converts test results, keeps them in a durable spool and "
        f"uploads them. Settings: {escape(spec.config_path)}</description>",
        f"  <executable>{escape(exe)}</executable>",
        *(f"  <startargument>{escape(a)}</startargument>" for a in start),
        "  <!-- A service gets no Ctrl+C: stop through the control protocol, which waits for the end. -->",
        f"  <stopexecutable>{escape(exe)}</stopexecutable>",
        *(f"  <stopargument>{escape(a)}</stopargument>" for a in stop),
        f"  <stoptimeout>{spec.stop_timeout_s} sec</stoptimeout>",
        "  <startmode>Automatic</startmode>",
        "  <delayedAutoStart>true</delayedAutoStart>",
        '  <onfailure action="restart" delay="10 sec"/>',
        '  <onfailure action="restart" delay="60 sec"/>',
        "  <resetfailure>1 hour</resetfailure>",
        *_winsw_account(account),
        f"  <workingdirectory>{escape(spec.data_dir)}</workingdirectory>",
        f"  <logpath>{escape(logs)}</logpath>",
        '  <log mode="roll-by-size">',
        f"    <sizeThreshold>{max(1, spec.log_max_bytes // 1024)}</sizeThreshold>",
        f"    <keepFiles>{max(1, spec.log_backups)}</keepFiles>",
        "  </log>",
        f'  <env name="PYTHONUNBUFFERED" value={quoteattr("1")}/>',
        f'  <env name="PYTHONIOENCODING" value={quoteattr("utf-8")}/>',
        "</service>",
    ]
    return "\n".join(lines) + "\n"


def _winsw_account(account: str) -> list[str]:
    if account.lower() in ("localsystem", "system"):
        return ["  <serviceaccount><user>LocalSystem</user></serviceaccount>"]
    domain, _, user = account.rpartition("\\")
    inner = (f"<domain>{escape(domain)}</domain>" if domain else "") + f"<user>{escape(user)}</user>"
    if not domain or domain.upper() not in ("NT AUTHORITY",):
        inner += "<allowservicelogon>true</allowservicelogon>"
    return [f"  <serviceaccount>{inner}</serviceaccount>"]


def service_dir(config_path: str) -> PureWindowsPath:
    """Where the WinSW executable and its XML go: beside the config, in ``service\\``."""
    return PureWindowsPath(config_path).parent / "service"


def windows_plan(spec: ServiceSpec, *, account: str = DEFAULT_ACCOUNT, winsw: str | None = None,
                 acl_commands: Sequence[Sequence[str]] = (), registered: bool = False) -> Plan:
    """``registered``: the service exists already (installing again): it is stopped and removed
    first (every WinSW 2.x knows ``stop``/``uninstall``), then registered with the new XML."""
    folder = service_dir(spec.config_path)
    wrapper = folder / f"{spec.name}-service.exe"
    plan = Plan("windows", files=[PlannedFile(folder / f"{spec.name}-service.xml", winsw_xml(spec, account=account))])
    if winsw:
        plan.commands.append(["copy", "/Y", winsw, str(wrapper)])
    else:
        plan.notes.append(f"needs WinSW: download {WINSW_URL} and pass it with --winsw PATH "
                          f"(it is copied to {wrapper})")
    plan.commands += [list(c) for c in acl_commands]
    if registered:
        plan.commands += [[str(wrapper), "stop"], [str(wrapper), "uninstall"]]
    plan.commands.append([str(wrapper), "install"])
    # Failure actions also when the process exits with an error code, not only when it crashes.
    plan.commands.append(["sc.exe", "failureflag", spec.name, "1"])
    plan.commands.append([str(wrapper), "start"])
    for folder_ in spec.writable:
        plan.notes.append(f"the service account ({account}) must be able to read and write {folder_}")
    plan.notes.append(f"check it: sc.exe query {spec.name}; stationflow status (from an elevated prompt: "
                      "the control token is readable by Administrators only)")
    return plan


def windows_uninstall_plan(spec: ServiceSpec) -> Plan:
    folder = service_dir(spec.config_path)
    wrapper = folder / f"{spec.name}-service.exe"
    plan = Plan("windows", commands=[[str(wrapper), "stop"], [str(wrapper), "uninstall"]],
                removals=[folder / f"{spec.name}-service.xml"])
    plan.notes.append(f"kept: the data dir {spec.data_dir} (spool, archive, logs), the config "
                      f"{spec.config_path} and {wrapper}")
    return plan


def _show(command: Sequence[str], target_os: str) -> str:
    if target_os == "windows":
        return " ".join(f'"{c}"' if (" " in c or not c) else c for c in command)
    import shlex

    return shlex.join(command)


# ------------------------------------------------------------------------------------ carrying out

Runner = Callable[[list[str]], int]


def apply(plan: Plan, run: Runner, *, out: Callable[[str], None] = print) -> None:
    """Write the files (atomically), remove what is to go, run the commands in order; stop at the
    first command that fails, saying which (the steps before it stay done: each is safe to repeat)."""
    from ..durable import atomic_write
    from ..errors import StationflowError

    for planned in plan.files:
        path = Path(planned.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, planned.text.encode("utf-8"))
        os.chmod(path, planned.mode)
        out(f"wrote {path}")
    for removal in plan.removals:
        try:
            Path(removal).unlink()
            out(f"removed {removal}")
        except FileNotFoundError:
            pass
    for command in plan.commands:
        if command[0] == "copy" and plan.os == "windows":  # cmd's built-in: done here instead
            shutil.copyfile(command[2], command[3])
            out(f"copied {command[2]} to {command[3]}")
            continue
        out(f"running: {_show(command, plan.os)}")
        code = run(command)
        if code != 0:
            raise StationflowError(f"`{_show(command, plan.os)}` failed with exit code {code}",
                                   hint="fix what it reported above and run `stationflow service install` "
                                        "again (every step is safe to repeat)")
    for note in plan.notes:
        out(f"note: {note}")
