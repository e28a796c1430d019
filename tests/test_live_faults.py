"""Real Gunicorn under faults: a nearly full disk, and a stop while a slow upload is in flight.

Uses the real app under deploy/gunicorn.conf.py (tests/live.py) and the plain HTTP client of
tests/test_live.py; the full disk is a small tmpfs mounted under the server's data folder
(root only, see tests/test_store_faults.py).
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.server.incoming import TEMP_PREFIX
from tests.live import LiveServer
from tests.test_live import CLIENT, Client, Multipart
from tests.test_store_faults import fill, tmpfs

pytestmark = pytest.mark.slow

StartServer = Callable[..., LiveServer]
AGENT = "tipbox-fault-test"


def submission(client: Client, lang: str, message: str, file: bytes) -> tuple[str, Multipart]:
    """A fresh source's submission form, filled in: its action and body."""
    landing = client.get(f"/{lang}/")
    generated = client.get(landing.page().links["first-time"]).page()
    page = client.get(generated.links["continue"]).page()
    body = Multipart()
    for name, value in page.fields["submit-form"].items():
        body.field(name, value)
    body.field("message", message)
    body.file("files", "notes.txt", lambda: iter([file]), len(file))
    body.field("website", "")
    return page.forms["submit-form"]["action"], body


def post(client: Client, action: str, body: Multipart) -> tuple[int, str, dict[str, str]]:
    response = client.request(
        "POST",
        action,
        body=iter(body),
        headers={"Content-Type": body.content_type, "Content-Length": str(len(body))},
    )
    return response.status, response.body.decode("utf-8"), dict(response.headers.items())


def leftovers(server: LiveServer) -> list[str]:
    return sorted(p.name for p in (server.data_dir / "items").glob(f"{TEMP_PREFIX}*"))


def test_a_nearly_full_disk_refuses_uploads_and_keeps_the_worker(
    live_server: StartServer, tmp_path: Path
) -> None:
    """With 48 KiB free (where COMMIT died of SIGBUS in SQLite's -shm mapping), a submission
    gets the translated 503 page and the worker lives on; once there is room, it goes through."""
    env = {"TIPBOX_WORKERS": "1", "TIPBOX_FREE_SPACE_RESERVE": str(1 << 20)}
    with tmpfs(tmp_path / "server0" / "data", "16m") as disk:
        server = live_server(env=env)
        try:
            client = Client(server, AGENT)
            action, body = submission(client, "es", "hola", b"x" * 20_000)
            workers = server.worker_pids()
            fill(disk / "filler")
            os.truncate(disk / "filler", os.stat(disk / "filler").st_size - 48 * 1024)
            status, page, headers = post(client, action, body)
            assert status == 503, page
            assert "No se guardó nada" in page
            assert headers["Retry-After"] == "3600"
            assert server.worker_pids() == workers
            assert client.get("/es/").status == 200
            assert leftovers(server) == []
            assert server.store().list_sources() == []
            (disk / "filler").unlink()
            action, body = submission(client, "es", "hola", b"x" * 20_000)
            assert post(client, action, body)[0] in (200, 303)
            assert leftovers(server) == []
            assert len(server.store().list_sources()) == 1
        finally:
            server.stop()


# --- stopping while an upload is in flight --------------------------------------------------


class SlowUpload(threading.Thread):
    """Sends a submission: its first ``fast`` bytes at once (so that the file is being
    written), then a piece every ``pause`` seconds; keeps the answer."""

    PIECES = 40

    def __init__(self, client: Client, action: str, body: Multipart, fast: int, pause: float):
        super().__init__(daemon=True)
        self.client, self.action, self.body = client, action, body
        self.fast, self.pause = fast, pause
        self.started = threading.Event()
        self.status: int | None = None
        self.error: BaseException | None = None

    def pieces(self) -> Iterator[bytes]:
        data = b"".join(self.body)
        yield data[: self.fast]
        self.started.set()
        rest = data[self.fast :]
        step = -(-len(rest) // self.PIECES)
        for start in range(0, len(rest), step):
            time.sleep(self.pause)
            yield rest[start : start + step]

    def run(self) -> None:
        conn = self.client.server.connection(source_address=(CLIENT, 0), timeout=120)
        cookies = "; ".join(f"{k}={v}" for k, v in self.client.cookies.items())
        try:
            conn.putrequest("POST", self.action)
            conn.putheader("Cookie", cookies)
            conn.putheader("Content-Type", self.body.content_type)
            conn.putheader("Content-Length", str(len(self.body)))
            conn.endheaders()
            for piece in self.pieces():
                conn.send(piece)
            self.status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc
        finally:
            conn.close()


def stop_master(server: LiveServer, sig: signal.Signals) -> None:
    """Stop the master with ``sig`` (systemd sends SIGTERM, a terminal SIGINT); wait for it."""
    server.process.send_signal(sig)
    server.process.wait(timeout=120)
    server.stopped = True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
@pytest.mark.parametrize(("grace", "seconds"), [(30, 4.0), (2, 8.0)], ids=["within", "past"])
def test_a_stop_lets_uploads_finish_within_the_grace_period(
    live_server: StartServer, grace: int, seconds: float, sig: signal.Signals
) -> None:
    """An upload in flight when the service stops is stored and answered if it ends within
    gunicorn's graceful_timeout; one that does not leaves no temporary file behind."""
    env = {"TIPBOX_WORKERS": "1", "GUNICORN_CMD_ARGS": f"--graceful-timeout {grace}"}
    server = live_server(env=env)
    client = Client(server, AGENT)
    action, body = submission(client, "en", "slow", os.urandom(6 << 20))
    upload = SlowUpload(client, action, body, 4 << 20, seconds / SlowUpload.PIECES)
    upload.start()
    assert upload.started.wait(30)
    time.sleep(0.5)  # the worker is writing the file
    assert leftovers(server), "the upload has not started"
    stop_master(server, sig)
    upload.join(timeout=120)
    left = leftovers(server)  # (before opening the store, which removes them)
    sources = server.store().list_sources()
    log = server.log()
    if grace == 30:
        assert (upload.status, upload.error) == (303, None), log  # to the confirmation
        assert len(sources) == 1
    else:
        assert upload.status != 303
        assert sources == []
        # Said in the error log, by count only.
        assert "store: 1 upload(s) still in flight at the end of the grace period" in log
    assert left == [], log
    assert "Traceback" not in log
