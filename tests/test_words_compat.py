"""New word lists change nothing for what exists: old codenames log in, fingerprints stay the same.

``old_codenames.json`` was written with the code of the commit it names, before the lists
changed: codenames drawn from the old lists (EFF English, diceware Spanish), some typed with
other case, accents, spacing or fullwidth letters, with the normalised text and source id that
code derived. The derivation input must stay byte-identical, whatever is in today's lists.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import words
from app.crypto import KdfCost, derive_source_keys
from app.words import fingerprint, normalise_codename, wordlist
from tests.fixtures_app import csrf_token, login, new_source, submit

FIXTURE = json.loads((Path(__file__).parent / "old_codenames.json").read_text(encoding="utf-8"))
CASES: list[dict[str, str]] = FIXTURE["cases"]
OLD_KDF = KdfCost(opslimit=FIXTURE["opslimit"], memlimit=FIXTURE["memlimit"])
OLD_PEPPER = bytes.fromhex(FIXTURE["pepper_hex"])
# SHA-256 of the EFF list that was en.txt until issue 10; now fingerprint.txt, frozen.
EFF_SHA256 = "6d557f0693958fb5e650b68b5bee585eb82cf4da32965505c789e924743bc522"


def _case_id(case: dict[str, Any]) -> str:
    return case["normalised"][:30]


def test_fixture_holds_words_no_longer_listed() -> None:
    """The fixture is worth something only if its words are gone from today's lists."""
    today = set(wordlist("en")) | set(wordlist("es"))
    old_words = {w for case in CASES for w in case["normalised"].split()}
    assert {"impotent", "mammogram", "andrea", "t-shirt", "yo-yo"} <= old_words - today
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_old_codename_normalises_byte_for_byte(case: dict[str, str]) -> None:
    assert normalise_codename(case["typed"]).encode("utf-8") == case["normalised"].encode("utf-8")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_old_codename_derives_the_same_source_id(case: dict[str, str]) -> None:
    keys = derive_source_keys(normalise_codename(case["typed"]), OLD_PEPPER, OLD_KDF)
    assert keys.source_id == case["source_id"]


def _logout(client: FlaskClient, lang: str) -> None:
    client.post(f"/{lang}/logout", data={"csrf_token": csrf_token(client, f"/{lang}/lookup")})


@pytest.mark.parametrize(
    ("codename", "made_on", "login_on"),
    [
        pytest.param(CASES[1]["normalised"], "es", "en", id="old Spanish codename, English page"),
        pytest.param(CASES[0]["normalised"], "en", "es", id="old English codename, Spanish page"),
        pytest.param(None, "es", "en", id="new Spanish codename, English page"),
        pytest.param(None, "en", "es", id="new English codename, Spanish page"),
    ],
)
def test_codename_logs_in_on_either_language_page(
    app: Flask,
    client: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
    codename: str | None,
    made_on: str,
    login_on: str,
) -> None:
    if codename is not None:  # a source that got this codename from the old lists
        monkeypatch.setattr(words, "generate_codename", lambda _lang: codename)
    codename = new_source(client, made_on)
    monkeypatch.undo()
    assert submit(client, "hello", lang=made_on).status_code in (200, 303)
    _logout(client, made_on)
    response = login(client, codename.upper(), login_on)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/{login_on}/lookup"


# --- fingerprints ------------------------------------------------------------------------------


def test_fingerprint_list_is_the_frozen_eff_list() -> None:
    data = (Path(words.__file__).parent / "fingerprint.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == EFF_SHA256


@pytest.mark.parametrize(
    ("data", "count", "expected"),
    [
        # Computed with the code before issue 10 changed the lists.
        (b"", 6, "crop maggot prison traction giggling chaplain"),
        (
            b"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            6,
            "gumball shelving pulp upstroke denial robin",
        ),
        (
            b"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            19,
            "gumball shelving pulp upstroke denial robin exorcist wistful neuter delighted "
            "swear dial shady bottom impeach squander mom outclass backrest",
        ),
        (
            bytes(range(256)),
            19,
            "freeing rockband overshot footwork equal unseeing fable catcall shelter tweak "
            "catering nail napkin amazingly confider concierge reaffirm slick donor",
        ),
    ],
)
def test_fingerprint_words_are_unchanged(data: bytes, count: int, expected: str) -> None:
    assert " ".join(fingerprint(data, count)) == expected
