"""Symbolic links in a watch folder are never followed (review finding: a link to the control
token was copied into the error folder, readable by everyone; a link to another folder let a user
move and delete files there; two link loops made the listing endless)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from tests.helpers_links import assert_outside_untouched, watch_and_outside
from tests.helpers_service import ServiceRun

CONFIG = """\
station: {name: LINKS-01}
server: {url: "http://127.0.0.1:9", token: s3cret-token-value}
data_dir: ./data
shutdown: {grace_s: 2}
intake:
  - {name: drop, watch: ./drop, converter: wsjf, settle_ms: 0, recursive: true, after: delete}
"""


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_links_in_a_watch_folder_are_ignored_by_a_running_service(tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(CONFIG)
    drop, outside, _ = watch_and_outside(tmp_path)
    with ServiceRun(tmp_path / "station.yaml") as service:
        data, client = service.data, service.client
        token_before = data.token_file.read_bytes()
        (drop / "tok.json").symlink_to(data.token_file)
        (drop / "other").symlink_to(outside, target_is_directory=True)
        (drop / "loop1").symlink_to(".", target_is_directory=True)
        (drop / "loop2").symlink_to(".", target_is_directory=True)
        (drop / "good.json").write_bytes(make_report_bytes(1, seed=9))
        (drop / "bad.json").write_bytes(b'{"id": "truncated')

        def settled() -> bool:
            status = client.call("status")
            counts = status["reports"]
            intake = status["intake"]["intakes"]["drop"]
            return counts.get("pending", 0) + counts.get("sending", 0) + counts.get("retry_wait", 0) == 1 \
                and not (drop / "good.json").exists() and not (drop / "bad.json").exists() \
                and intake["links_ignored"] == 4
        service.wait("good.json spooled, bad.json rejected, the links noted", settled, 30)
        intake = client.call("status")["intake"]["intakes"]["drop"]
        assert "symbolic link" in intake["note"]
        rejected = sorted(p.name for p in data.rejected("drop").iterdir())
        assert rejected == ["bad.json", "bad.json.error.txt"], rejected  # no copy of the token
        assert data.token_file.read_bytes() == token_before
        assert_outside_untouched(outside)
        assert all((drop / n).is_symlink() for n in ("tok.json", "other", "loop1", "loop2"))
        # What the service creates under the data dir is its own: no group or other access.
        for path in [*data.rejected("drop").iterdir(), *(data.spool / "pending").iterdir(), data.log_file]:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
