"""The real thing over loopback: Gunicorn with deploy/gunicorn.conf.py serving the real app.

A source submits a 300 MiB file and a message, every part carrying unique canary strings, from a
recognisable client address and with a recognisable User-Agent. Afterwards nothing the server
could write (its data, secrets, keys, tmp and home folders, its stdout and stderr) may hold a
canary in the clear, the address or the agent; then the newsroom decrypts the items (outside
the server's folders) and finds every canary, and the file's name, again.

The test's own memory stays small: the upload is generated on the fly, 1 MiB at a time.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.live import LiveServer, OpenFiles

pytestmark = pytest.mark.slow

MIB = 1 << 20
CHUNK = 64 * 1024  # the age payload chunk
FILE_SIZE = 300 * MIB
PIECE = MIB  # what the client generates and sends at a time
CLIENT = "127.83.41.29"  # loopback accepts any 127/8 source address; this one is easy to grep
SCAN_BLOCK = 4 * MIB


# --- Canaries ---------------------------------------------------------------------------------


def _base64_forms(text: bytes) -> list[bytes]:
    """The parts of base64 that encode only ``text``, at each of the 3 alignments."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + text)
        start, end = -(-8 * shift // 6), 8 * (shift + len(text)) // 6
        forms += [encoded[start:end], encoded[start:end].replace(b"+", b"-").replace(b"/", b"_")]
    return forms


def _text_forms(text: str) -> list[bytes]:
    return [
        text.encode("utf-8"),
        text.encode("utf-16-le"),
        text.encode("utf-16-be"),
        *_base64_forms(text.encode("utf-8")),
    ]


@dataclass(frozen=True)
class Canaries:
    file: str = field(default_factory=lambda: f"FILECANARY{secrets.token_hex(16)}")
    message: str = field(default_factory=lambda: f"MSGCANARY{secrets.token_hex(16)}")
    name: str = field(default_factory=lambda: f"NAMECANARY{secrets.token_hex(8)}")
    agent: str = field(default_factory=lambda: f"TipboxLeakProbe/{secrets.token_hex(8)}")

    @property
    def filename(self) -> str:
        return f"leak-{self.name}.bin"

    @property
    def message_text(self) -> str:
        line = f"A tip for the newsroom: {self.message}. Señal, Übergabe, 東京.\n"
        return line * 5

    def patterns(self, codename: str) -> dict[bytes, str]:
        """Byte strings that must never appear in the server's files, with what each is."""
        found: dict[bytes, str] = {}
        for form in _text_forms(self.message):
            found[form] = "message canary"
        for form in _text_forms(self.name):
            found[form] = "file name canary"
        for form in _text_forms(self.file)[:3]:
            found[form] = "file content canary"
        found[CLIENT.encode()] = "client address"
        found[CLIENT.encode("utf-16-le")] = "client address"
        found[self.agent.encode()] = "user agent"
        found[codename.encode()] = "codename"
        return found


def scan(root: Path, patterns: dict[bytes, str]) -> list[str]:
    """Every occurrence of any pattern in any regular file under ``root`` (streamed)."""
    overlap = max(map(len, patterns)) - 1
    hits = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if not path.is_file() or path.is_symlink():
                continue
            with path.open("rb") as handle:
                offset, tail = 0, b""
                while block := handle.read(SCAN_BLOCK):
                    window = tail + block
                    for pattern, what in patterns.items():
                        at = window.find(pattern)
                        if at >= 0:
                            hits.append(f"{what} in {path} at {offset - len(tail) + at}")
                    tail = window[-overlap:]
                    offset += len(block)
    return hits


# --- The upload, generated on the fly -------------------------------------------------------


class CanaryFile:
    """``size`` bytes of a repeated random block, with ``canary`` written at chosen offsets:
    the start, the end, and across 64 KiB boundaries of the plaintext item whatever the length
    of the tar head in front of it (any multiple of 512 up to 3 KiB)."""

    BLOCK = os.urandom(PIECE)

    def __init__(self, size: int, canary: bytes) -> None:
        self.size, self.canary = size, canary
        last = size // CHUNK - 1
        spots = {0, size - len(canary)}
        for k in (1, 2, 7, 16, 64, 1000, 2500, last // 2, last):
            for head in range(0, 3584, 512):
                spots.add(k * CHUNK - head - len(canary) // 2)  # straddles the boundary
        self.positions = sorted(p for p in spots if 0 <= p <= size - len(canary))
        self.sha256 = hashlib.sha256()

    def pieces(self) -> Iterator[bytes]:
        for start in range(0, self.size, PIECE):
            piece = bytearray(self.BLOCK[: min(PIECE, self.size - start)])
            end = start + len(piece)
            first = bisect.bisect_left(self.positions, start - len(self.canary) + 1)
            for pos in self.positions[first:]:
                if pos >= end:
                    break
                lo, hi = max(pos, start), min(pos + len(self.canary), end)
                piece[lo - start : hi - start] = self.canary[lo - pos : hi - pos]
            self.sha256.update(piece)
            yield bytes(piece)


@dataclass
class Multipart:
    """A multipart/form-data body streamed from small parts and generators."""

    parts: list[tuple[bytes, Callable[[], Iterator[bytes]] | None, int]] = field(
        default_factory=list
    )
    boundary: str = field(default_factory=lambda: f"----tipbox{secrets.token_hex(16)}")

    def field(self, name: str, value: str) -> None:
        head = f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        self.parts.append(((head + value + "\r\n").encode(), None, 0))

    def file(
        self, name: str, filename: str, pieces: Callable[[], Iterator[bytes]], size: int
    ) -> None:
        head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self.parts.append((head.encode(), pieces, size))

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        total = sum(len(head) + size + (2 if gen else 0) for head, gen, size in self.parts)
        return total + len(self.end)

    @property
    def end(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def __iter__(self) -> Iterator[bytes]:
        for head, pieces, _ in self.parts:
            yield head
            if pieces is not None:
                yield from pieces()
                yield b"\r\n"
        yield self.end


# --- A plain HTTP client from CLIENT, with cookies ------------------------------------------


class Page(HTMLParser):
    """The bits of a page the test needs: text by element id, forms and links by id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.forms: dict[str, dict[str, str]] = {}
        self.fields: dict[str, dict[str, str]] = {}
        self.items: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self._form: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        ident = a.get("id")
        if tag == "a" and ident:
            self.links[ident] = a.get("href", "")
        if tag == "form":
            self._form = ident or ""
            self.forms[self._form] = a
            self.fields[self._form] = {}
        if tag == "input" and self._form is not None and a.get("type") == "hidden":
            self.fields[self._form][a.get("name", "")] = a.get("value", "")
        if tag == "li":
            for _, owner in self._open:
                if owner:
                    self.items.setdefault(owner, []).append("")
        if tag not in ("input", "br", "img", "meta", "link"):
            self._open.append((tag, ident))
            if ident:
                self.text.setdefault(ident, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.text[ident] += data
                if ident in self.items and any(t == "li" for t, _ in self._open):
                    self.items[ident][-1] += data


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str

    def page(self) -> Page:
        return Page(self.body.decode("utf-8"))


class Client:
    """One visitor: its own address, User-Agent and cookies; follows redirects."""

    def __init__(self, server: LiveServer, agent: str) -> None:
        self.server, self.agent = server, agent
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> Response:
        conn = self.server.connection(source_address=(CLIENT, 0), timeout=600)
        try:
            sent = {"User-Agent": self.agent, **(headers or {})}
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            # If the server answers early and closes (413, say), read what it said.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request(method, path, body=body, headers=sent)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        for value in answer.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                if morsel.value and morsel["max-age"] not in ("0",):
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return Response(answer.status, answer.headers, data, path)

    def follow(self, response: Response) -> Response:
        for _ in range(5):
            if response.status not in (301, 302, 303, 307, 308):
                return response
            target = urlsplit(urljoin(response.url, response.headers["Location"]))
            assert target.hostname in (None, "127.0.0.1"), target
            path = target.path + (f"?{target.query}" if target.query else "")
            response = self.request("GET", path)
        raise AssertionError("too many redirects")

    def get(self, path: str) -> Response:
        return self.follow(self.request("GET", path))


def _peak_memory(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# --- The test ---------------------------------------------------------------------------------


def _decrypt(identity: Path, item: Path, out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "decrypt",
            "-i",
            str(identity),
            "-o",
            str(out),
            str(item),
        ],
        check=True,
        timeout=600,
    )


def _read_member(archive: Path, sink: Callable[[bytes], None]) -> str:
    """Stream the single member of a tar file into ``sink``; return its name."""
    with archive.open("rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        members = []
        for member in tar:
            members.append(member.name)
            extracted = tar.extractfile(member)
            assert extracted is not None
            with extracted:
                while block := extracted.read(SCAN_BLOCK):
                    sink(block)
    assert len(members) == 1, members
    return members[0]


def test_big_upload_leaves_no_trace(live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    canaries = Canaries()
    server = live_server(env={"TIPBOX_MAX_SUBMISSION_BYTES": str(400 * MIB)})
    plain_dir = tmp_path / "newsroom"  # the test's plaintext: outside the server's folders
    try:
        _submit_and_check(server, canaries, plain_dir)
    finally:
        # 600 MiB would otherwise stay in pytest's kept tmp dirs.
        shutil.rmtree(server.data_dir / "items", ignore_errors=True)
        shutil.rmtree(plain_dir, ignore_errors=True)


def _submit_and_check(server: LiveServer, canaries: Canaries, plain_dir: Path) -> None:
    client = Client(server, canaries.agent)

    # Security headers, and no Server version.
    landing = client.get("/")
    assert landing.status == 200
    headers = landing.headers
    assert headers["Server"] == "gunicorn"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert "no-store" in headers["Cache-Control"]

    generated = client.get(landing.page().links["first-time"]).page()
    codename = " ".join(generated.text["codename"].split())
    assert len(codename.split()) >= 5, codename
    form_page = client.get(generated.links["continue"])
    assert form_page.status == 200
    page = form_page.page()
    form = page.forms["submit-form"]

    content = CanaryFile(FILE_SIZE, canaries.file.encode())
    body = Multipart()
    for name, value in page.fields["submit-form"].items():
        body.field(name, value)
    body.field("message", canaries.message_text)
    body.file("files", canaries.filename, content.pieces, content.size)
    body.field("website", "")
    started = time.monotonic()
    with OpenFiles(server) as watcher:
        posted = client.request(
            form.get("method", "post").upper(),
            form["action"],
            body=iter(body),
            headers={"Content-Type": body.content_type, "Content-Length": str(len(body))},
        )
    upload_seconds = time.monotonic() - started
    received = client.follow(posted)
    assert received.status == 200, received.body.decode()[:2000]
    items = received.page().items.get("received", [])
    assert len(items) == 2, received.body.decode()[-3000:]  # message, "1 file (300 MiB)"
    assert any(item.strip().startswith("1 ") for item in items), items
    peaks = [_peak_memory(pid) for pid in server.worker_pids()]

    server.stop()

    # Nothing the server wrote holds a canary, the client's address or its agent.
    patterns = canaries.patterns(codename)
    assert not scan(server.root, patterns)
    tmp_left = list(server.tmp_dir.rglob("*"))
    assert not tmp_left, tmp_left
    spooled = watcher.suspicious()
    assert not spooled, spooled
    # The upload streamed: no worker ever held anything like the file in memory.
    assert max(peaks) < 160 * MIB, f"worker peak memory {[p >> 20 for p in peaks]} MiB"

    # The newsroom's side: decrypt every item and find everything again.
    plain_dir.mkdir()
    store = server.store()
    sources = store.list_sources()
    assert len(sources) == 1
    found: dict[str, str] = {}
    for item in store.items_of(sources[0].id):
        out = plain_dir / f"{item.kind}-{item.id}.tar"
        _decrypt(server.identity_path, store.path_of(item), out)
        if item.kind == "message":
            text = bytearray()
            found["message"] = _read_member(out, text.extend)
            assert text.decode("utf-8") == canaries.message_text
            _check_with_age_and_tar(server.identity_path, store.path_of(item), plain_dir)
        else:
            counter = CanaryCounter(canaries.file.encode())
            found["file"] = _read_member(out, counter.feed)
            assert counter.sha256.hexdigest() == content.sha256.hexdigest()
            assert counter.count == len(content.positions)
        out.unlink()
    assert found == {"message": "message.txt", "file": canaries.filename}
    print(
        f"upload of {FILE_SIZE >> 20} MiB took {upload_seconds:.1f} s; "
        f"worker peak memory {[p >> 20 for p in peaks]} MiB"
    )


class CanaryCounter:
    """Counts occurrences of ``canary`` across a stream of blocks, and hashes the stream."""

    def __init__(self, canary: bytes) -> None:
        self.canary, self.count, self.tail = canary, 0, b""
        self.sha256 = hashlib.sha256()

    def feed(self, block: bytes) -> None:
        self.sha256.update(block)
        window = self.tail + block
        self.count += window.count(self.canary)
        # Keep a tail that cannot hold a whole canary, so none is counted twice.
        self.tail = window[-(len(self.canary) - 1) :]


def _age_reads(identity: Path) -> bool:
    """Whether this machine's ``age`` opens files for ``identity``: any age for a classical
    key, age 1.3 or later for a hybrid one (Debian 12 has 1.1.1)."""
    if "AGE-SECRET-KEY-PQ-" not in identity.read_text("utf-8"):
        return True
    version = (
        subprocess.run(["/usr/bin/age", "--version"], capture_output=True, timeout=60, check=True)
        .stdout.decode()
        .strip()
        .lstrip("v")
    )
    return tuple(int(n) for n in version.split(".")[:2]) >= (1, 3)


def _check_with_age_and_tar(identity: Path, item: Path, plain_dir: Path) -> None:
    """The journalist's fallback with standard tools: ``age -d -i ID item | tar -x``; with a
    hybrid key and an age older than 1.3, ``tipbox decrypt`` (the README's fallback then)."""
    folder = plain_dir / "age"
    folder.mkdir()
    decrypter = (
        ["/usr/bin/age", "-d"]
        if _age_reads(identity)
        else [sys.executable, "-m", "app.cli", "decrypt"]
    )
    with subprocess.Popen(
        [*decrypter, "-i", str(identity), str(item)], stdout=subprocess.PIPE
    ) as age:
        subprocess.run(["tar", "-x", "-C", str(folder)], stdin=age.stdout, check=True, timeout=60)
        assert age.wait(timeout=60) == 0
    assert [p.name for p in folder.iterdir()] == ["message.txt"]


def test_rate_limits_hold_across_workers(live_server: Callable[..., LiveServer]) -> None:
    """Three workers, a global limit of 4 costly requests a minute: 12 fresh visitors asking for
    a codename at once (new connections, which the kernel spreads over the workers) get
    exactly 4 codenames, not 4 per worker (app/server/counters.py)."""
    server = live_server(env={"TIPBOX_WORKERS": "3", "TIPBOX_RATE_LIMIT_GLOBAL": "4 per minute"})
    deadline = time.monotonic() + 30
    while len(server.worker_pids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.worker_pids()) == 3

    def generate() -> int:
        conn = server.connection(timeout=30)
        try:
            conn.request("GET", "/en/generate")
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: generate(), range(12)))
    assert sorted(statuses) == [200] * 4 + [429] * 8
