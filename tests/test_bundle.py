"""``stationflow bundle``: the offline wheelhouse installs in a fresh venv without any index.

Making a bundle needs the package index (pip download); installing it must not. The install is
done here with pip's configuration cut off (no index, no find-links but the bundle's) and, where
the kernel allows it, with the network cut (``unshare -n``).
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stationflow import __version__
from stationflow.engine.install import bundle

ROOT = Path(__file__).resolve().parents[1]
WINSIM = Path(__file__).resolve().parent / "winsim.py"


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _cut_network() -> list[str]:
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return []


# ------------------------------------------------------------------------------- unit level

def test_the_default_targets_are_windows_and_linux_for_three_pythons() -> None:
    found = bundle.targets(None, None)
    assert [(t.platform, t.python) for t in found] == [
        (p, v) for p in ("win_amd64", "manylinux_x86_64") for v in ("3.11", "3.12", "3.13")]
    assert bundle.targets(["local"], ["3.12", "3.13"]) == [bundle.Target("local", "")]
    with pytest.raises(bundle.BundleError, match="unknown platform"):
        bundle.targets(["amiga"], None)
    with pytest.raises(bundle.BundleError, match="not a version"):
        bundle.targets(None, ["3"])


def test_the_download_command_asks_for_binary_wheels_for_the_target_only() -> None:
    command = bundle.download_command(bundle.Target("win_amd64", "3.12"), "/w/stationflow-0.2.0-py3-none-any.whl",
                                      Path("/b/constraints.txt"), Path("/b/wheels"), python="/py")
    assert command == ["/py", "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
                       "--dest", "/b/wheels", "-c", "/b/constraints.txt", "--platform", "win_amd64",
                       "--python-version", "3.12", "--implementation", "cp",
                       "/w/stationflow-0.2.0-py3-none-any.whl"]
    linux = bundle.download_command(bundle.Target("manylinux_x86_64", "3.11"), "x.whl", Path("c"), Path("d"))
    assert linux.count("--platform") == 3 and "manylinux2014_x86_64" in linux


def test_every_runtime_dependency_is_pinned_in_constraints_txt() -> None:
    pins = {line.split("==")[0].lower().replace("_", "-") for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    for name in ("transitions", "anyio", "httpx", "filelock", "pydantic", "pyyaml", "pydantic-core", "watchdog"):
        assert name in pins


def test_no_module_of_the_package_reads_the_fixtures_folder() -> None:
    """fixtures/ is not installed: code that reads it breaks in a wheel (bench did)."""
    offenders = []
    for folder in ("engine", "schemas", "ui_tk", "stationflow"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and node.body and isinstance(node.body[0], ast.Expr)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and "fixtures" in node.value \
                        and id(node) not in docstrings:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


# ------------------------------------------------------------------------- the real bundle

@pytest.fixture(scope="module")
def local_bundle(tmp_path_factory: pytest.TempPathFactory) -> bundle.Bundle:
    out = tmp_path_factory.mktemp("bundle") / "station bundle"  # a space: the scripts must quote
    lines: list[str] = []
    made = bundle.make_bundle(out, bundle.targets(["local"], None), out=lines.append)
    assert lines[0].startswith("[1/3] building") and lines[-1].startswith("bundle: ")
    return made


def test_the_own_wheel_holds_only_the_stationflow_package_with_its_data(local_bundle: bundle.Bundle) -> None:
    wheel = local_bundle.own_wheel
    assert wheel.name == f"stationflow-{__version__}-py3-none-any.whl"
    assert bundle.wheel_problems(wheel) == []
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("stationflow/", f"stationflow-{__version__}.dist-info/")) for n in names)
    for needed in ("stationflow/machines/report.yaml", "stationflow/engine/devtools/data/uut-wsjf-export.json",
                   "stationflow/engine/install/bundle.py", "stationflow/py.typed"):
        assert needed in names
    assert not (ROOT / "build").exists()  # built from a copy: nothing left in the checkout


def test_the_bundle_has_scripts_that_install_without_an_index(local_bundle: bundle.Bundle) -> None:
    folder = local_bundle.path
    sh = (folder / "install.sh").read_text()
    cmd = (folder / "install.cmd").read_bytes()
    assert "--no-index" in sh and f'--find-links "$here/wheels"' in sh and f"stationflow=={__version__}" in sh
    assert b"--no-index" in cmd and b"\r\n" in cmd and b"\n" not in cmd.replace(b"\r\n", b"")
    assert os.access(folder / "install.sh", os.X_OK)
    sums = dict(line.split("  ")[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {f"wheels/{p.name}" for p in local_bundle.wheels}
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert not [p for p in (folder / "wheels").iterdir() if p.suffix != ".whl"]  # nothing to build


def test_the_bundle_installs_offline_and_the_installed_command_works(local_bundle: bundle.Bundle,
                                                                    tmp_path: Path) -> None:
    cut = _cut_network()
    env = _offline_env()
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    venv = tmp_path / "venv"
    done = subprocess.run([*cut, "sh", str(local_bundle.path / "install.sh"), str(venv)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"stationflow {__version__}" in done.stdout
    stationflow = venv / "bin" / "stationflow"
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import stationflow; print(stationflow.__file__)"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60).stdout.strip()
    assert site.startswith(str(venv))  # the installed copy, not this checkout
    # The wheel imports, and every command's --help works, with the POSIX-only modules blocked.
    done = subprocess.run([*cut, str(python), str(WINSIM), "check"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # bench reads its sample from the package, not from fixtures/ (the loopback emulator needs lo up:
    # it runs outside the cut namespace; nothing in it touches an index).
    done = subprocess.run([str(stationflow), "bench", "--dir", str(tmp_path), "-n", "20", "--queued", "0",
                           "--upload-n", "5"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the 50 KB sample report" in done.stdout


def test_a_windows_bundle_gets_the_windows_builds_of_the_compiled_dependencies(tmp_path: Path) -> None:
    made = bundle.make_bundle(tmp_path / "win", bundle.targets(["win_amd64"], ["3.13"]), out=lambda _: None)
    names = {p.name for p in made.wheels}
    per_platform = {n for n in names if not n.endswith("-any.whl")}
    assert per_platform and all(n.endswith("win_amd64.whl") for n in per_platform), per_platform
    compiled = {n for n in per_platform if "-cp3" in n}  # built for one Python: for the one asked for
    assert compiled and all(n.endswith("-cp313-cp313-win_amd64.whl") for n in compiled), compiled
    assert {n.split("-")[0].lower() for n in compiled} == {"pydantic_core", "pyyaml"}
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line]
    assert len(names) == 1 + len(pins)  # stationflow and every pinned dependency, nothing else


def test_a_bundle_needs_a_checkout_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleError, match="not a stationflow source checkout") as info:
        bundle.find_source(tmp_path)
    assert "--source" in str(info.value)


def test_a_failing_pip_is_reported_with_its_last_words(tmp_path: Path) -> None:
    def broken_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "Looking in indexes: ...\nERROR: Could not find setuptools>=68\n")

    with pytest.raises(bundle.BundleError, match="building stationflow's own wheel failed") as info:
        bundle.make_bundle(tmp_path / "b", bundle.targets(["local"], None), run=broken_pip, out=lambda _: None)
    assert info.value.detail == "ERROR: Could not find setuptools>=68"
