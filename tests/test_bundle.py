"""Bundles: round trips from a real Store, streaming, GNU tar, and a strict reader's refusals."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import secrets
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.bundle import (
    FORMAT,
    KINDS,
    READ_SIZE,
    BundleItem,
    BundleSource,
    Manifest,
    iter_bundle,
    parse_manifest,
    read_bundle,
    write_bundle,
)
from app.crypto import X25519Identity
from app.days import today
from app.db import migrated
from app.errors import BundleError
from app.server.store import Item, Source, Store
from tests.store_helpers import UTF8_ENV, decrypt_path, read_member, sparse_member

DAY = "2026-01-02"
TIMEOUT = 60


def _entry(source: Source, newest_first: Sequence[Item]) -> BundleSource:
    """A source's bundle entry from the store's records (``Store.items_of``: newest first), as
    the journalist app's inbox makes it in one query."""
    items = tuple(
        BundleItem(i.id, i.kind, i.day, i.size, tuple(i.recipients)) for i in reversed(newest_first)
    )
    return BundleSource(source.designation, source.reply_recipient, source.last_active_day, items)


@dataclass
class Newsroom:
    """A server's store in a temporary folder, its newsroom identity, and bundles made from it."""

    root: Path
    identity: X25519Identity = field(default_factory=X25519Identity.generate)
    replies: dict[str, X25519Identity] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = Store(migrated(self.root / "server"), [self.identity.recipient])
        self.identity_file = self.root / "newsroom-identity.txt"
        self.identity_file.write_text(f"{self.identity}\n")

    def submit(
        self,
        message: str | None = None,
        files: Sequence[tuple[str, bytes]] = (),
        source_id: str | None = None,
    ) -> str:
        """One submission (a message and files) by a new or a returning source; its id."""
        pending = [self.store.add_message(message)] if message is not None else []
        for name, data in files:
            writer = self.store.writer("file", name, "application/octet-stream")
            for start in range(0, len(data), 1 << 20):
                writer.write(data[start : start + (1 << 20)])
            pending.append(writer.finish())
        source_id = source_id or secrets.token_hex(32)
        reply = self.replies.setdefault(source_id, X25519Identity.generate())
        self.store.commit(source_id, str(reply.recipient), pending)
        return source_id

    def designation(self, source_id: str) -> str:
        source = self.store.source(source_id)
        assert source is not None
        return source.designation

    def sources(self) -> list[BundleSource]:
        return [_entry(s, self.store.items_of(s.id)) for s in self.store.list_sources()]

    def open_item(self, item: BundleItem) -> BinaryIO:
        return (self.store.items / item.id).open("rb")

    def bundle(self, path: Path) -> Path:
        """Write every source into a bundle at ``path``."""
        recipients = [str(r) for r in self.store.recipients]
        with path.open("wb") as handle:
            write_bundle(handle, self.sources(), self.open_item, recipients=recipients, day=DAY)
        return path


@pytest.fixture
def newsroom(tmp_path: Path) -> Newsroom:
    return Newsroom(tmp_path)


def _busy(newsroom: Newsroom) -> tuple[str, str]:
    """Two sources: one with two submissions and a reply, one with a file only."""
    first = newsroom.submit("first message", [("Überweisung März.pdf", os.urandom(70_000))])
    newsroom.submit("second message, ünïcödé ✓", source_id=first)
    newsroom.store.add_reply_text(first, "we read it, thank you")
    second = newsroom.submit(None, [("data.csv", b"a,b\n1,2\n")])
    return first, second


# --- round trips -----------------------------------------------------------------------------


def test_round_trip_from_a_store(tmp_path: Path, newsroom: Newsroom) -> None:
    first, _ = _busy(newsroom)
    manifest, read_item = read_bundle(newsroom.bundle(tmp_path / "b.tar"))
    assert manifest.day == DAY
    assert manifest.recipients == (str(newsroom.identity.recipient),)
    assert manifest.sources == tuple(newsroom.sources())
    by_id = {s.id: s for s in newsroom.store.list_sources()}
    for source in manifest.sources:
        stored = next(s for s in by_id.values() if s.designation == source.designation)
        assert (source.reply_recipient, source.last_active_day) == (
            stored.reply_recipient,
            stored.last_active_day,
        )
        assert [i.id for i in source.items] == [i.id for i in newsroom.store.items_of(stored.id)][
            ::-1
        ]
    for _, item in manifest.items():
        with read_item(item) as handle:
            assert handle.read() == (newsroom.store.items / item.id).read_bytes()
    source = next(s for s in manifest.sources if s.designation == newsroom.designation(first))
    assert [i.kind for i in source.items] == ["message", "file", "message", "reply"]  # as sent
    reply = next(i for i in source.items if i.kind == "reply")
    assert str(newsroom.replies[first].recipient) in reply.recipients


def test_manifest_holds_nothing_the_server_could_not_read(
    tmp_path: Path, newsroom: Newsroom
) -> None:
    _busy(newsroom)
    raw = newsroom.bundle(tmp_path / "b.tar").read_bytes()
    for secret in (b"first message", "Überweisung".encode(), b"data.csv", b"thank you"):
        assert secret not in raw
    manifest = json.loads(raw[512 : raw.index(b"\n}\n") + 3])
    assert set(manifest) == {"format", "day", "recipients", "sources"}
    assert manifest["format"] == FORMAT == "tipbox-bundle/1"
    for source in manifest["sources"]:
        assert set(source) == {"designation", "reply_recipient", "last_active_day", "items"}
        for item in source["items"]:
            assert set(item) == {"id", "kind", "day", "size", "recipients", "path"}
            assert item["day"] == today()
            assert item["path"] == f"items/{item['id']}.age"


def test_gnu_tar_reads_a_bundle(tmp_path: Path, newsroom: Newsroom) -> None:
    _busy(newsroom)
    bundle = newsroom.bundle(tmp_path / "b.tar")
    listing = subprocess.run(
        ["tar", "-tvf", bundle], capture_output=True, env=UTF8_ENV, timeout=TIMEOUT, check=True
    )
    assert listing.stderr == b""
    lines = listing.stdout.decode().splitlines()
    assert lines[0].split()[-1] == "manifest.json"
    assert all(" 1970-01-01 00:00 " in line for line in lines)  # no time finer than the day
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xf", bundle, "-C", out], env=UTF8_ENV, timeout=TIMEOUT, check=True)
    for item_file in (out / "items").iterdir():
        name, data, _ = read_member(decrypt_path(item_file, newsroom.identity))
        assert name in ("message.txt", "reply.txt", "Überweisung März.pdf", "data.csv")
        assert item_file.read_bytes() == (newsroom.store.items / item_file.stem).read_bytes()


class Pipe:
    """A destination that can only be written to, like a socket or a WSGI server."""

    def __init__(self) -> None:
        self.blocks: list[int] = []
        self.data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.blocks.append(len(data))
        self.data += data
        return len(data)


def test_streams_to_a_pipe_in_bounded_blocks(tmp_path: Path, newsroom: Newsroom) -> None:
    newsroom.submit("big one", [("big.bin", os.urandom(3 * READ_SIZE + 5))])
    pipe = Pipe()
    recipients = [str(newsroom.identity.recipient)]
    sources = newsroom.sources()
    total = write_bundle(pipe, sources, newsroom.open_item, recipients=recipients, day=DAY)
    assert total == len(pipe.data)
    assert max(pipe.blocks) <= READ_SIZE + 512  # never a whole item at once
    generated = b"".join(iter_bundle(sources, newsroom.open_item, recipients=recipients, day=DAY))
    assert generated == pipe.data
    (tmp_path / "b.tar").write_bytes(pipe.data)
    manifest, read_item = read_bundle(tmp_path / "b.tar")
    assert [i.size for _, i in manifest.items()] == [i.size for s in sources for i in s.items]


def test_an_empty_bundle_is_valid(tmp_path: Path, newsroom: Newsroom) -> None:
    manifest, _ = read_bundle(newsroom.bundle(tmp_path / "b.tar"))
    assert manifest.sources == ()


@pytest.mark.parametrize("change", [-1, 1])
def test_writer_refuses_an_item_of_another_size(newsroom: Newsroom, change: int) -> None:
    newsroom.submit("hello")

    def wrong(item: BundleItem) -> BinaryIO:
        data = (newsroom.store.items / item.id).read_bytes()
        return io.BytesIO(data[:change] if change < 0 else data + b"x")

    recipients = [str(newsroom.identity.recipient)]
    with pytest.raises(BundleError, match="size the store recorded"):
        write_bundle(Pipe(), newsroom.sources(), wrong, recipients=recipients)


@pytest.mark.parametrize(
    ("designation", "recipient"),
    [("Amber Falcon", None), ("amber/../falcon", None), ("amber falcon", "age1nope")],
)
def test_writer_checks_the_manifest_first(
    newsroom: Newsroom, designation: str, recipient: str | None
) -> None:
    newsroom.submit("hello")
    source = newsroom.sources()[0]
    bad = BundleSource(designation, source.reply_recipient, source.last_active_day, source.items)
    pipe = Pipe()
    with pytest.raises(BundleError, match="invalid manifest"):
        write_bundle(pipe, [bad], newsroom.open_item, recipients=[recipient or bad.reply_recipient])
    assert pipe.data == b""


# --- the manifest's rules ----------------------------------------------------------------------


def _table(cases: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``(id, *values)`` rows as pytest parameters."""
    return [pytest.param(*values, id=name) for name, *values in cases]


def _valid() -> dict[str, Any]:
    newsroom, reply = (str(X25519Identity.generate().recipient) for _ in range(2))
    item = {"id": "ab" * 16, "kind": "message", "day": DAY, "size": 1024}
    item |= {"recipients": [newsroom], "path": f"items/{'ab' * 16}.age"}
    source = {"designation": "amber falcon", "reply_recipient": reply, "last_active_day": DAY}
    return {
        "format": FORMAT,
        "day": DAY,
        "recipients": [newsroom],
        "sources": [source | {"items": [item]}],
    }


def _item(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["sources"][0]["items"][0].update(changes)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.update({key: value})


def _source(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["sources"][0].update({key: value})


def _twice(part: str) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        if part == "item":
            m["sources"][0]["items"].append(copy.deepcopy(m["sources"][0]["items"][0]))
        else:
            m["sources"].append(copy.deepcopy(m["sources"][0]) | {"items": []})

    return change


MANIFEST_CASES = [
    ("newer_format", _set("format", "tipbox-bundle/2"), "unsupported bundle format"),
    ("no_format", lambda m: m.pop("format"), "unsupported bundle format"),
    ("extra_field", _set("codename", "x"), "exactly"),
    ("missing_field", lambda m: m.pop("day"), "exactly"),
    ("day_with_time", _set("day", "2026-01-02T10:11:12"), "YYYY-MM-DD"),
    ("day_impossible", _set("day", "2026-02-30"), "YYYY-MM-DD"),
    ("no_recipients", _set("recipients", []), "one or more"),
    ("bad_recipient", _set("recipients", ["age1nope"]), "age recipient"),
    ("uppercase_recipient", lambda m: m.update(recipients=[m["recipients"][0].upper()]), "age"),
    ("sources_not_list", _set("sources", {}), "must be a list"),
    ("designation_upper", _source("designation", "Amber Falcon"), "lowercase words"),
    ("designation_path", _source("designation", "../../etc"), "lowercase words"),
    ("designation_slash", _source("designation", "amber/falcon"), "lowercase words"),
    ("designation_double_space", _source("designation", "amber  falcon"), "lowercase words"),
    ("designation_empty", _source("designation", ""), "lowercase words"),
    ("designation_number", _source("designation", 7), "lowercase words"),
    ("reply_key", _source("reply_recipient", "AGE-SECRET-KEY-1"), "age recipient"),
    ("id_short", _item(id="abcd", path="items/abcd.age"), "hexadecimal"),
    ("id_upper", _item(id="AB" * 16, path=f"items/{'AB' * 16}.age"), "hexadecimal"),
    ("id_traversal", _item(id="../" * 10 + "ab", path="items/../x.age"), "hexadecimal"),
    ("kind", _item(kind="codename"), "one of message, file, reply"),
    ("size_negative", _item(size=-1), "positive whole number"),
    ("size_bool", _item(size=True), "positive whole number"),
    ("size_float", _item(size=1024.0), "positive whole number"),
    ("size_text", _item(size="1024"), "positive whole number"),
    ("path_outside", _item(path="../" + "ab" * 16 + ".age"), "points outside"),
    ("path_absolute", _item(path="/etc/passwd"), "points outside"),
    ("path_dotdot", _item(path="items/../../" + "ab" * 16 + ".age"), "points outside"),
    ("path_other", _item(path="items/" + "cd" * 16 + ".age"), "must be 'items/"),
    ("path_missing", lambda m: m["sources"][0]["items"][0].pop("path"), "exactly"),
    ("item_recipients", _item(recipients=[]), "one or more"),
    ("item_twice", _twice("item"), "appears twice"),
    ("designation_twice", _twice("source"), "appears twice"),
]


@pytest.mark.parametrize(("change", "needle"), _table(MANIFEST_CASES))
def test_manifest_rules(change: Callable[[dict[str, Any]], None], needle: str) -> None:
    document = _valid()
    parse_manifest(json.dumps(document).encode())  # the unchanged one is valid
    change(document)
    with pytest.raises(BundleError, match=needle):
        parse_manifest(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[]", "exactly"),
        (b'{"format": "tipbox-bundle/1", "format": "tipbox-bundle/1"}', "appears twice"),
        (b'{"format": "tipbox-bundle/1", "day": NaN}', "not a number"),
        (b'{"format": "tipbox-bundle/1", "size": ' + b"9" * 5000 + b"}", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (
            b'{"format": "tipbox-bundle/1", "day": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
            "nested",
        ),
    ],
    ids=["empty", "not_utf8", "list", "duplicate_key", "nan", "huge_number", "deep", "deep_object"],
)
def test_manifest_must_be_strict_json(data: bytes, needle: str) -> None:
    with pytest.raises(BundleError, match=needle):
        parse_manifest(data)


def test_manifest_round_trips_exactly() -> None:
    data = json.dumps(_valid()).encode()
    manifest = parse_manifest(data)
    assert isinstance(manifest, Manifest)
    assert parse_manifest(manifest.to_json()) == manifest
    assert json.loads(manifest.to_json()) == json.loads(data)


# --- the tar file's rules ----------------------------------------------------------------------


def _member(
    tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _hostile(tmp_path: Path, build: Callable[[tarfile.TarFile, bytes, bytes], None]) -> Path:
    """A bundle written by Python's tarfile: a valid manifest, then whatever ``build`` adds."""
    document = _valid()
    manifest, item = json.dumps(document).encode(), os.urandom(1024)
    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        build(tar, manifest, item)
    return path


ITEM = f"items/{'ab' * 16}.age"


def _normal(tar: tarfile.TarFile, manifest: bytes, item: bytes) -> None:
    _member(tar, "manifest.json", manifest)
    _member(tar, ITEM, item)


def _then(*extra: tuple[str, bytes]) -> Callable[[tarfile.TarFile, bytes, bytes], None]:
    def build(tar: tarfile.TarFile, manifest: bytes, item: bytes) -> None:
        _normal(tar, manifest, item)
        for name, kind in extra:
            _member(tar, name, b"x", kind)

    return build


def _sparse(tar: tarfile.TarFile, item: bytes) -> None:
    """The item as a sparse member of the item's size (a few bytes, and holes)."""
    raw = sparse_member(ITEM, len(item), item[-10:])
    assert tar.fileobj is not None
    tar.fileobj.write(raw)
    tar.offset += len(raw)


TAR_CASES = [
    ("symlink", _then(("items/link.age", tarfile.SYMTYPE)), "symbolic link"),
    ("hardlink", _then(("items/hard.age", tarfile.LNKTYPE)), "hard link"),
    ("device", _then(("items/dev.age", tarfile.CHRTYPE)), "special file"),
    ("fifo", _then(("items/fifo.age", tarfile.FIFOTYPE)), "special file"),
    ("folder", _then(("items/", tarfile.DIRTYPE)), "folder"),
    ("absolute", _then(("/etc/cron.d/x", tarfile.REGTYPE)), "points outside"),
    ("dotdot", _then(("items/../../x.age", tarfile.REGTYPE)), "points outside"),
    ("duplicate", _then((ITEM, tarfile.REGTYPE)), "twice"),
    ("unlisted", _then(("items/" + "cd" * 16 + ".age", tarfile.REGTYPE)), "does not list"),
    (
        "symlink_item",
        lambda t, m, i: (_member(t, "manifest.json", m), _member(t, ITEM, b"", tarfile.SYMTYPE)),
        "symbolic link",
    ),
    ("missing_item", lambda t, m, i: _member(t, "manifest.json", m), "item abab"),
    (
        "manifest_not_first",
        lambda t, m, i: (_member(t, ITEM, i), _member(t, "manifest.json", m)),
        "start with manifest",
    ),
    ("no_manifest", lambda t, m, i: _member(t, ITEM, i), "start with manifest"),
    ("sparse_item", lambda t, m, i: (_member(t, "manifest.json", m), _sparse(t, i)), "sparse"),
    (
        "item_size",
        lambda t, m, i: (_member(t, "manifest.json", m), _member(t, ITEM, i + b"x")),
        "size the manifest gives",
    ),
]


@pytest.mark.parametrize(
    ("build", "needle"), [c[1:] for c in TAR_CASES], ids=[c[0] for c in TAR_CASES]
)
def test_tar_rules(
    tmp_path: Path, build: Callable[[tarfile.TarFile, bytes, bytes], None], needle: str
) -> None:
    (tmp_path / "ok").mkdir()
    read_bundle(_hostile(tmp_path / "ok", _normal))  # the same bundle without the change is valid
    with pytest.raises(BundleError, match=needle):
        read_bundle(_hostile(tmp_path, build))


def _cut(data: bytes) -> dict[str, bytes]:
    item_start = data.index(b"age-encryption.org/v1")
    return {
        "empty": b"",
        "in_first_header": data[:100],
        "in_manifest": data[:600],
        "in_item_header": data[: item_start - 300],
        "in_item": data[: item_start + 2000],
        "no_end_marker": data[:-1024],
        "half_end_marker": data[:-512],
        "last_byte": data[:-1],
    }


@pytest.mark.parametrize(
    "where",
    [
        "empty",
        "in_first_header",
        "in_manifest",
        "in_item_header",
        "in_item",
        "no_end_marker",
        "half_end_marker",
        "last_byte",
    ],
)
def test_truncated_bundles_are_refused(tmp_path: Path, newsroom: Newsroom, where: str) -> None:
    newsroom.submit("hello", [("a.bin", os.urandom(5000))])
    data = newsroom.bundle(tmp_path / "b.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(_cut(data)[where])
    with pytest.raises(BundleError, match="truncated|not a bundle|incomplete"):
        read_bundle(tmp_path / "cut.tar")


@pytest.mark.parametrize(
    "tail", [b"x", b"\0" * 1023 + b"x", os.urandom(4096)], ids=["byte", "after_zeros", "junk"]
)
def test_data_after_the_end_is_refused(tmp_path: Path, newsroom: Newsroom, tail: bytes) -> None:
    newsroom.submit("hello")
    bundle = newsroom.bundle(tmp_path / "b.tar")
    bundle.write_bytes(bundle.read_bytes() + tail)
    with pytest.raises(BundleError, match="unexpected data"):
        read_bundle(bundle)


def test_not_a_tar_file(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(os.urandom(10_000))
    with pytest.raises(BundleError, match="not a bundle"):
        read_bundle(tmp_path / "junk")


# --- properties (hypothesis; `make fuzz` runs many more) -----------------------------------------

KEYS = [str(X25519Identity.generate().recipient) for _ in range(3)]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
days = st.dates(min_value=date(1000, 1, 1)).map(date.isoformat)
recipients = st.lists(st.sampled_from(KEYS), min_size=1, unique=True).map(tuple)
designations = st.lists(st.text("abcdefghijklmnopqrstuvwxyzñé", min_size=1), min_size=1).map(
    " ".join
)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    """Any manifest the format allows (small): distinct designations and item ids."""
    folders = draw(st.lists(designations.filter(lambda d: len(d) <= 100), unique=True, max_size=3))
    ids = iter(
        draw(
            st.lists(
                st.text("0123456789abcdef", min_size=32, max_size=32),
                unique=True,
                min_size=12,
                max_size=12,
            )
        )
    )
    sources = []
    for designation in folders:
        items = [
            BundleItem(
                next(ids),
                draw(st.sampled_from(KINDS)),
                draw(days),
                draw(st.integers(1, (1 << 50) - 1)),
                draw(recipients),
            )
            for _ in range(draw(st.integers(0, 4)))
        ]
        sources.append(
            BundleSource(designation, draw(st.sampled_from(KEYS)), draw(days), tuple(items))
        )
    return Manifest(draw(days), draw(recipients), tuple(sources))


@pytest.mark.property
@given(manifests())
def test_every_valid_manifest_reads_back(manifest: Manifest) -> None:
    assert parse_manifest(manifest.to_json()) == manifest


@pytest.mark.property
@given(json_values, st.binary(max_size=300))
def test_anything_is_a_manifest_or_a_bundle_error(value: object, data: bytes) -> None:
    """Any JSON, as the whole manifest or as its sources, and any bytes: BundleError at worst."""
    documents = [json.dumps(value).encode(), data, json.dumps({**_valid(), "sources": value})]
    for document in documents:
        with contextlib.suppress(BundleError):
            parse_manifest(document if isinstance(document, bytes) else document.encode())


def _small_bundle() -> bytes:
    """A valid bundle of two sources and three small items (random bytes stand for age files)."""
    blobs = {secrets.token_hex(16): os.urandom(n) for n in (1, 700, 1500)}
    items = [BundleItem(i, "file", DAY, len(b), (KEYS[0],)) for i, b in blobs.items()]
    sources = [
        BundleSource("amber falcon", KEYS[1], DAY, tuple(items[:1])),
        BundleSource("brisk heron", KEYS[2], DAY, tuple(items[1:])),
    ]
    out = io.BytesIO()
    write_bundle(out, sources, lambda i: io.BytesIO(blobs[i.id]), recipients=[KEYS[0]], day=DAY)
    return out.getvalue()


BUNDLE = _small_bundle()


@pytest.mark.property
@given(st.data())
def test_a_damaged_bundle_is_refused_or_read_whole(data: st.DataObject) -> None:
    """Bytes changed, cut or added anywhere: a BundleError, or items of their stated sizes."""
    bundle = bytearray(BUNDLE)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(bundle) - 1))
        how = data.draw(st.sampled_from(["set", "cut", "add"]))
        if how == "set":
            bundle[at] = data.draw(st.integers(0, 255))
        elif how == "cut":
            del bundle[at : at + data.draw(st.integers(1, 1500))]
        else:
            bundle[at:at] = data.draw(st.binary(min_size=1, max_size=600))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "b.tar"
        path.write_bytes(bytes(bundle))
        try:
            manifest, read_item = read_bundle(path)
        except BundleError:
            return
        for _, item in manifest.items():
            with read_item(item) as handle:
                assert len(handle.read()) == item.size
