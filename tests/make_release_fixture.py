"""Write a "previous release" data folder with the current code, for tests/test_upgrade.py.

Run it on the release being frozen (``python -m tests.make_release_fixture OUT``; OUT is
``tests/releases/<commit>``): it makes a throwaway newsroom identity, then drives the real code
paths (the source app's pages, ``tipbox user add``, the journalist app's login, reply and token
pages) to leave sources with messages, files and replies, an admin, a journalist with password
and TOTP, and an API token, and writes what a later test needs to check them in
``fixture.json``. Every secret it writes is for tests only. Cheap KDF settings keep it fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pyotp

from app import cli
from app.config import load_config
from app.journalist import create_app as create_journalist_app
from app.journalist.config import load as load_journalist_config
from app.source import create_app

ENV = {
    "TIPBOX_ENV": "development",
    "TIPBOX_NEWSROOM_NAME": "Fixture Newsroom",
    "TIPBOX_KDF_OPSLIMIT": "1",
    "TIPBOX_KDF_MEMLIMIT": str(8 * 1024 * 1024),
    "TIPBOX_PASSWORD_TIME_COST": "1",
    "TIPBOX_PASSWORD_MEMORY_KIB": "8",
    "TIPBOX_PASSWORD_PARALLELISM": "1",
}
SOURCES = [
    {
        "message": "First source: the documents are in the blue folder.",
        "files": [("memo.txt", b"internal memo, page 1\n"), ("data.bin", bytes(range(256)) * 3)],
        "reply": "Thank you. Can you tell us who else saw the memo?",
    },
    {
        "message": "Segunda fuente: mensaje con acentos, ñ y emoji \N{ENVELOPE}.",
        "files": [],
        "reply": "Gracias. ¿Puede enviarnos el original?",
    },
]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(client: Any, url: str) -> str:
    match = _CSRF.search(client.get(url).get_data(as_text=True))
    if match is None:
        raise RuntimeError(f"no CSRF token on {url}")
    return match.group(1)


def _tipbox(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if cli.main(list(args)) != 0:
            raise RuntimeError(f"tipbox {' '.join(args)} failed")
    return out.getvalue()


def _add_user(name: str, admin: bool) -> dict[str, str]:
    printed = _tipbox("user", "add", *(["--admin"] if admin else []), name)
    fields = dict(re.findall(r"^(password|TOTP secret) ?[^:]*: (.+)$", printed, re.M))
    return {"username": name, "password": fields["password"], "totp": fields["TOTP secret"]}


def _sources(env: dict[str, str]) -> list[dict[str, Any]]:
    client = create_app(load_config(env)).test_client()
    made = []
    for number, source in enumerate(SOURCES):
        if number:
            client.post("/en/logout", data={"csrf_token": _csrf(client, "/en/submit")})
        page = client.get("/en/generate").get_data(as_text=True)
        codename = re.search(r'id="codename"[^>]*>\s*([^<]+?)\s*<', page).group(1)  # type: ignore[union-attr]
        data: dict[str, Any] = {
            "csrf_token": _csrf(client, "/en/submit"),
            "message": source["message"],
            "website": "",
            "files": [(io.BytesIO(content), name) for name, content in source["files"]],
        }
        response = client.post("/en/submit", data=data, content_type="multipart/form-data")
        if response.status_code not in (200, 303):  # 303 since post/redirect/get (9ea2f0a)
            raise RuntimeError(f"submission failed: {response.status_code}")
        made.append({"codename": codename, **source})
    return made


def _journalist(env: dict[str, str], user: dict[str, str], sources: list[dict[str, Any]]) -> str:
    app = create_journalist_app(load_journalist_config(env))
    client = app.test_client()
    code = pyotp.TOTP(user["totp"]).now()
    form = {"username": user["username"], "password": user["password"], "code": code}
    response = client.post("/login", data={"csrf_token": _csrf(client, "/login"), **form})
    if response.status_code != 303:
        raise RuntimeError("the journalist could not log in")
    listing = client.get("/").get_data(as_text=True)
    ids = list(dict.fromkeys(re.findall(r'/sources/([0-9a-f]{64})"', listing)))
    designations = _designations(env)
    for source_id in ids:
        text = next(s["reply"] for s in sources if s["designation"] == designations[source_id])
        url = f"/sources/{source_id}"
        token = _csrf(client, url)
        client.post(f"{url}/reply-text", data={"csrf_token": token, "text": text})
    token_page = client.post(
        "/account/tokens", data={"csrf_token": _csrf(client, "/account"), "name": "fixture"}
    ).get_data(as_text=True)
    return re.search(r'id="token">([^<]+)<', token_page).group(1)  # type: ignore[union-attr]


def _designations(env: dict[str, str]) -> dict[str, str]:
    with sqlite3.connect(Path(env["TIPBOX_DATA_DIR"]) / "store.sqlite3") as db:
        return dict(db.execute("SELECT id, designation FROM sources").fetchall())


def _failed_login(env: dict[str, str]) -> None:
    """A failed login typed with a username that does not exist (it lands in login_attempts)."""
    client = create_journalist_app(load_journalist_config(env)).test_client()
    form = {"username": "Typo.Name", "password": "not the password at all", "code": "000000"}
    client.post("/login", data={"csrf_token": _csrf(client, "/login"), **form})


def _checkpoint(data: Path) -> None:
    db = sqlite3.connect(data / "store.sqlite3")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    db.close()


def make(out: Path) -> None:
    """Write the fixture into ``out`` (which must not exist yet)."""
    out.mkdir(parents=True)
    data, keys = out / "data", out / "keys"
    keys.mkdir()
    _tipbox("keygen", "--no-passphrase", "--identity", str(out / "identity.txt"),
            "--recipient", str(keys / "newsroom.pub"))  # fmt: skip
    env = {**ENV, "TIPBOX_DATA_DIR": str(data), "TIPBOX_KEYS_DIR": str(keys)}
    os.environ.update(env)  # for `tipbox user add`
    sources = _sources(env)
    designations = {v: k for k, v in _designations(env).items()}
    for source in sources:  # the store names sources in insertion order of their first item
        source["designation"] = next(
            name for name in designations if _holds(env, designations[name], source)
        )
    admin, journalist = _add_user("admin", True), _add_user("alice", False)
    token = _journalist(env, journalist, sources)
    _failed_login(env)
    _checkpoint(data)
    manifest = {
        "commit": out.name,
        "env": ENV,
        "admin": admin,
        "journalist": journalist,
        "api_token": token,
        "sources": [
            {
                "codename": s["codename"],
                "designation": s["designation"],
                "message": s["message"],
                "files": {n: hashlib.sha256(c).hexdigest() for n, c in s["files"]},
                "reply": s["reply"],
            }
            for s in sources
        ],
        "failed_login_username": "typo.name",
    }
    (out / "fixture.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def _holds(env: dict[str, str], source_id: str, source: dict[str, Any]) -> bool:
    """Whether the source with ``source_id`` sent ``source``'s number of items."""
    with sqlite3.connect(Path(env["TIPBOX_DATA_DIR"]) / "store.sqlite3") as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM items WHERE source_id = ?", (source_id,)
        ).fetchone()
    return int(count) == 1 + len(source["files"])


if __name__ == "__main__":
    make(Path(sys.argv[1]))
