"""The durability recipe's failure paths: each one raises StorageError with the cause, and leaves
no half-written file behind (a later reader never sees a torn file under the real name).

Real disk everywhere; only an fsync that fails (EIO), which cannot be produced on demand, is
simulated by replacing ``os.fsync``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from stationflow.engine import durable
from stationflow.engine.errors import StorageError


def _eio(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def test_syncing_a_folder_that_is_not_there_says_so(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open directory .*gone to sync it"):
        durable.fsync_dir(tmp_path / "gone")


def test_a_failed_directory_fsync_is_an_error_not_a_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", _eio)
    with pytest.raises(StorageError, match="fsync of directory .* failed: Input/output error") as caught:
        durable.fsync_dir(tmp_path)
    assert caught.value.hint and "did not complete" in caught.value.hint


def test_a_failed_file_fsync_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    monkeypatch.setattr(os, "fsync", _eio)
    with pytest.raises(StorageError, match="writing .*report.json failed: Input/output error"):
        durable.write_file(target, b"{}")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    durable.write_file(target, b"{}")  # the same call works once the disk does
    assert target.read_bytes() == b"{}"


def test_removing_what_is_not_there_is_an_error_only_when_asked(tmp_path: Path) -> None:
    assert durable.unlink(tmp_path / "none") is False
    with pytest.raises(StorageError, match="cannot remove .*none: it does not exist"):
        durable.unlink(tmp_path / "none", missing_ok=False)


def test_an_atomic_write_that_cannot_be_put_in_place_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "kept.json"
    target.mkdir()  # a folder where the file belongs
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    with pytest.raises(StorageError, match="cannot move .* to .*kept.json"):
        durable.atomic_write(target, b"{}", tmp_dir=tmp_dir)
    assert list(tmp_dir.iterdir()) == [] and target.is_dir()
