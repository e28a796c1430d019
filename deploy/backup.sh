#!/usr/bin/env bash
# `make backup`: one age file, encrypted to the newsroom's recipients (keys/*.pub), holding the
# database and items, the onion keys and client keys, and the configuration.
#
#   OUT=FILE   where to write it (default /var/backups/tipbox/tipbox-DATE.tar.age)
#
# Nothing is written in plaintext: Python streams a tar (with a consistent snapshot of the
# SQLite database, taken in memory) into `tipbox encrypt`, which writes OUT. Only the
# air-gapped identity can open it; to restore, it is re-encrypted there to the new server's
# one-time key (see deploy/restore.sh), so the identity never comes to a server.
source "$(dirname "$0")/lib.sh"
need_root backup
[[ -x $VENV/bin/tipbox ]] || die "Tipbox is not installed here: run 'sudo make deploy'"
OUT="${OUT:-$ROOT/var/backups/tipbox/tipbox-$(date -u +%Y%m%dT%H%M%SZ).tar.age}"
recipients=()
for pub in "$KEYS_DIR"/*.pub; do
    [[ -e $pub ]] && recipients+=(-R "$pub")
done
((${#recipients[@]})) || die "no newsroom recipient in $KEYS_DIR"
for path in "${BACKUP_PATHS[@]}"; do
    [[ -d $ROOT/$path ]] || die "$ROOT/$path is missing: nothing consistent to back up"
done
install -d -m 0700 "$(dirname "$OUT")"

"$VENV/bin/python" - "${ROOT:-/}" "${BACKUP_PATHS[@]}" <<'PY' | tipbox encrypt "${recipients[@]}" -o "$OUT"
import io, os, sqlite3, sys, tarfile
root, paths = sys.argv[1], sys.argv[2:]
db_name = "var/lib/tipbox/store.sqlite3"
skipped = (db_name, db_name + "-wal", db_name + "-shm", db_name + "-journal")

def keep(info):
    base = os.path.basename(info.name)
    return None if info.name in skipped or base.startswith(".incoming-") else info

with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
    for path in paths:
        tar.add(os.path.join(root, path), arcname=path, filter=keep)
    db_path = os.path.join(root, db_name)
    if os.path.exists(db_path):
        source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        snapshot = sqlite3.connect(":memory:")
        source.backup(snapshot)  # consistent even while the apps write
        data = snapshot.serialize()
        source.close()
        snapshot.close()
        info = tar.gettarinfo(db_path, arcname=db_name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
PY
chmod 0600 "$OUT"
printf 'backup written: %s (%s bytes), readable only with the newsroom identity\n' "$OUT" "$(stat -c %s "$OUT")"
printf 'copy it off this server; to restore it, see "make restore" in the README (the newsroom identity stays on the air-gapped machine)\n'
