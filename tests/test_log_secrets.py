"""A password written in the server URL never reaches the service's log, as the token does not.

The uploader prints the URL masked, but other text (an exception's message, a third-party log line)
can carry the URL as typed; the log's secret filter must know the password too, also after a reload
that changes it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stationflow.engine.service.reload import log_secrets
from stationflow.engine.service.service import Service
from stationflow.engine.station import load_station
from tests.test_service import serve, write_config
from tests.test_service_paths import service_of


def test_the_url_password_and_the_token_are_log_secrets(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://admin:s3cr%21t-pw@127.0.0.1:9/", token="tok-1234567")
    _, cfg = load_station(str(config))
    assert log_secrets(cfg) == ["tok-1234567", "s3cr!t-pw"]
    plain = write_config(tmp_path, "http://127.0.0.1:9/", token="tok-1234567")
    _, cfg = load_station(str(plain))
    assert log_secrets(cfg) == ["tok-1234567"]


async def test_the_service_masks_the_url_password_in_its_log_also_after_a_reload(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://admin:first-pw@127.0.0.1:9/")
    service, log = service_of(config)

    async def scenario(svc: Service) -> None:
        logging.getLogger("stationflow.test").warning("could not reach http://admin:first-pw@127.0.0.1:9/")
        config.write_text(config.read_text().replace("first-pw", "second-pw"), encoding="utf-8")
        await svc.reload()
        logging.getLogger("stationflow.test").warning("could not reach http://admin:second-pw@127.0.0.1:9/")

    rc, _ = await serve(service, scenario)
    assert rc == 0
    text = log.getvalue()
    assert "could not reach http://admin:" in text, text
    assert "first-pw" not in text and "second-pw" not in text, text
