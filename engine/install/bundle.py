"""The offline bundle: a folder of wheels and two install scripts, for stations without internet.

Stations are often air-gapped. The bundle is made once on a machine that reaches the package
index and carried over: ``wheels/`` holds stationflow's own wheel and every dependency as a
binary wheel for each target (Windows x64 and manylinux x86_64 × Python 3.11–3.13 by default),
pinned by ``constraints.txt`` from the repository so two bundles made a month apart hold the
same code. ``install.cmd`` / ``install.sh`` make a venv and install with ``--no-index``: nothing
is fetched, and nothing is built on the station (no sdist, no setuptools from an index).

Only two dependencies are compiled per platform and Python (pydantic-core, PyYAML) and one per
platform (watchdog); the rest are pure-Python wheels shared by every target, so the whole default
bundle is about 19 MB.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ... import __version__
from ..children import import_root
from ..errors import StationflowError

__all__ = [
    "DEFAULT_PLATFORMS", "DEFAULT_PYTHONS", "PLATFORM_TAGS", "BundleError", "Bundle", "Target",
    "build_own_wheel", "download_command", "find_source", "make_bundle", "wheel_problems", "targets",
]

#: Platform names accepted by ``--platform`` and the wheel tags each stands for. manylinux wheels
#: are tagged by the oldest glibc they need; a station with glibc 2.28 or newer runs all three.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "win_amd64": ("win_amd64",),
    "manylinux_x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "manylinux_aarch64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}
#: ``--platform local``: the platform and Python of the interpreter running the command.
LOCAL = "local"
DEFAULT_PLATFORMS = ("win_amd64", "manylinux_x86_64")
DEFAULT_PYTHONS = ("3.11", "3.12", "3.13")
WHEELS = "wheels"
CONSTRAINTS = "constraints.txt"
_SOURCE_PARTS = ("pyproject.toml", "README.md", "stationflow", "engine", "schemas", "machines", "ui_tk")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
Out = Callable[[str], None]


class BundleError(StationflowError):
    """The bundle could not be made; the message says which step and what to do."""


@dataclass(frozen=True)
class Target:
    """One (platform, Python) pair the bundle must install on; ``platform`` "local" is this one."""

    platform: str
    python: str

    def __str__(self) -> str:
        if self.platform == LOCAL:
            return f"this platform, Python {sys.version_info.major}.{sys.version_info.minor}"
        return f"{self.platform}, Python {self.python}"


@dataclass
class Bundle:
    """What was made: the folder, its wheel files, their total size."""

    path: Path
    wheels: list[Path]
    own_wheel: Path

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.wheels)


def targets(platforms: Sequence[str] | None, pythons: Sequence[str] | None) -> list[Target]:
    """Every pair of platform × Python asked for; ``local`` needs no Python (it is this one)."""
    chosen = list(platforms or DEFAULT_PLATFORMS)
    versions = list(pythons or DEFAULT_PYTHONS)
    found: list[Target] = []
    for platform in chosen:
        if platform != LOCAL and platform not in PLATFORM_TAGS and not _looks_like_tag(platform):
            raise BundleError(f"unknown platform {platform!r}",
                              hint=f"use one of {', '.join([*PLATFORM_TAGS, LOCAL])}, or a wheel platform tag")
        for version in versions:
            if not _is_version(version):
                raise BundleError(f"--python {version!r} is not a version like 3.12")
            target = Target(platform, "" if platform == LOCAL else version)
            if target not in found:
                found.append(target)
    return found


def _looks_like_tag(text: str) -> bool:
    return text.startswith(("win", "manylinux", "musllinux", "macosx")) and text.replace("_", "").isalnum()


def _is_version(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def find_source(explicit: Path | None = None) -> Path:
    """The checkout stationflow's wheel is built from: ``explicit``, else the one this code runs from."""
    root = Path(explicit) if explicit else Path(import_root())
    missing = [name for name in ("pyproject.toml", CONSTRAINTS, "engine") if not (root / name).exists()]
    if missing:
        raise BundleError(f"{root} is not a stationflow source checkout (no {', '.join(missing)})",
                          hint="run `stationflow bundle` from a checkout (pip install -e .), or pass --source DIR")
    return root


def download_command(target: Target, requirement: str, constraints: Path, dest: Path,
                     *, python: str = sys.executable) -> list[str]:
    """The ``pip download`` of ``requirement`` and everything it needs, as binary wheels for ``target``."""
    command = [python, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
               "--dest", str(dest), "-c", str(constraints)]
    if target.platform != LOCAL:
        for tag in PLATFORM_TAGS.get(target.platform, (target.platform,)):
            command += ["--platform", tag]
        command += ["--python-version", target.python, "--implementation", "cp"]
    return [*command, requirement]


def _can_build_offline(python: str) -> bool:
    """setuptools that can make a wheel without fetching anything (≥ 70.1 has bdist_wheel; older
    needs the ``wheel`` package), in the interpreter that builds."""
    if python != sys.executable:
        return False
    try:
        version = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    if version < (68, 0):
        return False
    if version >= (70, 1):
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def build_own_wheel(source: Path, dest: Path, *, run: Runner, python: str = sys.executable) -> Path:
    """stationflow's own wheel, built from a clean copy of ``source`` (no ``build/`` left in the checkout).

    With a setuptools here that can build offline, ``--no-build-isolation``; otherwise pip fetches
    setuptools for an isolated build — on this machine, which has the index; the station never builds.
    """
    with tempfile.TemporaryDirectory(prefix="stationflow-build-") as scratch:
        tree = Path(scratch) / "src"
        tree.mkdir()
        for name in _SOURCE_PARTS:
            path = source / name
            if path.is_dir():
                shutil.copytree(path, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.exists():
                shutil.copy2(path, tree / name)
        out = Path(scratch) / "out"
        command = [python, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "--wheel-dir",
                   str(out)]
        if _can_build_offline(python):
            command.append("--no-build-isolation")
        done = run([*command, str(tree)])
        built = sorted(out.glob("stationflow-*.whl"))
        if done.returncode != 0 or not built:
            raise BundleError("building stationflow's own wheel failed",
                              hint="pip needs setuptools ≥ 68 (installed here, or from the index); "
                                   "see pip's message above", detail=_last_line(done))
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / built[0].name
        shutil.copy2(built[0], wheel)
    problems = wheel_problems(wheel)
    if problems:
        raise BundleError(f"{wheel.name} holds files outside the stationflow package: {', '.join(problems[:5])}",
                          hint="fix [tool.setuptools] packages in pyproject.toml")
    return wheel


def wheel_problems(wheel: Path) -> list[str]:
    """Names in the wheel other than ``stationflow/...`` and its own ``.dist-info``: one package,
    nothing else installed at the top level of site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    info = f"stationflow-{wheel.name.split('-')[1]}.dist-info/"
    return [name for name in names if not name.startswith(("stationflow/", info))]


def make_bundle(outdir: Path, found: Sequence[Target], *, source: Path | None = None, run: Runner | None = None,
                out: Out = print, python: str = sys.executable) -> Bundle:
    """Build the wheel, download every dependency for every target, write the install scripts."""
    runner = run or _run
    root = find_source(source)
    outdir = Path(outdir)
    wheels = outdir / WHEELS
    steps = len(found) + 2
    out(f"[1/{steps}] building stationflow {__version__}'s wheel from {root}")
    own = build_own_wheel(root, wheels, run=runner, python=python)
    constraints = outdir / CONSTRAINTS
    shutil.copy2(root / CONSTRAINTS, constraints)
    for number, target in enumerate(found, start=2):
        out(f"[{number}/{steps}] downloading the dependencies for {target}")
        done = runner(download_command(target, str(own), constraints, wheels, python=python))
        if done.returncode != 0:
            raise BundleError(f"pip could not download the dependencies for {target}",
                              hint="check that this machine reaches the package index (proxy: set "
                                   "HTTPS_PROXY or pip.conf), or leave this platform/Python out",
                              detail=_last_line(done))
    out(f"[{steps}/{steps}] writing install.sh, install.cmd and SHA256SUMS")
    write_scripts(outdir, own.name)
    files = sorted(p for p in wheels.iterdir() if p.suffix == ".whl")
    sdists = [p.name for p in wheels.iterdir() if p.suffix != ".whl"]
    if sdists:
        raise BundleError(f"the bundle holds files that would have to be built on the station: {', '.join(sdists)}",
                          hint="remove them; only wheels can be installed offline")
    _write_sums(outdir, files)
    bundle = Bundle(outdir, files, own)
    out(f"bundle: {len(files)} wheels, {bundle.size / 1e6:.1f} MB in {outdir}")
    return bundle


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """pip's own progress goes to the console; its last words are kept for the error message."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:])
    return done


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stdout or "").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [f"exit code {done.returncode}"])[-1].strip()


def _write_sums(outdir: Path, files: Sequence[Path]) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {WHEELS}/{p.name}" for p in files]
    (outdir / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="ascii")


def write_scripts(outdir: Path, own_wheel: str) -> None:
    """``install.sh`` and ``install.cmd``: a venv (default /opt/stationflow or
    %ProgramFiles%\\stationflow), then pip with ``--no-index``. Run again with a newer bundle to
    upgrade: the venv is reused, the data dir and its spool are elsewhere and untouched."""
    version = own_wheel.split("-")[1]
    sh = INSTALL_SH.replace("@VERSION@", version)
    (outdir / "install.sh").write_text(sh, encoding="utf-8", newline="\n")
    (outdir / "install.sh").chmod(0o755)
    cmd = INSTALL_CMD.replace("@VERSION@", version)
    (outdir / "install.cmd").write_text(cmd, encoding="ascii", newline="\r\n")


INSTALL_SH = """\
#!/bin/sh
# Install stationflow @VERSION@ from this folder, without network.
#   ./install.sh [VENV]      (default VENV: /opt/stationflow; PYTHON=python3.12 to choose the interpreter)
# Run it again with a newer bundle to upgrade: the spool lives in the data dir and is kept.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-/opt/stationflow}
python=${PYTHON:-python3}
"$python" -m venv "$venv" || { echo "install.sh: cannot create a venv with $python (Debian/Ubuntu: apt install python3-venv)" >&2; exit 1; }
"$venv/bin/python" -m pip install --no-index --find-links "$here/wheels" --disable-pip-version-check \\
    --upgrade "stationflow==@VERSION@" \\
    || { echo "install.sh: pip failed; is this bundle made for this platform and Python? (see above)" >&2; exit 1; }
"$venv/bin/stationflow" --version
echo "installed: $venv/bin/stationflow"
echo "next: stationflow config init --system, then stationflow service install"
"""

INSTALL_CMD = """\
@echo off
rem Install stationflow @VERSION@ from this folder, without network. Run it as administrator.
rem   install.cmd [VENV]    (default VENV: %ProgramFiles%\\stationflow)
rem   set PYTHON=C:\\Python312\\python.exe first to choose the interpreter (default: the py launcher)
rem Run it again with a newer bundle to upgrade: the spool lives in the data dir and is kept.
rem (No parenthesised blocks: a path such as "Program Files (x86)" would end them early.)
setlocal
set "HERE=%~dp0"
set "VENV=%~1"
if "%VENV%"=="" set "VENV=%ProgramFiles%\\stationflow"
if "%PYTHON%"=="" goto py_launcher
"%PYTHON%" -m venv "%VENV%" || goto no_venv
goto venv_made
:py_launcher
py -3 -m venv "%VENV%" || goto no_venv
:venv_made
"%VENV%\\Scripts\\python.exe" -m pip install --no-index --find-links "%HERE%wheels" --disable-pip-version-check --upgrade "stationflow==@VERSION@" || goto no_pip
"%VENV%\\Scripts\\stationflow.exe" --version || goto no_pip
echo installed: %VENV%\\Scripts\\stationflow.exe
echo next: stationflow config init --system, then stationflow service install --winsw WinSW-x64.exe
exit /b 0
:no_venv
echo install.cmd: cannot create a venv in "%VENV%" - install Python 3.11 to 3.13 for all users, or set PYTHON to its python.exe 1>&2
exit /b 1
:no_pip
echo install.cmd: pip failed - is this bundle made for this platform and Python? See the messages above. 1>&2
exit /b 1
"""
