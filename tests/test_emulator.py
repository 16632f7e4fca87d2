"""The WATS emulator, tested for real over loopback with httpx (and a raw socket where httpx is too polite)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, PING_PATH, REPORT_PATH, VERSION_PATH, Emulator, Faults

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "fixtures" / "reports"
UUT = (REPORTS / "uut-wsjf-export.json").read_bytes()
UUR = (REPORTS / "uur_example.json").read_bytes()
UUR_ID = "83ac0b8e-b575-4004-94de-f905774c3ed8"
AUTH = {"Authorization": f"Basic {DEFAULT_TOKEN}"}


def with_id(report_id: str, raw: bytes = UUR) -> bytes:
    """The small repair sample under another id."""
    data = json.loads(raw)
    data["id"] = report_id
    return json.dumps(data).encode()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(store_dir=tmp_path / "store", seed=1) as em:
        yield em


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, headers=AUTH, timeout=5) as c:
        yield c


# ------------------------------------------------------------------------------- the WATS API


def test_a_valid_report_is_accepted_and_stored(emulator: Emulator, client: httpx.Client, tmp_path: Path) -> None:
    answer = client.post(REPORT_PATH, content=UUT)
    assert answer.status_code == 200
    assert answer.json() == {"ID": "33a2d408-3fc8-480b-b554-6866c77fd91c"}
    assert emulator.received_ids() == {"33a2d408-3fc8-480b-b554-6866c77fd91c"}
    assert emulator.report("33A2D408-3FC8-480B-B554-6866C77FD91C") == UUT
    assert (tmp_path / "store" / "33a2d408-3fc8-480b-b554-6866c77fd91c.json").read_bytes() == UUT
    stats = emulator.stats()
    assert (stats.posts, stats.accepted, stats.unique_ids, stats.duplicates) == (1, 1, 1, 0)
    assert stats.bytes_received == len(UUT)


def test_a_report_missing_a_required_field_gets_400_naming_it(emulator: Emulator, client: httpx.Client) -> None:
    data = json.loads(UUR)
    del data["machineName"]
    answer = client.post(REPORT_PATH, content=json.dumps(data))
    assert answer.status_code == 400
    body = answer.json()
    assert "machineName" in body["message"]
    assert body["problems"] == [body["problems"][0]] and body["problems"][0].startswith("machineName: missing")
    assert emulator.received_ids() == set()
    assert emulator.stats().rejected_400 == 1
    # the connection stays usable after a refusal
    assert client.post(REPORT_PATH, content=UUR).status_code == 200


def test_broken_json_gets_400(client: httpx.Client) -> None:
    answer = client.post(REPORT_PATH, content=b"{not json")
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic d3Jvbmc6dG9rZW4="},
                                     {"Authorization": f"Bearer {DEFAULT_TOKEN}"}])
def test_a_wrong_or_missing_token_gets_401(emulator: Emulator, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=emulator.url, headers=headers) as c:
        answer = c.post(REPORT_PATH, content=UUR)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        assert c.get(VERSION_PATH).status_code == 401
        assert c.get(PING_PATH).status_code == 200  # a connectivity check needs no token
    assert emulator.received_ids() == set()
    assert emulator.stats().unauthorized == 2


def test_no_token_configured_means_no_check() -> None:
    with Emulator(token=None) as em, httpx.Client(base_url=em.url) as c:
        assert c.post(REPORT_PATH, content=UUR).status_code == 200


def test_version_and_ping(client: httpx.Client) -> None:
    version = client.get(VERSION_PATH)
    assert version.status_code == 200 and version.json()["version"]
    assert client.get(PING_PATH).status_code == 200


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    assert client.get("/api/nothing").status_code == 404
    assert client.get(REPORT_PATH).status_code == 405
    assert client.post(VERSION_PATH, content=b"x").status_code == 405
    assert client.post(REPORT_PATH, content=UUR).status_code == 200  # keep-alive survived all that


def test_posting_an_id_again_replaces_and_counts_a_duplicate(emulator: Emulator, client: httpx.Client) -> None:
    first = with_id(UUR_ID)
    data = json.loads(first)
    data["id"] = UUR_ID.upper()
    data["sn"] = "SECOND"
    second = json.dumps(data).encode()
    assert client.post(REPORT_PATH, content=first).status_code == 200
    assert client.post(REPORT_PATH, content=second).status_code == 200
    stats = emulator.stats()
    assert (stats.posts, stats.accepted, stats.unique_ids, stats.duplicates) == (2, 2, 1, 1)
    assert emulator.received_ids() == {UUR_ID}
    assert emulator.times_stored(UUR_ID) == 2
    assert emulator.report(UUR_ID) == second


def test_a_body_over_the_limit_gets_413() -> None:
    with Emulator(max_body_bytes=1000) as em, httpx.Client(base_url=em.url, headers=AUTH) as c:
        answer = c.post(REPORT_PATH, content=UUR)  # 1224 bytes
        assert answer.status_code == 413
        assert em.stats().too_large == 1 and em.received_ids() == set()


def _raw_request(em: Emulator, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", em.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_post_without_content_length_gets_411(emulator: Emulator) -> None:
    answer = _raw_request(emulator, f"POST {REPORT_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
                                    f"{DEFAULT_TOKEN}\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 411 ")


# ------------------------------------------------------------------------------------- faults


def test_injected_errors_carry_status_and_retry_after(emulator: Emulator, client: httpx.Client) -> None:
    emulator.set_faults(error_rate=1.0, error_status=429, retry_after=2)
    answer = client.post(REPORT_PATH, content=UUR)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "2"
    emulator.set_faults(error_status=503, retry_after=0.5)
    answer = client.post(REPORT_PATH, content=UUR)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "0.5"
    assert emulator.received_ids() == set()
    assert emulator.stats().errors_injected == 2
    emulator.set_faults(error_rate=0.0)
    assert client.post(REPORT_PATH, content=UUR).status_code == 200


def test_error_rate_is_a_probability_and_the_dice_are_seeded() -> None:
    def outcomes(seed: int) -> list[int]:
        with Emulator(faults=Faults(error_rate=0.5), seed=seed) as em, \
                httpx.Client(base_url=em.url, headers=AUTH) as c:
            return [c.post(REPORT_PATH, content=UUR).status_code for _ in range(40)]

    first = outcomes(7)
    assert first == outcomes(7)
    assert 5 < first.count(503) < 35 and first.count(200) + first.count(503) == 40


def test_latency_is_added(emulator: Emulator, client: httpx.Client) -> None:
    emulator.set_faults(latency_s=0.2)
    started = time.monotonic()
    assert client.post(REPORT_PATH, content=UUR).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_drop_before_fails_the_client_and_stores_nothing(emulator: Emulator, client: httpx.Client) -> None:
    assert client.get(PING_PATH).status_code == 200  # a pooled keep-alive connection, as an uploader has
    emulator.set_faults(drop_before_rate=1.0)
    with pytest.raises(httpx.TransportError):
        client.post(REPORT_PATH, content=UUT)
    assert emulator.received_ids() == set()
    stats = emulator.stats()
    assert stats.dropped_before == 1 and stats.accepted == 0


def test_drop_after_fails_the_client_but_the_report_is_stored(emulator: Emulator, client: httpx.Client) -> None:
    emulator.set_faults(drop_after_rate=1.0)
    with pytest.raises(httpx.TransportError):
        client.post(REPORT_PATH, content=UUT)
    assert emulator.received_ids() == {"33a2d408-3fc8-480b-b554-6866c77fd91c"}
    stats = emulator.stats()
    assert stats.dropped_after == 1 and stats.accepted == 0 and stats.unique_ids == 1
    # the client sends it again, as it must: the server replaces by id
    emulator.set_faults(drop_after_rate=0.0)
    assert client.post(REPORT_PATH, content=UUT).status_code == 200
    assert emulator.stats().duplicates == 1


def test_down_mode_answers_503_everywhere(emulator: Emulator, client: httpx.Client) -> None:
    emulator.set_faults(down=True, retry_after=3)
    answer = client.post(REPORT_PATH, content=UUR)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "3"
    assert client.get(PING_PATH).status_code == 503
    assert emulator.received_ids() == set()
    emulator.set_faults(down=False)
    assert client.post(REPORT_PATH, content=UUR).status_code == 200


def test_injected_rejection(emulator: Emulator, client: httpx.Client) -> None:
    emulator.set_faults(reject_rate=1.0)
    assert client.post(REPORT_PATH, content=UUR).status_code == 400
    stats = emulator.stats()
    assert stats.rejected_400 == 1 and stats.rejects_injected == 1 and emulator.received_ids() == set()


def test_go_down_refuses_connections_and_come_back_serves_again(emulator: Emulator, client: httpx.Client) -> None:
    assert client.post(REPORT_PATH, content=UUR).status_code == 200
    port = emulator.port
    emulator.go_down()
    assert not emulator.is_up
    with pytest.raises(httpx.ConnectError):
        client.post(REPORT_PATH, content=UUR)
    with pytest.raises(httpx.ConnectError):
        httpx.get(emulator.url + PING_PATH)
    emulator.come_back()
    assert emulator.port == port and emulator.is_up
    assert client.post(REPORT_PATH, content=UUR).status_code == 200
    assert emulator.stats().duplicates == 1


def test_faults_are_checked() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=1.5)
    with pytest.raises(ValueError, match="error_status"):
        Faults(error_status=200)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults().changed(eror_rate=1)


# ----------------------------------------------------------------------------- control endpoint


def test_control_endpoint_reads_and_changes_faults(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url) as c:  # no token needed on loopback
        assert c.get("/_emulator/faults").json() == Faults().as_dict()
        changed = c.post("/_emulator/faults", json={"error_rate": 1.0, "error_status": 502})
        assert changed.status_code == 200 and changed.json()["error_status"] == 502
        assert emulator.faults.error_rate == 1.0
        assert c.post(REPORT_PATH, content=UUR, headers=AUTH).status_code == 502
        bad = c.post("/_emulator/faults", json={"error_rate": 2})
        assert bad.status_code == 400 and "error_rate" in bad.json()["message"]
        unknown = c.post("/_emulator/faults", json={"nope": 1})
        assert unknown.status_code == 400 and "unknown fault nope" in unknown.json()["message"]
        c.post("/_emulator/faults", json={"error_rate": 0})
        assert c.post(REPORT_PATH, content=UUR, headers=AUTH).status_code == 200
        stats = c.get("/_emulator/stats").json()
        assert stats["posts"] == 2 and stats["accepted"] == 1 and stats["errors_injected"] == 1
        assert c.post("/_emulator/reset").status_code == 200
        assert c.get("/_emulator/stats").json()["posts"] == 0
        assert emulator.received_ids() == set()
        assert c.get("/_emulator/nothing").status_code == 404


def test_control_endpoint_outage(emulator: Emulator) -> None:
    answer = httpx.post(emulator.url + "/_emulator/outage", json={"seconds": 1.0})
    assert answer.status_code == 200
    # The outage begins just after that answer is out (a timer thread, late on a busy machine): wait
    # for it, bounded, instead of for a fixed time.
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(emulator.url + PING_PATH)
        except httpx.ConnectError:
            break  # down: connections are refused
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass  # cut while the listener was closing
        assert time.monotonic() < deadline, "the outage endpoint did not take the emulator down"
        time.sleep(0.01)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            assert httpx.get(emulator.url + PING_PATH).status_code == 200
            break
        except httpx.ConnectError:
            time.sleep(0.05)
    else:
        pytest.fail("the emulator did not come back after the outage")


# -------------------------------------------------------------------------------- concurrency


def test_concurrent_posts_are_all_counted(emulator: Emulator) -> None:
    ids = [[str(uuid.uuid4()) for _ in range(50)] for _ in range(8)]
    failures: list[BaseException] = []

    def worker(mine: list[str]) -> None:
        try:
            with httpx.Client(base_url=emulator.url, headers=AUTH, timeout=10) as c:
                for report_id in mine:
                    assert c.post(REPORT_PATH, content=with_id(report_id)).status_code == 200
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(mine,)) for mine in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not failures
    stats = emulator.stats()
    assert (stats.posts, stats.accepted, stats.unique_ids, stats.duplicates) == (400, 400, 400, 0)
    assert emulator.received_ids() == {i for mine in ids for i in mine}


def test_stop_closes_idle_keep_alive_connections() -> None:
    em = Emulator()
    em.start()
    with httpx.Client(base_url=em.url, headers=AUTH) as c:
        assert c.get(PING_PATH).status_code == 200
        em.stop()
        with pytest.raises(httpx.TransportError):
            c.get(PING_PATH)
    em.start()  # and it can start again
    try:
        assert httpx.get(em.url + PING_PATH).status_code == 200
    finally:
        em.stop()


# ------------------------------------------------------------------------------------------ CLI


def test_cli_runs_in_the_foreground_and_prints_final_stats(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stationflow", "emulator", "--port", "0", "--store", str(tmp_path / "got"),
         "--stats-every", "0.2", "--error-status", "502"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "WATS emulator listening on http://127.0.0.1:" in first, first + proc.stderr.read()
        url = first.split()[4]
        assert httpx.post(url + REPORT_PATH, content=UUR, headers=AUTH).status_code == 200
        assert (tmp_path / "got" / f"{UUR_ID}.json").read_bytes() == UUR
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "posts=1 accepted=1" in out.splitlines()[-1] and out.splitlines()[-1].startswith("stopped after")


def test_cli_stops_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "stationflow", "emulator", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and "listening on" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped after" in out


@pytest.mark.parametrize(("argv", "says"), [
    (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0"),
    (["--error-rate", "2"], "error_rate"),
])
def test_cli_refuses_bad_options(argv: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "stationflow", "emulator", "--port", "0", *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=20)
    assert done.returncode == 1
    assert says in done.stderr and done.stderr.startswith("stationflow: error: ")


def test_a_store_folder_that_fails_gives_500_and_stores_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Emulator(store_dir=store) as em, httpx.Client(base_url=em.url, headers=AUTH) as c:
        store.rmdir()
        store.write_bytes(b"a file where the folder was")
        answer = c.post(REPORT_PATH, content=UUR)
        assert answer.status_code == 500 and "could not store" in answer.json()["message"]
        assert em.received_ids() == set() and em.stats().handler_errors == 0
