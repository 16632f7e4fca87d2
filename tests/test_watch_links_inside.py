"""``follow_links: inside`` (issue 14, item 1's rest): links that stay inside the watch folder are
followed, each file taken once under its own path; links out of it, dangling links and loops are not
(loops are ended by remembering each folder listed). The default stays: links ignored, with a note."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.intake.detect import walk
from stationflow.schemas.config import IntakeSection
from tests.helpers_links import assert_outside_untouched, watch_and_outside
from tests.helpers_service import ServiceRun

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    """drop/ with a real file, a sub-folder, links inside (to a file, to the sub-folder, to the
    folder itself twice), a link out, and a dangling link."""
    drop, outside, secret = watch_and_outside(tmp_path, "sub")
    (drop / "a.json").write_bytes(b"a")
    (drop / "sub" / "b.json").write_bytes(b"b")
    (drop / "to-b.json").symlink_to(drop / "sub" / "b.json")          # inside: b, once
    (drop / "to-sub").symlink_to("sub", target_is_directory=True)     # inside: sub, listed once
    (drop / "loop1").symlink_to(".", target_is_directory=True)        # loops
    (drop / "sub" / "up").symlink_to("..", target_is_directory=True)
    (drop / "out.json").symlink_to(secret)                            # outside: never
    (drop / "out-dir").symlink_to(outside, target_is_directory=True)
    (drop / "dangling.json").symlink_to(drop / "nothing-here.json")
    return drop, outside


def _listed(drop: Path, recursive: bool, follow: bool) -> tuple[list[str], list[str]]:
    links: list[str] = []
    found = [os.path.relpath(e.path, drop) for e in walk(drop, recursive, [], links, follow)]
    return sorted(found), sorted(os.path.relpath(p, drop) for p in links)


def test_links_inside_are_followed_once_and_links_out_never(tmp_path: Path) -> None:
    drop, _ = _tree(tmp_path)
    found, ignored = _listed(drop, recursive=True, follow=True)
    assert found == ["a.json", os.path.join("sub", "b.json")]  # each file once, under its own path
    assert ignored == ["dangling.json", "out-dir", "out.json"]


def test_a_link_to_a_file_inside_is_taken_without_recursion(tmp_path: Path) -> None:
    drop, _ = _tree(tmp_path)
    found, ignored = _listed(drop, recursive=False, follow=True)
    assert found == ["a.json", os.path.join("sub", "b.json")]  # the link's target, not the link
    assert ignored == ["dangling.json", "out-dir", "out.json"]


def test_by_default_every_link_is_ignored(tmp_path: Path) -> None:
    drop, _ = _tree(tmp_path)
    found, ignored = _listed(drop, recursive=True, follow=False)
    assert found == ["a.json", os.path.join("sub", "b.json")]
    assert ignored == ["dangling.json", "loop1", "out-dir", "out.json", os.path.join("sub", "up"), "to-b.json",
                       "to-sub"]
    assert IntakeSection(name="x", watch="drop", converter="wsjf").follow_links == "never"


def test_many_loops_end(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    folder = drop
    for depth in range(5):
        folder = folder / f"d{depth}"
        folder.mkdir()
        for n in range(3):
            (folder / f"loop{n}").symlink_to(drop, target_is_directory=True)
    (folder / "deep.json").write_bytes(b"d")
    found, ignored = _listed(drop, recursive=True, follow=True)
    assert found == [os.path.join("d0", "d1", "d2", "d3", "d4", "deep.json")] and ignored == []


CONFIG = """\
station: {name: LINKS-02}
server: {url: "http://127.0.0.1:9", token: s3cret-token-value}
data_dir: ./data
shutdown: {grace_s: 2}
intake:
  - {name: drop, watch: ./drop, converter: wsjf, settle_ms: 0, recursive: true, after: delete, follow_links: inside}
"""


@pytest.mark.slow  # a real service process
def test_a_running_service_takes_files_through_links_inside_only(tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(CONFIG)
    drop, outside, victim = watch_and_outside(tmp_path, "sub")
    with ServiceRun(tmp_path / "station.yaml") as service:
        client = service.client
        (drop / "sub" / "real.json").write_bytes(make_report_bytes(1, seed=9))
        (drop / "via-link.json").symlink_to(drop / "sub" / "real.json")
        (drop / "loop").symlink_to(".", target_is_directory=True)
        (drop / "out.json").symlink_to(victim)
        (drop / "out-dir").symlink_to(outside, target_is_directory=True)

        def done() -> bool:
            status = client.call("status")
            counts = status["reports"]
            return sum(counts.get(s, 0) for s in ("pending", "sending", "retry_wait")) == 1 \
                and not (drop / "sub" / "real.json").exists() \
                and status["intake"]["intakes"]["drop"]["links_ignored"] >= 2
        service.wait("real.json spooled once, the links out noted", done, 60)
        time.sleep(1.0)  # an observation window: a second copy or the outside file would show up here
        counts = client.call("status")["reports"]
        assert sum(counts.get(s, 0) for s in ("pending", "sending", "retry_wait")) == 1
        assert_outside_untouched(outside)
        assert (drop / "via-link.json").is_symlink() and (drop / "out.json").is_symlink()
