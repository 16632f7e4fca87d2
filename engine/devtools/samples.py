"""Realistic generated WSJF reports for the demo, the benchmarks and the tests.

Shaped like the real exports in fixtures/reports (a UUT report with a SequenceCall root and
numeric, pass/fail and string steps). Built in code, not read from fixtures/, so the demo works
from any install. ``approx_bytes`` picks the number of steps to reach roughly that size.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

_BASE_TIME = datetime(2026, 11, 2, 8, 0, 0, tzinfo=timezone(timedelta(hours=1)))


def _numeric_step(step_id: int, rng: random.Random) -> dict[str, Any]:
    low, high = round(rng.uniform(0.5, 4.5), 3), round(rng.uniform(5.0, 12.0), 3)
    value = round(rng.uniform(low * 0.9, high * 1.02), 4)
    status = "P" if low <= value <= high else "F"
    return {"id": step_id, "group": "M", "stepType": "ET_NLT", "name": f"Voltage rail {step_id}", "status": status,
            "totTime": round(rng.uniform(0.01, 0.5), 3), "causedUUTFailure": False,
            "numericMeas": [{"compOp": "GELE", "name": None, "status": status, "unit": "V", "value": value,
                             "highLimit": high, "lowLimit": low}]}


def _boolean_step(step_id: int, rng: random.Random) -> dict[str, Any]:
    status = "P" if rng.random() > 0.02 else "F"
    return {"id": step_id, "group": "M", "stepType": "ET_PFT", "name": f"Continuity {step_id}", "status": status,
            "totTime": round(rng.uniform(0.01, 0.2), 3), "causedUUTFailure": False,
            "booleanMeas": [{"name": None, "status": status}]}


def _string_step(step_id: int, rng: random.Random) -> dict[str, Any]:
    value = f"FW-{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}"
    return {"id": step_id, "group": "M", "stepType": "ET_SVT", "name": f"Firmware version {step_id}", "status": "P",
            "totTime": 0.01, "causedUUTFailure": False,
            "stringMeas": [{"compOp": "LOG", "name": None, "status": "P", "value": value, "limit": None}]}


_STEP_MAKERS = (_numeric_step, _numeric_step, _boolean_step, _string_step)
_BYTES_PER_STEP = 215


def make_report(index: int, *, approx_bytes: int = 1200, seed: int | None = None, station: str = "DEMO-STATION",
                location: str = "Line 1", purpose: str = "Production", report_id: str | None = None) -> dict[str, Any]:
    """One UUT report as a dict; the same (index, seed) always gives the same report."""
    rng = random.Random(f"{seed}-{index}")
    n_steps = max(1, (approx_bytes - 900) // _BYTES_PER_STEP)
    steps = [_STEP_MAKERS[i % len(_STEP_MAKERS)](i + 2, rng) for i in range(n_steps)]
    failed = any(s["status"] == "F" for s in steps)
    start = _BASE_TIME + timedelta(seconds=37 * index)
    return {
        "type": "T",
        "id": report_id or str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "pn": "PCBA-1042", "sn": f"SN{index:08d}", "rev": "C", "productName": "Controller board",
        "processCode": 10, "processName": "ICT",
        "result": "F" if failed else "P",
        "machineName": station, "location": location, "purpose": purpose,
        "start": start.isoformat(timespec="milliseconds"),
        "startUTC": start.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "root": {"id": 1, "group": "M", "stepType": "SequenceCall", "name": "MainSequence Callback",
                 "status": "F" if failed else "P", "totTime": round(sum(s["totTime"] for s in steps), 3),
                 "causedUUTFailure": False, "steps": steps,
                 "seqCall": {"path": "ict.seq", "name": "MainSequence Callback", "version": "2.4.1"}},
        "uut": {"execTime": 12.5, "user": "operator", "fixtureId": "FX-7", "testSocketIndex": 0},
        "miscInfos": [{"description": "Fixture temperature", "text": None, "numeric": round(rng.uniform(21, 27), 1)}],
        "subUnits": [], "assets": [], "assetStats": [], "additionalData": [],
    }


def make_report_bytes(index: int, **kwargs: Any) -> bytes:
    """``make_report`` serialised compactly, as equipment would write it."""
    return json.dumps(make_report(index, **kwargs), separators=(",", ":")).encode()
