#!/usr/bin/env bash
# `make restore`: put a `make backup` file back (after `make deploy` on a fresh server).
#
#   BACKUP=FILE     the .tar.age file (or a tar already decrypted on the air-gapped machine)
#   IDENTITY=FILE   the newsroom identity, for a .tar.age file (asks its passphrase)
#   FORCE=1         replace data already on this server
#
# The stream is decrypted and unpacked into a staging folder next to the data; nothing is
# replaced unless the whole file decrypted and authenticated. Then ownership is fixed, the
# onion services are published again (same addresses) and the apps restarted.
source "$(dirname "$0")/lib.sh"
need_root restore
[[ -x $VENV/bin/tipbox ]] || die "Tipbox is not installed here: run 'sudo make deploy' first"
BACKUP="${BACKUP:-}"
[[ -n $BACKUP && -f $BACKUP ]] || die "BACKUP=FILE must name a backup file"
if [[ -e $DATA/store.sqlite3 && ${FORCE:-} != 1 ]]; then
    die "$DATA already holds a database; FORCE=1 replaces it"
fi

STAGE="$ROOT/var/lib/.tipbox-restore"
rm -rf "$STAGE"
install -d -m 0700 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT
step "unpacking $BACKUP"
if [[ "$(head -c 21 "$BACKUP")" == "age-encryption.org/v1" ]]; then
    [[ -n ${IDENTITY:-} && -f $IDENTITY ]] || die "IDENTITY=FILE must name the newsroom identity"
    tipbox decrypt -i "$IDENTITY" "$BACKUP" | tar -C "$STAGE" -xf - "${BACKUP_PATHS[@]}"
else
    tar -C "$STAGE" -xf "$BACKUP" "${BACKUP_PATHS[@]}"
fi

step "stopping the apps"
systemctl stop "${UNITS[@]}" || true
step "putting the files in place"
for path in "${BACKUP_PATHS[@]}"; do
    target="$ROOT/$path"
    rm -rf "$target.old"
    if [[ -e $target ]]; then mv "$target" "$target.old"; fi
    install -d "$(dirname "$target")"
    mv "$STAGE/$path" "$target"
    rm -rf "$target.old"
done
APP_UID="$(uid_of "$APP_USER")" APP_GID="$(gid_of "$APP_USER")"
[[ -n $APP_UID ]] || die "the user $APP_USER must exist: run 'make deploy'"
chown -R "$APP_UID:$APP_GID" "$DATA"
chmod 0700 "$DATA"
chown -R "0:$APP_GID" "$ETC"
chmod 0750 "$ETC"
# The onion keys belong to whoever owns tor's data directory (debian-tor); `tipbox onion
# publish` below checks and fixes the same before it lets tor reload.
chown -R "$(stat -c %u:%g "$TOR_DIR")" "$TOR_DIR"/tipbox-source "$TOR_DIR"/tipbox-journalist

step "onion services and apps"
tipbox onion publish --wait 60
systemctl start "${SOCKETS[@]}"
printf 'restored from %s\n' "$BACKUP"
