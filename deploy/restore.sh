#!/usr/bin/env bash
# `make restore-key` and `make restore`: put a `make backup` file back (after `make deploy` on
# a fresh server) without the newsroom's secret key ever coming to a server.
#
#   1. `sudo make restore-key` (this script with the argument `key`) makes a one-time restore
#      key on this server and prints its recipient and word fingerprint.
#   2. On the air-gapped machine: tipbox backup reencrypt -i NEWSROOM-IDENTITY -r RECIPIENT
#      -o FOR-SERVER.age BACKUP.tar.age (every backup ever made works: they are all age files
#      to the newsroom's recipients).
#   3. `sudo make restore BACKUP=FOR-SERVER.age`, which deletes the restore key when done.
#
#   BACKUP=FILE     the re-encrypted .age file (or a tar already decrypted elsewhere)
#   FORCE=1         replace data already on this server
#
# The stream is decrypted and unpacked into a staging folder next to the data; nothing is
# replaced unless the whole file decrypted and authenticated. Then ownership is fixed, the
# onion services are published again (same addresses) and the apps restarted.
source "$(dirname "$0")/lib.sh"
need_root restore
[[ -x $VENV/bin/tipbox ]] || die "Tipbox is not installed here: run 'sudo make deploy' first"
if [[ ${1:-} == key ]]; then
    install -d -m 0700 "$(dirname "$RESTORE_KEY")"
    tipbox backup restore-key --identity "$RESTORE_KEY"
    cat <<'EOF'

On the air-gapped machine, re-encrypt the backup to this recipient (compare the fingerprint):
    tipbox backup reencrypt -i NEWSROOM-IDENTITY -r RECIPIENT -o for-server.age BACKUP.tar.age
Bring for-server.age here, then:  sudo make restore BACKUP=for-server.age
EOF
    exit 0
fi
if [[ -n ${IDENTITY:-} ]]; then
    die "IDENTITY= is no longer read: the newsroom identity stays on the air-gapped machine; run 'sudo make restore-key' and follow its steps"
fi
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
    [[ -f $RESTORE_KEY ]] || die "no restore key on this server: run 'sudo make restore-key' first, and re-encrypt the backup to it"
    if ! tipbox decrypt -i "$RESTORE_KEY" "$BACKUP" | tar -C "$STAGE" -xf - "${BACKUP_PATHS[@]}"; then
        die "$BACKUP did not open with this server's restore key: re-encrypt it to the recipient 'sudo make restore-key' prints (tipbox backup reencrypt, on the air-gapped machine)"
    fi
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
rm -rf "$(dirname "$RESTORE_KEY")" # one-time: a copy of the re-encrypted file is useless now
printf 'restored from %s\n' "$BACKUP"
