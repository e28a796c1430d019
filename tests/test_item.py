"""The item format (app.item): the writer's layout and padding, and the one reader."""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import container
from app.crypto import X25519Identity
from app.crypto.stream import CHUNK_SIZE
from app.errors import ItemError, TipboxError
from app.files import atomic_write
from app.item import Member, Padding, Plaintext, Writer, is_padded, padded_tail, reading
from app.padding import bucket
from app.reply import make_reply
from tests.helpers import decrypt_bytes
from tests.store_helpers import pax_container, read_member, sparse_container, symlink_container

NAME, TYPE = "Información ñ.pdf", "application/pdf; x=y"

# --- the writer --------------------------------------------------------------------------------

# (bucket minimum, steps, data size) -> (age file size, SHA-256 of the plaintext, first 16 hex
# digits): what the previous release wrote (ItemWriter and make_reply of commit 74597fc, one
# recipient), so the format on disk cannot drift.
PREVIOUS = {
    (1024, 4, 0): (3072, "9fefc09276f21ce8"),
    (1024, 4, 1): (3584, "c6424f062d5aa715"),
    (1024, 4, 1000): (4096, "9c18861246915d8b"),
    (1024, 4, 64000): (81920, "6f6d5b7b953c0c17"),
    (1024, 4, 100000): (114688, "1621c047fc67e053"),
    (1024, 4, 3145728): (3670016, "62a066e142881ffb"),
    (1024, 1, 0): (4096, "26f8a7c17621bb7e"),
    (1024, 1, 1): (4096, "26d4ccb0e3c4771e"),
    (1024, 1, 64000): (131072, "95a11a88d1c20ee7"),
    (1024, 1, 3145728): (4194304, "1b0237a7a75ec4ca"),
    (65536, 4, 0): (65536, "dc9f4e8669ceaef6"),
    (65536, 4, 1000): (65536, "406e694d7fae79d4"),
}
PREVIOUS_REPLIES = {  # text -> (age file size, plaintext digest), likewise
    "": (4096, "861a9565a40c1bd5"),
    "hola": (4096, "ae9384d478b2aff3"),
    "é" * (1 << 19): (2097152, "1c2c28e40c029521"),
}


def _data(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def _digest(plain: bytes) -> str:
    return hashlib.sha256(plain).hexdigest()[:16]


@pytest.mark.parametrize(("minimum", "steps", "size"), list(PREVIOUS))
def test_the_writer_writes_what_the_previous_release_wrote(
    keypair: X25519Identity, minimum: int, steps: int, size: int
) -> None:
    out = io.BytesIO()
    writer = Writer(out, [keypair.recipient], NAME, TYPE, padding=Padding(minimum, steps))
    data = _data(size)
    for start in range(0, size, 70001):  # pieces that cross chunk boundaries
        writer.write(data[start : start + 70001])
    assert writer.size == size
    total = writer.finish()
    plain = decrypt_bytes(out.getvalue(), [keypair])
    assert (total, _digest(plain)) == PREVIOUS[minimum, steps, size]
    assert len(out.getvalue()) == total == bucket(total, minimum, steps)
    assert is_padded(total, Padding(minimum, steps))
    assert not is_padded(total + 1, Padding(minimum, steps))
    assert read_member(plain) == (container.safe_name(NAME), data, "application/pdf")


@pytest.mark.parametrize("text", list(PREVIOUS_REPLIES))
def test_replies_are_written_as_before(keypair: X25519Identity, text: str) -> None:
    reply = make_reply(text, [keypair.recipient])
    plain = decrypt_bytes(reply, [keypair])
    assert (len(reply), _digest(plain)) == PREVIOUS_REPLIES[text]


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1536, CHUNK_SIZE, 5 * CHUNK_SIZE + 3])
def test_the_padded_tail_fills_the_bucket_exactly(size: int, steps: int) -> None:
    header, head = 200, 1536
    tail = padded_tail(header, head, size, Padding(1024, steps))
    assert tail >= container.tail_size(size)
    plain = head + size + tail
    chunks = -(-plain // CHUNK_SIZE)
    total = header + plain + 16 * chunks
    assert total == bucket(total, 1024, steps)
    shortest = head + size + container.tail_size(size)
    assert bucket(header + shortest + 16 * -(-shortest // CHUNK_SIZE), 1024, steps) == total


# --- the one reader ----------------------------------------------------------------------------


def _cuts(data: bytes, cuts: list[int]) -> Iterator[memoryview]:
    """``data`` in chunks, as decryption hands them out."""
    view, start = memoryview(data), 0
    for end in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        if end > start:
            yield view[start:end]
            start = end


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _written(payload: bytes, cuts: list[int]) -> tuple[str, bytes] | None:
    """What the reader gives of a container, written as ``tipbox open`` writes it: (name,
    bytes), or ``None`` if it refuses it (with an ItemError); never a leftover."""
    with _folder() as folder:
        try:
            with reading(_cuts(payload, cuts)) as member:
                path = folder / container.safe_name(member.name)
                with atomic_write(path, 0o600, durable=False) as out:
                    member.copy(out)
                    member.authenticate()
        except ItemError:
            assert list(folder.iterdir()) == []
            return None
        assert [p.name for p in folder.iterdir()] == [path.name]
        return path.name, path.read_bytes()


containers = st.tuples(
    st.text(max_size=300), st.text(max_size=80), st.binary(max_size=3000), st.integers(0, 2000)
)


def _container(name: str, content_type: str, data: bytes, padding: int) -> bytes:
    head = container.head(name, content_type, len(data), 0)
    tail = b"".join(container.trailer(len(data), container.tail_size(len(data)) + padding))
    return head + data + tail


@pytest.mark.property
@given(containers, st.lists(st.integers(0, 6000), max_size=5))
def test_every_container_reads_back(case: tuple[str, str, bytes, int], cuts: list[int]) -> None:
    name, content_type, data, padding = case
    payload = _container(name, content_type, data, padding)
    assert _written(payload, cuts) == (container.safe_name(name), data)


@pytest.mark.property
@given(containers, st.data())
def test_a_damaged_container_is_refused_or_read_within_its_payload(
    case: tuple[str, str, bytes, int], data: st.DataObject
) -> None:
    sparse = data.draw(st.booleans())
    payload = bytearray(sparse_container("x", 5000) if sparse else _container(*case))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, min(len(payload) - 1, 2048)))  # the headers, mostly
        how = data.draw(st.sampled_from(["set", "cut", "add"]))
        if how == "set":
            payload[at] = data.draw(st.integers(0, 255))
        elif how == "cut":
            del payload[at : at + data.draw(st.integers(1, 600))]
        else:  # what pax records and sparse maps are made of
            payload[at:at] = data.draw(st.text("0123456789\n =x", min_size=1)).encode()
    written = _written(bytes(payload), data.draw(st.lists(st.integers(0, 6000), max_size=3)))
    assert written is None or len(written[1]) <= len(payload)


def test_the_reader_gives_name_size_type_and_bounded_bytes() -> None:
    payload = _container("a/b.txt", "Text/Plain; charset=x", b"hello world", 5000)
    ticks: list[int] = []
    with reading(_cuts(payload, [100, 700]), ticks.append) as member:
        assert (member.name, member.size, member.content_type) == ("b.txt", 11, "text/plain")
        assert member.read(5) == b"hello"
    assert ticks[-1] == len(payload)  # leaving the block read the padding too


def test_the_reader_refuses_a_payload_past_its_limit() -> None:
    payload = _container("a.txt", "text/plain", bytes(3000), 10_000)
    with pytest.raises(ItemError, match="too large"), reading(_cuts(payload, []), limit=8000):
        pass


REFUSED = {
    "sparse": sparse_container("bomb.bin", 64 << 20),
    "symlink": symlink_container("reply.txt"),
    "not_tar": b"not a tar file at all" * 100,
    "empty": b"",
    # What tarfile rejects with ValueError or OverflowError, not a TarError:
    "sparse_size_not_a_number": pax_container(b"28 GNU.sparse.realsize=12x4\n"),
    "record_length_huge": pax_container(b"99999999999999999999 path=x\n"),
    "sparse_map_not_a_number": pax_container(
        b"22 GNU.sparse.major=1\n22 GNU.sparse.minor=0\n", b"\xb3999\n" + bytes(506)
    ),
}


@pytest.mark.parametrize("payload", REFUSED.values(), ids=list(REFUSED))
def test_damaged_or_irregular_containers_are_the_items_error(payload: bytes) -> None:
    """One error class for whatever is wrong with a container, so a caller fails that item
    only (``tipbox open`` goes on with the others, the server shows no reply)."""
    with pytest.raises(ItemError) as caught, reading(_cuts(payload, [512])):
        pass
    assert isinstance(caught.value, TipboxError)
    assert caught.value.message in (
        "the item does not hold a regular file",
        "the item's container is damaged",
    )


def test_a_member_never_outgrows_its_payload() -> None:
    """However a tar reader expands a member, the bytes stop at what the payload held (the
    reader refuses sparse members first: this one is opened past that check, by hand)."""
    payload = sparse_container("bomb.bin", 1 << 20)
    plain = Plaintext(iter([memoryview(payload)]))
    with tarfile.open(fileobj=io.BufferedReader(plain), mode="r|") as archive:
        info = archive.next()
        assert info is not None
        data = archive.extractfile(info)
        assert data is not None
        bomb = Member(info.name, info.size, "", data, plain)
        with pytest.raises(ItemError, match="more than"):
            b"".join(bomb.blocks())
