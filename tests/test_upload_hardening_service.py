"""Issue 14 end to end: a running service against a hostile server. A 403 to every POST while the
version probe answers 200 made ~150 POSTs a second and status ``online``; a 500 with an endless
body took the service to 2.1 GB of RSS. Both are shown harmless here, with the real CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from tests.helpers_service import ServiceRun, wait_until
from tests.hostile import Hostile

pytestmark = pytest.mark.slow

CONFIG = """\
station: {{name: HOSTILE-01}}
server: {{url: "{url}", token: {token}, timeout_s: 5}}
data_dir: ./data
shutdown: {{grace_s: 2}}
upload: {{concurrency: 2, retry: {{initial_s: 0.05, max_s: 0.5, offline_after: 3}}}}
"""


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120)


class Station:
    def __init__(self, tmp_path: Path, url: str, reports: int) -> None:
        self.config = tmp_path / "station.yaml"
        self.config.write_text(CONFIG.format(url=url, token=DEFAULT_TOKEN))
        files = []
        for i in range(reports):
            path = tmp_path / f"r{i}.json"
            path.write_bytes(make_report_bytes(i, seed=41))
            files.append(str(path))
        submitted = _cli(self.config, "submit", *files)
        assert submitted.returncode == 0, submitted.stderr
        self.service = ServiceRun(self.config)
        self.data, self.client, self.proc = self.service.data, self.service.client, self.service.proc

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.call("status")
        return answer

    def uploader(self) -> dict[str, Any]:
        uploader: dict[str, Any] = self.status()["uploader"]
        return uploader

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def close(self) -> None:
        self.service.stop()


@pytest.fixture
def station_factory(tmp_path: Path) -> Iterator[Callable[[str, int], Station]]:
    made: list[Station] = []

    def make(url: str, reports: int) -> Station:
        made.append(Station(tmp_path, url, reports))
        return made[-1]

    yield make
    for station in made:
        station.close()


@pytest.mark.skipif(sys.platform == "win32", reason="reads /proc")
def test_a_403_to_posts_pauses_a_running_service_until_resumed_or_reconfigured(
        station_factory: Callable[[str, int], Station]) -> None:
    with Hostile("forbid") as hostile, Emulator(port=0) as emulator:
        station = station_factory(hostile.url, 8)
        wait_until("paused, the claimed reports back in pending",
              lambda: station.uploader()["mode"] == "paused" and station.status()["reports"].get("sending", 0) == 0)
        posts = hostile.posts
        time.sleep(3.0)  # an observation window: a loop would post hundreds of times here
        uploader = station.uploader()
        assert uploader["mode"] == "paused" and hostile.posts == posts <= 2  # one round of the two workers
        assert "403" in uploader["reason"] and "token may not submit reports" in uploader["reason"]
        assert "stationflow queue resume" in uploader["reason"] and uploader["held_for_s"] > 500
        health = _cli(station.config, "healthcheck")
        assert health.returncode == 1 and "403" in health.stderr and "queue resume" in health.stderr

        resumed = _cli(station.config, "queue", "resume")  # the token is still refused: paused again
        assert resumed.returncode == 0 and "uploads resumed" in resumed.stdout, resumed.stderr
        wait_until("the second refusal", lambda: station.uploader()["counters"].get("went_paused", 0) >= 2)
        assert hostile.posts <= posts + 2

        changed = _cli(station.config, "config", "set", f"server.url={emulator.url}")
        assert changed.returncode == 0, changed.stderr
        _cli(station.config, "reload")  # the config watcher may have reloaded already: either is fine
        wait_until("every report at the emulator", lambda: len(emulator.received_ids()) == 8)
        assert emulator.stats().duplicates == 0 and station.uploader()["mode"] == "online"
        assert hostile.posts <= posts + 2


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_an_endless_500_body_leaves_the_services_memory_small(station_factory: Callable[[str, int], Station]) -> None:
    with Hostile("endless") as hostile:
        station = station_factory(hostile.url, 1)
        wait_until("the first endless answers", lambda: len(hostile.endless_bytes) >= 2)
        peak = station.rss_kib()
        deadline = time.monotonic() + 4.0  # sampled over several more endless answers
        while time.monotonic() < deadline:
            peak = max(peak, station.rss_kib())
            time.sleep(0.1)
        assert len(hostile.endless_bytes) >= 3
        assert peak < 250 * 1024, f"service RSS reached {peak // 1024} MiB"
        assert max(hostile.endless_bytes) < 64 * 1024 * 1024  # the service hung up after 64 KiB
        listing = station.client.call("queue.list")
        reports = listing["reports"] if isinstance(listing, dict) else listing
        assert len(reports) == 1 and reports[0]["state"] in ("pending", "retry_wait", "sending")
        shown = station.client.call("queue.show", id=reports[0]["id"])
        assert "server answered 500: xxx" in str(shown)
