"""The age envelope as a library: round trips, recipients, tampering, streaming and memory."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.crypto import ScryptRecipient, Writer, X25519Identity, decrypt, encrypt
from app.crypto.envelope import PAYLOAD_LABEL, PIPELINE_CHUNKS
from app.crypto.header import encode_header, hkdf
from app.crypto.stream import (
    BATCH_CHUNKS,
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    TAG_SIZE,
    WRITE_PIECE,
    Sealer,
)
from app.errors import (
    ChunkOrderError,
    CryptoError,
    EmptyChunkError,
    HeaderError,
    HeaderMACError,
    NoIdentityMatchError,
    TamperedChunkError,
    TrailingDataError,
    TruncatedError,
    UnsupportedVersionError,
)
from tests.helpers import (
    HashSink,
    PatternReader,
    TrickleReader,
    decrypt_bytes,
    encrypt_bytes,
    payload_offset,
    peaks,
)
from tests.store_helpers import age_decrypt, identity_file

C, E = CHUNK_SIZE, ENC_CHUNK_SIZE
BATCH = BATCH_CHUNKS * CHUNK_SIZE  # 2 MiB: encrypt() and decrypt() work a batch at a time
SIZES = [0, 1, C - 1, C, C + 1, 3 * C, BATCH, BATCH + 1]
MiB = 1 << 20
REPO = Path(__file__).resolve().parent.parent


def _expected_payload_len(size: int) -> int:
    # One tag per chunk; only the last chunk is short, and it is empty only for empty input.
    return 16 + size + TAG_SIZE * max(1, -(-size // C))


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(keypair: X25519Identity, size: int) -> None:
    data = os.urandom(size)
    ciphertext = encrypt_bytes(data, [keypair.recipient])
    assert ciphertext != encrypt_bytes(data, [keypair.recipient])  # fresh file key and nonce
    assert len(ciphertext) - payload_offset(ciphertext) + 16 == _expected_payload_len(size)
    if size >= 32:
        assert data[:32] not in ciphertext
    assert decrypt_bytes(ciphertext, [keypair]) == data


def test_short_reads_both_ways(keypair: X25519Identity) -> None:
    """Pipes hand out a few bytes at a time: header and payload must still be read whole."""
    data = os.urandom(2 * C + 5)
    out = io.BytesIO()
    encrypt(TrickleReader(data, 1000), out, [keypair.recipient])
    plain = io.BytesIO()
    assert decrypt(TrickleReader(out.getvalue(), 7), plain, [keypair]) == len(data)
    assert plain.getvalue() == data


class _Recorder(io.BytesIO):
    """A BytesIO that remembers the size of every write it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, data: object) -> int:
        n = super().write(data)  # type: ignore[arg-type]
        self.sizes.append(n)
        return n


def test_writes_stay_small(keypair: X25519Identity) -> None:
    """Batches are 2 MiB, but no write() is larger than WRITE_PIECE (see write_all)."""
    data = os.urandom(3 * BATCH_CHUNKS * CHUNK_SIZE + 12345)
    sealed = _Recorder()
    encrypt(io.BytesIO(data), sealed, [keypair.recipient])
    opened = _Recorder()
    decrypt(io.BytesIO(sealed.getvalue()), opened, [keypair])
    assert opened.getvalue() == data
    for sizes in (sealed.sizes[1:], opened.sizes):  # (the first write is the header)
        assert max(sizes) == WRITE_PIECE
        assert len(sizes) > len(data) // WRITE_PIECE


def test_progress_reports_the_total(keypair: X25519Identity) -> None:
    seen: list[int] = []
    size = BATCH + 3
    ciphertext = io.BytesIO()
    assert encrypt(PatternReader(size), ciphertext, [keypair.recipient], seen.append) == size
    assert seen == sorted(seen)
    assert seen[-1] == size
    seen.clear()
    decrypt(io.BytesIO(ciphertext.getvalue()), HashSink(), [keypair], seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == size


@pytest.mark.parametrize("count", [1, 2, 5])
def test_every_recipient_decrypts_alone(count: int) -> None:
    identities = [X25519Identity.generate() for _ in range(count)]
    data = os.urandom(C + 7)
    ciphertext = encrypt_bytes(data, [i.recipient for i in identities])
    assert ciphertext.count(b"\n-> X25519 ") == count
    for identity in identities:
        assert decrypt_bytes(ciphertext, [identity]) == data
    stranger = X25519Identity.generate()
    assert decrypt_bytes(ciphertext, [stranger, identities[-1]]) == data
    with pytest.raises(NoIdentityMatchError):
        decrypt_bytes(ciphertext, [stranger])


@pytest.mark.parametrize(
    ("scrypt", "x25519", "message"), [(0, 0, "no recipients"), (1, 1, "cannot be combined")]
)
def test_refused_recipient_sets(scrypt: int, x25519: int, message: str) -> None:
    recipients = [ScryptRecipient("a long passphrase", 2)] * scrypt
    recipients += [X25519Identity.generate().recipient] * x25519
    with pytest.raises(CryptoError, match=message):
        encrypt_bytes(b"tip", recipients)


# --- Writer: age's streaming encryptor, the one way to encrypt ------------------------------

WRITES = [1, 7, 4093, C + 1, 31, C, 2]


@pytest.mark.parametrize("size", [0, 1, C, C + 1, 2 * C, 3 * C + 5])
def test_writer_with_odd_writes_matches_encrypt(keypair: X25519Identity, size: int) -> None:
    data = os.urandom(size)
    out = io.BytesIO()
    with Writer(out, [keypair.recipient]) as writer:
        pos, step = 0, 0
        while pos < size:
            n = WRITES[step % len(WRITES)]
            assert writer.write(memoryview(data)[pos : pos + n]) == len(data[pos : pos + n])
            pos, step = pos + n, step + 1
    assert writer.closed
    assert writer.size == size
    reference = encrypt_bytes(data, [keypair.recipient])
    assert len(out.getvalue()) == len(reference)  # same chunking, byte for byte
    assert decrypt_bytes(out.getvalue(), [keypair]) == data


def _interrupted_upload(writer: Writer, size: int) -> None:
    with writer:
        writer.write(os.urandom(size))
        raise ConnectionResetError("the upload was interrupted")


@pytest.mark.parametrize("size", [0, 10, C + 10])
def test_writer_not_closed_is_truncated(keypair: X25519Identity, size: int) -> None:
    out = io.BytesIO()
    with pytest.raises(ConnectionResetError):
        _interrupted_upload(Writer(out, [keypair.recipient]), size)
    with pytest.raises(TruncatedError):
        decrypt_bytes(out.getvalue(), [keypair])


@pytest.mark.parametrize(
    "piece", [PIPELINE_CHUNKS * C - 1, PIPELINE_CHUNKS * C, 3 * BATCH_CHUNKS * C]
)
def test_writer_with_a_pool(tmp_path: Path, keypair: X25519Identity, piece: int) -> None:
    """Big writes are sealed on the caller's pool and written on it; age reads the result."""
    data = os.urandom(3 * piece + 777)
    path = tmp_path / "pooled.age"
    with ThreadPoolExecutor(3) as pool, path.open("wb") as handle:
        writer = Writer(handle, [keypair.recipient], pool=pool)
        for start in range(0, len(data), piece):
            writer.write(memoryview(data)[start : start + piece])
        writer.write(b"")  # an empty write changes nothing
        writer.close()
        writer.close()  # idempotent
    assert path.stat().st_size == len(encrypt_bytes(data, [keypair.recipient]))
    assert age_decrypt(path, identity_file(tmp_path, keypair)) == data


def test_the_crypto_core_loads_no_server_module() -> None:
    """The caller passes the pool in: encrypting loads nothing of app.server."""
    probe = (
        "import io, json, sys; from app.crypto import X25519Identity, encrypt; "
        "encrypt(io.BytesIO(bytes(5 << 20)), io.BytesIO(), [X25519Identity.generate().recipient]); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('app.'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, timeout=60, check=True
    )
    assert [m for m in json.loads(proc.stdout) if m.startswith("app.server")] == []


def test_writer_refuses_writes_after_close(keypair: X25519Identity) -> None:
    writer = Writer(io.BytesIO(), [keypair.recipient])
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"late")


# --- header damage -------------------------------------------------------------------------------


def _retype(ct: bytes, at: int) -> bytes:
    """Replace the base64 letter at ``at`` by another one (``B`` is never canonical last)."""
    return ct[:at] + (b"A" if ct[at] == ord("B") else b"B") + ct[at + 1 :]


def _mac(ct: bytes) -> int:
    return ct.index(b"\n--- ") + 5


def _drop_first_stanza(ct: bytes) -> bytes:
    start = ct.index(b"\n-> X25519 ") + 1
    end = ct.index(b"\n", ct.index(b"\n", start) + 1) + 1
    return ct[:start] + ct[end:]


def _add_scrypt_stanza(ct: bytes) -> bytes:
    stanza = ScryptRecipient("a long passphrase", 2).wrap(os.urandom(16)).encode()
    at = ct.index(b"---")
    return ct[:at] + stanza + ct[at:]


HEADER_DAMAGE: list[tuple[str, Callable[[bytes], bytes], type[Exception]]] = [
    ("mac changed", lambda ct: _retype(ct, _mac(ct)), HeaderMACError),
    ("other stanza altered", lambda ct: _retype(ct, ct.index(b"X25519 ") + 7), HeaderMACError),
    ("other stanza removed", _drop_first_stanza, HeaderMACError),
    ("stanza added", lambda ct: ct.replace(b"\n---", b"\n-> grease x\n\n---", 1), HeaderMACError),
    ("mac non-canonical", lambda ct: _retype(ct, _mac(ct) + 42), HeaderError),
    ("mac line cut", lambda ct: ct[: ct.index(b"\n--- ") + 10], HeaderError),
    ("version v2", lambda ct: ct.replace(b"org/v1", b"org/v2", 1), UnsupportedVersionError),
    ("not age", lambda ct: b"Dear editor,\n" + ct, HeaderError),
    ("empty file", lambda ct: b"", HeaderError),
    ("crlf", lambda ct: ct.replace(b"\n---", b"\r\n---", 1), HeaderError),
    ("scrypt mixed in", _add_scrypt_stanza, HeaderError),
    ("no nonce", lambda ct: ct[: payload_offset(ct) - 10], HeaderError),
    ("no payload", lambda ct: ct[: payload_offset(ct)], TruncatedError),
]


@pytest.mark.parametrize(("edit", "error"), [pytest.param(e, x, id=n) for n, e, x in HEADER_DAMAGE])
def test_header_damage(edit: Callable[[bytes], bytes], error: type[Exception]) -> None:
    other, mine = X25519Identity.generate(), X25519Identity.generate()
    ciphertext = encrypt_bytes(b"a tip", [other.recipient, mine.recipient])
    damaged = edit(ciphertext)
    assert damaged != ciphertext
    with pytest.raises(CryptoError) as caught:
        decrypt_bytes(damaged, [mine])
    assert type(caught.value) is error


def test_wrong_key_is_named(keypair: X25519Identity) -> None:
    ciphertext = encrypt_bytes(b"a tip", [keypair.recipient])
    with pytest.raises(CryptoError) as caught:
        decrypt_bytes(ciphertext, [X25519Identity.generate()])
    assert type(caught.value) is NoIdentityMatchError
    assert caught.value.hint


# --- payload damage, made by editing real ciphertext ---------------------------------------------

Chunks = list[bytes]
LAYOUTS = {"short last": 3 * C + 100, "full last": 3 * C, "two batches": BATCH + 1}


def _flip(chunks: Chunks, i: int) -> Chunks:
    chunk = bytearray(chunks[i])
    chunk[5] ^= 1
    return [*chunks[:i], bytes(chunk), *chunks[i + 1 :]]


def _flip_at(i: int) -> Callable[[Chunks], Chunks]:
    return lambda ch: _flip(ch, i % len(ch))


PAYLOAD_DAMAGE: list[tuple[str, Callable[[Chunks], Chunks], type[Exception]]] = [
    ("flip chunk 0", _flip_at(0), TamperedChunkError),
    ("flip chunk 1", _flip_at(1), TamperedChunkError),
    ("flip last chunk", _flip_at(-1), TamperedChunkError),
    ("swap chunks 1 and 2", lambda ch: [ch[0], ch[2], ch[1], *ch[3:]], ChunkOrderError),
    ("drop last chunk", lambda ch: ch[:-1], TruncatedError),
    ("append 1 byte", lambda ch: [*ch, b"\n"], TrailingDataError),
    ("append 100 bytes", lambda ch: [*ch, os.urandom(100)], TrailingDataError),
    ("append a chunk", lambda ch: [*ch, os.urandom(E)], TrailingDataError),
    ("cut 8 bytes into chunk 1", lambda ch: [ch[0], ch[1][:8]], TruncatedError),
    ("cut 16 bytes into chunk 1", lambda ch: [ch[0], ch[1][:16]], TruncatedError),
    # A chunk cut in its middle cannot be told from a damaged last chunk: nothing authenticates.
    ("cut mid chunk 1", lambda ch: [ch[0], ch[1][: C // 2]], TamperedChunkError),
]


def _case(name: str, edit: Callable[[Chunks], Chunks], error: type, layout: str) -> object:
    return pytest.param(layout, edit, error, id=f"{layout}-{name}")


@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[X25519Identity, bytes, bytes]]:
    identity = X25519Identity.generate()
    out = {}
    for layout, size in LAYOUTS.items():
        data = os.urandom(size)
        out[layout] = (identity, data, encrypt_bytes(data, [identity.recipient]))
    return out


@pytest.mark.parametrize(
    ("layout", "edit", "error"),
    [_case(*row, layout) for row in PAYLOAD_DAMAGE for layout in LAYOUTS],
)
def test_payload_damage(
    samples: dict[str, tuple[X25519Identity, bytes, bytes]],
    layout: str,
    edit: Callable[[Chunks], Chunks],
    error: type[Exception],
) -> None:
    identity, data, ciphertext = samples[layout]
    start = payload_offset(ciphertext)
    chunks = [ciphertext[i : i + E] for i in range(start, len(ciphertext), E)]
    damaged = ciphertext[:start] + b"".join(edit(chunks))
    assert damaged != ciphertext
    released = io.BytesIO()
    with pytest.raises(CryptoError) as caught:
        decrypt(io.BytesIO(damaged), released, [identity])
    assert type(caught.value) is error, caught.value
    # Whatever reached the sink before the error was authenticated plaintext, in order.
    assert data.startswith(released.getvalue())


def test_damage_releases_nothing_past_the_bad_chunk(keypair: X25519Identity) -> None:
    data = os.urandom(5 * C)
    ciphertext = bytearray(encrypt_bytes(data, [keypair.recipient]))
    ciphertext[payload_offset(bytes(ciphertext)) + 3 * E + 9] ^= 0x80
    released = io.BytesIO()
    with pytest.raises(TamperedChunkError, match="chunk 3"):
        decrypt(io.BytesIO(bytes(ciphertext)), released, [keypair])
    assert released.getvalue() == data[: 3 * C]


def test_authentic_empty_last_chunk_is_named(keypair: X25519Identity) -> None:
    """An encoder bug age forbids: a full chunk, then an empty last chunk that authenticates."""
    file_key, nonce, data = os.urandom(16), os.urandom(16), os.urandom(C)
    sealer = Sealer(hkdf(file_key, nonce, PAYLOAD_LABEL))
    header = encode_header(file_key, [keypair.recipient.wrap(file_key)])
    chunks = bytes(sealer.seal(data, last=False)) + bytes(sealer.seal(b"", last=True))
    with pytest.raises(CryptoError) as caught:
        decrypt_bytes(header + nonce + chunks, [keypair])
    assert type(caught.value) is EmptyChunkError


# --- memory: a 64 MiB stream through a few MiB of buffers ---------------------------------------


# encrypt() pipelines four 2 MiB batch buffers (two read, two sealed): 8 MiB plus a few KiB.
LIMITS = {"encrypt": 10 * MiB, "decrypt": 8 * MiB, "writer": 8 * MiB}


@pytest.mark.slow
def test_memory_stays_flat(tmp_path: Path, keypair: X25519Identity) -> None:
    small, large = peaks(tmp_path, keypair, 4 * MiB), peaks(tmp_path, keypair, 64 * MiB)
    for operation, limit in LIMITS.items():
        assert large[operation] < limit, operation
        assert large[operation] - small[operation] < MiB, operation  # 16x the data, same memory
