"""``submit`` through a running service is a door into the service's user: only what the config
names may come through it (review finding: a user who could read the token had the service run
a Python file of its own, and read any file the service could)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from stationflow.engine.control.client import ControlClient
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.errors import InvalidInput
from stationflow.engine.convert.named import read_regular_file
from stationflow.engine.layout import DataDir
from tests.helpers_service import ServiceRun

CONFIG = """\
station: {name: SUBMIT-01}
server: {url: "http://127.0.0.1:9", token: s3cret-token-value}
data_dir: ./data
shutdown: {grace_s: 2}
intake:
  - {name: drop, watch: ./drop, converter: wsjf, settle_ms: 60000}
control: {submit_folders: [./incoming]}
"""


@pytest.fixture
def service(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "station.yaml").write_text(CONFIG)
    for folder in ("drop", "incoming", "elsewhere"):
        (tmp_path / folder).mkdir()
    with ServiceRun(tmp_path / "station.yaml", ready_s=30) as run:
        yield run.client, run.data.root


def _results(client: ControlClient, *paths: Path, converter: str = "wsjf") -> list[dict[str, object]]:
    answer = client.call("submit", paths=[str(p) for p in paths], converter=converter)
    return list(answer["results"])


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero are POSIX")
def test_submit_through_the_service_takes_only_what_the_config_allows(
        tmp_path: Path, service: tuple[ControlClient, Path]) -> None:
    client, data_dir = service
    good = tmp_path / "incoming" / "good.json"
    good.write_bytes(make_report_bytes(1, seed=3))
    [ok] = _results(client, good)
    assert ok["error"] is None and len(ok["accepted"]) == 1  # type: ignore[arg-type]

    # A converter that is a file of the client's own: refused, nothing imported or run.
    evil = tmp_path / "incoming" / "evil.py"
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\nclass Evil: pass\n")
    with pytest.raises(InvalidInput, match="converters its config names"):
        client.call("submit", paths=[str(good)], converter=f"{evil}:Evil")
    assert not marker.exists()

    # A file outside the allowed folders, and a link inside one that points at the control token.
    outside = tmp_path / "elsewhere" / "x.json"
    outside.write_bytes(make_report_bytes(2, seed=3))
    with pytest.raises(InvalidInput, match="watch folders and control.submit_folders"):
        client.call("submit", paths=[str(outside)])
    link = tmp_path / "incoming" / "tok.json"
    link.symlink_to(DataDir(data_dir).token_file)
    with pytest.raises(InvalidInput, match="watch folders and control.submit_folders"):
        client.call("submit", paths=[str(link)])

    # A FIFO with no writer (would block a thread for good) and a link to /dev/zero (endless).
    fifo = tmp_path / "incoming" / "pipe.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    [piped] = _results(client, fifo)
    assert piped["error"] == "not a regular file" and time.monotonic() - started < 5
    assert client.call("status")["service"]["state"] == "running"


def test_read_regular_file_refuses_devices_folders_and_big_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a regular file"):
        read_regular_file(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(InvalidInput, match="not a regular file"):
            read_regular_file(Path("/dev/zero"))
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(InvalidInput, match="more than the 1024"):
        read_regular_file(big, max_bytes=1024)
    assert read_regular_file(big, max_bytes=4096)[0] == b"x" * 2048
