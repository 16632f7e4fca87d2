"""Copies and claims: a copy is written straight at its final name, and a claimed source is removed
only when it is the very content copied and converted (compared byte for byte with the job's
copy where that is at hand, else with the copy's SHA-256: both proofs are tested)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stationflow.engine.intake import copying
from stationflow.engine.intake.copying import copy_all
from stationflow.engine.intake.model import TrackedFile, Watch
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.errors import IllegalTransition
from stationflow.engine.intake.post_actions import accept_then_post, claim_source, post_follows
from stationflow.engine.spool.store import Spool
from stationflow.engine.lifecycle import load_lifecycle
from stationflow.schemas.config import IntakeSection


def _copied(tmp_path: Path, content: bytes) -> TrackedFile:
    drop = tmp_path / "drop"
    drop.mkdir()
    source = drop / "r.json"
    source.write_bytes(content)
    watch = Watch(IntakeSection(name="c", watch=str(drop), converter="wsjf", settle_ms=0, after="delete"),
                  tmp_path / "data", load_lifecycle("conversion"))
    for folder in (watch.tmp, watch.copies, watch.jobs):
        folder.mkdir(parents=True)
    st = source.stat()
    file = TrackedFile(watch, source, "r.json", "watch", watch.lifecycle.initial, st.st_size, st.st_mtime_ns,
                       time.monotonic())
    assert copy_all([file], time.monotonic() + 60, fsync=False) == [None]
    assert file.copy is not None and file.copy.read_bytes() == content and file.sha256 is not None
    return file


@pytest.mark.parametrize("proof", ["copy", "sha256", "copy gone"])
def test_a_source_rewritten_in_place_with_the_same_size_and_mtime_is_put_back_not_removed(
        tmp_path: Path, proof: str) -> None:
    file = _copied(tmp_path, b"a" * 5000)
    reference = None if proof == "sha256" else file.copy if proof == "copy" else file.copy.with_name("gone")
    st = file.path.stat()
    with open(file.path, "r+b") as fh:  # the same inode, the same size, then the same mtime: only the bytes differ
        fh.write(b"b")
    os.utime(file.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert claim_source(file, reference) is None
    assert file.path.read_bytes() == b"b" + b"a" * 4999  # back under its name, to be taken as new
    assert [p.name for p in file.path.parent.iterdir()] == ["r.json"] and file.claimed is False


@pytest.mark.parametrize("proof", ["copy", "sha256", "copy gone"])
def test_the_very_source_copied_is_claimed(tmp_path: Path, proof: str) -> None:
    file = _copied(tmp_path, os.urandom(5000))
    assert file.copy is not None
    reference = None if proof == "sha256" else file.copy if proof == "copy" else file.copy.with_name("gone")
    private = claim_source(file, reference)
    assert private is not None and private.name.startswith(".stationflow-") and not file.path.exists()
    assert private.read_bytes() == file.copy.read_bytes()


def test_a_batch_copies_straight_to_its_folder_and_a_repeated_name_gets_its_own(tmp_path: Path) -> None:
    """Copies are written at their final names (no temp name, no rename): the batch's folder holds
    them; a name repeated in the batch (a recursive watch) gets a folder of its own; a file that
    changed while copied leaves no copy and no empty folder behind."""
    drop = tmp_path / "drop"
    (drop / "a").mkdir(parents=True)
    (drop / "b").mkdir()
    watch = Watch(IntakeSection(name="c", watch=str(drop), converter="wsjf", settle_ms=0, after="delete",
                                recursive=True), tmp_path / "data", load_lifecycle("conversion"))
    for folder in (watch.tmp, watch.copies, watch.jobs):
        folder.mkdir(parents=True)
    files = []
    for rel, content in (("a/r.json", b"one"), ("b/r.json", b"two"), ("x.json", b"three")):
        (drop / rel).write_bytes(content)
        st = (drop / rel).stat()
        files.append(TrackedFile(watch, drop / rel, rel, "watch", watch.lifecycle.initial, st.st_size,
                                 st.st_mtime_ns, time.monotonic()))
    files[2].size += 1  # listed with another size: it changed before it was copied
    assert [type(f).__name__ for f in copy_all(files, time.monotonic() + 60, fsync=True)] == \
        ["NoneType", "NoneType", "Changed"]
    one, two = files[0].copy, files[1].copy
    assert one is not None and two is not None and files[2].copy is None
    assert one.read_bytes() == b"one" and two.read_bytes() == b"two"
    assert one.parent.name == files[0].batch and two.parent.name == files[1].job != files[1].batch
    copies = sorted(str(p.relative_to(watch.copies)) for p in watch.copies.rglob("*"))
    assert copies == sorted([one.parent.name, f"{one.parent.name}/r.json", two.parent.name, f"{two.parent.name}/r.json"])
    assert list(watch.tmp.iterdir()) == [] and len(list(watch.jobs.iterdir())) == 1


def test_a_batch_whose_every_copy_failed_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = _copied(tmp_path, b"first")  # one batch, to have the folders
    st = file.path.stat()
    again = TrackedFile(file.watch, file.path, "r.json", "watch", file.watch.lifecycle.initial, st.st_size,
                        st.st_mtime_ns, time.monotonic())

    def changed_meanwhile(*_: object) -> None:  # found changed once copied (its copy was written)
        raise copying.Changed()

    monkeypatch.setattr(copying, "place_copy", changed_meanwhile)
    assert [type(f).__name__ for f in copy_all([again], time.monotonic() + 60, fsync=False)] == ["Changed"]
    assert [p.name for p in file.watch.copies.iterdir()] == [file.batch]  # the first batch's only


class _NoFinishAfterConverted:
    """The shipped conversion machine, except that ``finish`` is not allowed from ``spooled``: a
    machine that does not lead from the accept straight to the post-action."""

    def __init__(self) -> None:
        self._shipped = load_lifecycle("conversion")

    def next_state(self, source: str, trigger: str) -> str:
        if (source, trigger) == ("spooled", "finish"):
            raise IllegalTransition("cannot finish a conversion in state spooled")
        return self._shipped.next_state(source, trigger)


@pytest.mark.parametrize("machine", ["shipped", "no finish after converted"])
def test_the_post_action_joins_the_accepts_hop_only_where_the_lifecycle_leads_straight_to_it(
        tmp_path: Path, machine: str) -> None:
    file = _copied(tmp_path, make_report_bytes(1))
    if machine != "shipped":
        file.watch.lifecycle = _NoFinishAfterConverted()  # type: ignore[assignment]
    file.state = "converting"
    raw = file.copy.read_bytes() if file.copy is not None else b""
    with Spool(tmp_path / "spool") as spool:
        results, durable, failures = accept_then_post(spool, [(file, [raw], [])], fsync=False)
        assert [type(r).__name__ for r in results] == ["Accepted"] and durable == [file]
        assert spool.counts()["pending"] == 1
    assert post_follows(file) is (machine == "shipped")
    if machine == "shipped":
        assert failures == [None] and not file.path.exists()  # deleted in the same hop, after the accept
    else:
        assert failures is None and file.path.read_bytes() == raw  # untouched: the caller goes step by step
        assert file.state == "converting"  # the state is the event loop's to move
