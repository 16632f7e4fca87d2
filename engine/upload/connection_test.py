""""Test connection": ask the server for its version once, and say exactly what went wrong if it did.

Used by the configurator's Connection page (from a worker thread: this is a blocking call) with
the settings on screen, before they are saved. The probe is the same authenticated endpoint the
uploader probes (``PROBE_PATH``), so a success here means the token works too, not only the
network. Each failure is sorted into one ``error_kind`` a person can act on:

``dns`` the host name does not resolve · ``refused`` nothing listens at that address ·
``tls`` the certificate check failed · ``timeout`` no answer in time · ``401`` token refused ·
``403`` token lacks rights · ``404`` no WATS API at that address · ``http`` any other answer ·
``network`` any other transport failure · ``config`` the settings themselves are unusable.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .answers import WEB_PAGE, Reply, read_reply_sync, server_message
from .client import PROBE_PATH
from ...schemas.config import ServerSection, masked_url

#: The longest a test may take, whatever the config's timeouts say: a person is waiting.
MAX_WAIT_S = 15.0


@dataclass(frozen=True)
class ConnectionResult:
    """What the test found: the server's version and round trip, or the kind of failure and why."""

    ok: bool
    message: str
    version: str | None = None
    rtt_ms: float | None = None
    error_kind: str | None = None  # dns|refused|tls|timeout|401|403|404|http|network|config
    status: int | None = None


def check_connection(server: ServerSection, *, base_dir: str | Path | None = None,
                     max_wait_s: float = MAX_WAIT_S) -> ConnectionResult:
    """GET the version endpoint with the token; blocking, bounded by ``max_wait_s`` per phase.

    ``base_dir`` is the config file's folder: a relative ``ca_bundle`` is read from there.
    The round trip is the second of two requests on one connection (the first one also pays for
    DNS, the TCP connect and the TLS handshake), so it is what every upload will pay.
    """
    try:
        verify = _verify(server, base_dir)
    except _BadSetting as exc:
        return ConnectionResult(False, str(exc), error_kind="config")
    headers = {"User-Agent": "stationflow-configure/0.1", "Accept": "application/json"}
    if server.token is not None:
        headers["Authorization"] = f"Basic {server.token.get_secret_value()}"
    timeout = httpx.Timeout(min(server.timeout_s, max_wait_s), connect=min(server.connect_timeout_s, max_wait_s))
    url = masked_url(server.url)  # what a person reads: never a password written into the URL
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=timeout, verify=verify,
                          follow_redirects=False, trust_env=False) as client:
            started = time.perf_counter()
            first = read_reply_sync(client.send(client.build_request("GET", PROBE_PATH), stream=True))
            first_ms = (time.perf_counter() - started) * 1000
            if first.status != 200 or first.is_web_page:
                return _refusal(first, url)
            started = time.perf_counter()
            second = read_reply_sync(client.send(client.build_request("GET", PROBE_PATH), stream=True))
            rtt_ms = min(first_ms, (time.perf_counter() - started) * 1000)
            if second.status != 200 or second.is_web_page:
                return _refusal(second, url)
    except httpx.HTTPError as exc:
        return _transport_failure(exc, url)
    except (OSError, ValueError) as exc:  # e.g. a ca_bundle that is not a PEM file
        return ConnectionResult(False, f"cannot talk to {url}: {_masked(str(exc), server.url)}",
                                error_kind="network")
    version = _version(first)
    return ConnectionResult(True, f"connected: server version {version}, round trip {rtt_ms:.1f} ms",
                            version=version, rtt_ms=round(rtt_ms, 2), status=200)


class _BadSetting(Exception):
    pass


def _verify(server: ServerSection, base_dir: str | Path | None) -> ssl.SSLContext | bool:
    if not server.verify_tls:
        return False
    if not server.ca_bundle:
        return True
    path = Path(server.ca_bundle).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise _BadSetting(f"server.ca_bundle: {path} does not exist — give the PEM file of the CA "
                          "that signed the server's certificate")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise _BadSetting(f"server.ca_bundle: {path} is not a usable PEM certificate file ({exc})") from None


def _version(response: Reply) -> str:
    """WATS answers a JSON string; the emulator an object with ``version``; anything else as text."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:100] or "(not given)"
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("version", "Version", "productVersion", "ProductVersion"):
            if data.get(key):
                return str(data[key])
    return str(data)[:100]


def _refusal(response: Reply, url: str) -> ConnectionResult:
    code = response.status
    if 200 <= code < 300:  # a proxy's login page
        return ConnectionResult(False, f"{WEB_PAGE} ({code} from {url})", error_kind="http", status=code)
    said = server_message(response, limit=300)
    said_part = f" (server said: {said})" if said else ""
    if code == 401:
        return ConnectionResult(False, f"the server refused the token (401){said_part} — paste the token "
                                       "issued by the WATS server into server.token", error_kind="401", status=code)
    if code == 403:
        return ConnectionResult(False, f"the token is not allowed to do this (403){said_part} — check the "
                                       "token's rights on the WATS server", error_kind="403", status=code)
    if code == 404:
        return ConnectionResult(False, f"no WATS API at {url} (404 for {PROBE_PATH}) — server.url must be the "
                                       "server's base address, without a path such as /api", error_kind="404",
                                status=code)
    if 300 <= code < 400:
        where = response.headers.get("location", "?")
        return ConnectionResult(False, f"the server redirects to {where} ({code}) — set server.url to that "
                                       "address", error_kind="http", status=code)
    return ConnectionResult(False, f"the server answered {code}{said_part}", error_kind="http", status=code)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _transport_failure(exc: httpx.HTTPError, url: str) -> ConnectionResult:
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    host = httpx.URL(url).host
    tls = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if tls is not None or "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text and "handshake" in text.lower():
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(exc)
        return ConnectionResult(False, f"TLS check of {host} failed ({detail}) — set server.ca_bundle to the "
                                       "CA that signed its certificate, or renew the certificate",
                                error_kind="tls")
    if isinstance(exc, httpx.TimeoutException):
        phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "answer"
        return ConnectionResult(False, f"{host} did not {phase} in time ({type(exc).__name__}) — check the "
                                       "address, a firewall, or raise the timeouts", error_kind="timeout")
    dns_markers = ("name or service not known", "nodename nor servname", "getaddrinfo failed",
                   "no address associated", "name resolution", "no such host", "not known")
    if any(isinstance(e, socket.gaierror) for e in chain) or any(m in text.lower() for m in dns_markers):
        return ConnectionResult(False, f"the host name {host} could not be found (DNS) — check the spelling "
                                       "of server.url, or the station's DNS settings", error_kind="dns")
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text.lower() \
            or "[errno 111]" in text.lower() or "10061" in text:
        return ConnectionResult(False, f"nothing answers at {url} (connection refused) — is the server "
                                       "running, and is the port right?", error_kind="refused")
    return ConnectionResult(False, f"cannot talk to {url}: {exc or type(exc).__name__}", error_kind="network")


def _masked(text: str, url: str) -> str:
    """``text`` with the URL's password (if one is written in it) masked."""
    password = httpx.URL(url).password
    return text.replace(password, "***") if password else text


__all__ = ["MAX_WAIT_S", "ConnectionResult", "check_connection"]
