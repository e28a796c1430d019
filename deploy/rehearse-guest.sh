#!/usr/bin/env bash
# The guest half of `make rehearse` (deploy/rehearse.sh): runs as root inside the throwaway
# Debian 12 VM, started by its unit tipbox-rehearsal.service, from the VM's second disk:
#
#   PAYLOAD/repo     the repository (copied to /root/tipbox, as an admin would clone it)
#   PAYLOAD/previous the previous release's files (git archive of PREVIOUS, rehearse.sh), for
#                    the upgrade step
#   PAYLOAD/wheels   every Python package (`make deploy WHEELS=…`: the VM has no network)
#   PAYLOAD/keys/newsroom.pub, PAYLOAD/identity.age   a throwaway newsroom key pair
#   PAYLOAD/steps    if present: the names of the only steps to run (STEPS=… make rehearse)
#   PAYLOAD/results  written here: rehearsal.log (every step, its checks, pass/fail, seconds),
#                    one NN-step.txt per step with its whole output, the journal
#
# Each step is this script again (`--step NAME`) under `timeout`, so a hung step is killed
# with everything it started. It deploys, uninstalls and purges Tipbox: it refuses to run
# anywhere but in the rehearsal VM.
set -euo pipefail
umask 022

PAYLOAD="${PAYLOAD:-${1:?usage: rehearse-guest.sh PAYLOAD}}"
export PAYLOAD
RESULTS="$PAYLOAD/results"
LOG="$RESULTS/rehearsal.log"
REPO=/root/tipbox
PREVIOUS_REPO=/root/tipbox-previous
KEYS=/root/rehearsal-keys
IDENTITY=/root/rehearsal-identity.age
OLD_KEYS=/root/rehearsal-keys-classic # the upgrade step's classical key, what the previous release reads
OLD_IDENTITY=/root/rehearsal-identity-classic.age
WHEELS="$PAYLOAD/wheels"
BACKUP=/root/rehearsal-backup.tar.age
ADDRESSES="$RESULTS/addresses"
CODENAME_FILE=/root/rehearsal-codename # the upgrade step's source, for the later steps
MESSAGE_FILE=/root/rehearsal-message
NEW_KEYS=/root/rehearsal-keys-2 # the rotation's new recipient
NEW_IDENTITY=/root/rehearsal-identity-2.age
GNUPG=/root/rehearsal-gnupg # alice's OpenPGP key pair (the digest)
# The headers app/server/headers.py puts on every page.
HEADERS=(Content-Security-Policy Referrer-Policy X-Content-Type-Options X-Frame-Options
    Cross-Origin-Opener-Policy Cross-Origin-Embedder-Policy Cross-Origin-Resource-Policy
    Permissions-Policy Cache-Control)
export LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# --- Helpers for the steps ------------------------------------------------------------------

fail() {
    printf 'CHECK FAILED: %s\n' "$*"
    exit 1
}
ok() { printf 'ok: %s\n' "$*"; }
# Run a command, showing it; its failure fails the step.
run() {
    printf '$ %s\n' "$*"
    "$@"
}
make_target() { run timeout 600 make -C "$REPO" --no-print-directory "$@"; }

# The stored addresses, one "name http://….onion/" line each (`tipbox onion addresses`).
addresses() { /usr/local/bin/tipbox onion addresses; }
host_of() { # NAME: its onion host name, from the stored addresses
    addresses | awk -v n="$1" '$1 == n { sub("^http://", "", $2); sub("/$", "", $2); print $2 }'
}
same_addresses() { # what the first deploy printed, and the same now
    local now
    now="$(addresses)"
    printf '%s\n' "$now"
    [[ $now == "$(cat "$ADDRESSES")" ]] || fail "the onion addresses changed (first: $(tr '\n' ' ' <"$ADDRESSES"))"
    ok "same onion addresses as after the first deploy"
}

# GET / on an app's unix socket (what tor forwards to) with the onion address as Host.
fetch() { # NAME → prints the HTTP status; headers and body in RESULTS/NAME-{headers.txt,body.html}
    local name="$1" host
    host="$(host_of "$name")"
    [[ -n $host ]] || fail "no stored $name address"
    # 180 s: the first request after a deploy starts the app through its socket, and Gunicorn's
    # start under emulation (no KVM) on a busy host took 69 s once.
    curl --silent --show-error --max-time 180 --unix-socket "/run/tipbox/$name.sock" \
        -H "Host: $host" -D "$RESULTS/$name-headers.txt" -o "$RESULTS/$name-body.html" \
        -w '%{http_code}' "http://$host/"
}
pages_answer() {
    local code
    code="$(fetch source)"
    [[ $code == 200 ]] || fail "source page: HTTP $code, expected 200"
    ok "source page through /run/tipbox/source.sock: HTTP 200"
    for header in "${HEADERS[@]}"; do
        grep -qi "^$header: " "$RESULTS/source-headers.txt" || fail "source page: no $header header"
    done
    ok "source page has every security header (${HEADERS[*]})"
    grep -qi '<html' "$RESULTS/source-body.html" || fail "source page: no HTML"
    code="$(fetch journalist)"
    [[ $code =~ ^[23][0-9][0-9]$ ]] || fail "journalist app: HTTP $code"
    ok "journalist app through /run/tipbox/journalist.sock: HTTP $code"
}
active() {
    local unit
    for unit in "$@"; do
        systemctl is-active --quiet "$unit" || fail "$unit is $(systemctl is-active "$unit")"
    done
    ok "active: $*"
}
main_pid() { systemctl show -p MainPID --value "$1"; }

# --- The steps, in order --------------------------------------------------------------------

step_system() { # what this machine is
    grep PRETTY_NAME /etc/os-release
    printf 'Debian %s, kernel %s, %s, %s, %s\n' "$(cat /etc/debian_version)" "$(uname -r)" \
        "$(systemctl --version | head -n 1)" "$(tor --version | head -n 1)" "$(python3 -V)"
    printf 'virtualisation: %s\n' "$(systemd-detect-virt || true)"
    [[ "$(cat /proc/1/comm)" == systemd ]] || fail "PID 1 is not systemd"
    ok "systemd is PID 1"
    [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" == Y ]] || fail "AppArmor is off"
    ok "AppArmor is enabled"
    run ip -o link
    [[ "$(ip -o link | grep -cv ': lo:')" == 0 ]] || fail "a network interface besides lo"
    ok "no network interface but lo"
    run systemd-analyze time || true
}

step_copy() { # the repository to /root/tipbox (the previous release beside it), the key pair
    rm -rf "$REPO" "$PREVIOUS_REPO" "$KEYS" "$OLD_KEYS"
    cp -a "$PAYLOAD/repo" "$REPO"
    cp -a "$PAYLOAD/previous" "$PREVIOUS_REPO"
    cp -a "$PAYLOAD/keys" "$KEYS"
    cp -a "$PAYLOAD/keys-classic" "$OLD_KEYS"
    install -m 0600 "$PAYLOAD/identity.age" "$IDENTITY"
    install -m 0600 "$PAYLOAD/identity-classic.age" "$OLD_IDENTITY"
    run ls -la "$REPO" "$KEYS"
    ok "repository in $REPO, previous release $(cat "$PREVIOUS_REPO/RELEASE") in $PREVIOUS_REPO"
    ok "recipient $KEYS/newsroom.pub, identity $IDENTITY"
}

step_deploy() { # make deploy on the fresh system, offline
    make_target deploy KEYS="$KEYS" WHEELS="$WHEELS" | tee "$RESULTS/deploy-1.out"
    [[ "$(grep -cE 'http://[a-z2-7]{56}\.onion/' "$RESULTS/deploy-1.out")" -ge 2 ]] ||
        fail "make deploy did not print two onion addresses"
    ok "two onion addresses printed"
    addresses | tee "$ADDRESSES"
}

step_patched() { # daily security updates on, the inbound firewall loaded (and back after a reboot)
    systemctl is-enabled --quiet apt-daily-upgrade.timer || fail "apt-daily-upgrade.timer is not enabled"
    grep -q 'Unattended-Upgrade "1"' /etc/apt/apt.conf.d/52tipbox-security-updates || fail "no unattended-upgrades setting"
    nft list table inet tipbox | tee "$RESULTS/nft.txt"
    grep -q 'policy drop;' "$RESULTS/nft.txt" || fail "the tipbox table does not drop inbound connections"
    systemctl is-enabled --quiet nftables.service || fail "nftables.service is not enabled"
    ok "unattended-upgrades daily; inbound policy drop (nftables, enabled at boot)"
}

step_units() { # tor, the sockets, AppArmor, socket permissions
    active tor.service tor@default.service tipbox-source.socket tipbox-journalist.socket
    systemctl is-enabled --quiet tipbox-source.socket tipbox-journalist.socket tor.service ||
        fail "a unit is not enabled"
    ok "enabled: tor.service tipbox-source.socket tipbox-journalist.socket"
    local label
    label="$(cat "/proc/$(main_pid tor@default.service)/attr/current")"
    printf 'tor runs as AppArmor profile: %s\n' "$label"
    [[ $label == "system_tor (enforce)" ]] || fail "tor is not confined by system_tor"
    ok "tor is confined by its AppArmor profile system_tor (enforce)"
    run grep -A3 'BEGIN tipbox' /etc/apparmor.d/local/system_tor
    local sock
    for sock in /run/tipbox/source.sock /run/tipbox/journalist.sock; do
        [[ "$(stat -c '%U:%G %a %F' "$sock")" == "root:debian-tor 660 socket" ]] ||
            fail "$sock: $(stat -c '%U:%G %a %F' "$sock")"
    done
    ok "both sockets root:debian-tor 0660"
    run ls -la /var/lib/tor/tipbox-source /var/lib/tipbox
    [[ "$(stat -c '%U %a' /var/lib/tor/tipbox-source/hs_ed25519_secret_key)" == "debian-tor 600" ]] ||
        fail "source onion key: $(stat -c '%U %a' /var/lib/tor/tipbox-source/hs_ed25519_secret_key)"
    [[ "$(stat -c '%U %a' /var/lib/tipbox)" == "tipbox 700" ]] || fail "/var/lib/tipbox: $(stat -c '%U %a' /var/lib/tipbox)"
    ok "onion key debian-tor 0600, /var/lib/tipbox tipbox 0700"
    id tipbox
    ! grep -qw debian-tor <<<"$(id -nG tipbox)" || fail "tipbox is in the debian-tor group"
    ok "tipbox is not in the debian-tor group"
}

step_pages() { # both apps through their sockets; the app's sandbox as systemd made it
    pages_answer
    active tipbox-source.service tipbox-journalist.service
    local pid
    pid="$(main_pid tipbox-source.service)"
    run grep -E '^(Uid|NoNewPrivs|Seccomp|CapEff):' "/proc/$pid/status"
    [[ "$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")" == "$(id -u tipbox)" ]] || fail "not running as tipbox"
    grep -qE '^NoNewPrivs:\s+1' "/proc/$pid/status" || fail "NoNewPrivs is off"
    grep -qE '^Seccomp:\s+2' "/proc/$pid/status" || fail "no seccomp filter"
    run cat "/proc/$pid/net/dev"
    [[ "$(tail -n +3 "/proc/$pid/net/dev" | grep -cv '^ *lo:')" == 0 ]] || fail "the app sees a network interface"
    ok "gunicorn runs as tipbox, no new privileges, seccomp filter, no interface but lo"
    grep -q MemoryDenyWriteExecute=yes <(systemctl show tipbox-source.service -p MemoryDenyWriteExecute) ||
        fail "MemoryDenyWriteExecute is off"
    ok "MemoryDenyWriteExecute=yes in force and the app works under it"
    # A costly page: the codename derivation (Argon2id), counted by the rate limits in the
    # memory file the master shares with its workers (app/server/counters.py: memfd_create, lockf).
    local host code
    host="$(host_of source)"
    code="$(curl --silent --show-error --max-time 120 --unix-socket /run/tipbox/source.sock \
        -H "Host: $host" -o "$RESULTS/generate-body.html" -w '%{http_code}' "http://$host/en/generate")"
    [[ $code == 200 ]] || fail "codename page: HTTP $code"
    grep -q 'id="codename"' "$RESULTS/generate-body.html" || fail "codename page without a codename"
    local fd shared=no
    for fd in "/proc/$pid/fd/"*; do
        if [[ "$(readlink "$fd")" == "/memfd:tipbox-limits (deleted)" ]]; then shared=yes; fi
    done
    [[ $shared == yes ]] || fail "no rate-limit memory in the master"
    ok "a codename page under the sandbox, counted in the workers' shared rate-limit memory"
}

step_tor_reaches_the_apps() { # as tor: user debian-tor, AppArmor profile system_tor
    local host code label
    host="$(host_of source)"
    code="$(runuser -u debian-tor -- aa-exec -p system_tor -- curl --silent --show-error \
        --max-time 60 --unix-socket /run/tipbox/source.sock -H "Host: $host" -o /dev/null \
        -w '%{http_code}' "http://$host/")" || true
    [[ $code == 200 ]] || fail "user debian-tor under AppArmor profile system_tor: HTTP '$code'"
    ok "user debian-tor under AppArmor profile system_tor reaches the source app: HTTP 200"
    if runuser -u nobody -- curl --silent --max-time 10 --unix-socket /run/tipbox/source.sock \
        -o /dev/null "http://$host/" 2>/dev/null; then
        fail "user nobody could connect to the source socket"
    fi
    ok "user nobody cannot connect to the source socket"
    # The control: the same confined curl, to a socket the profile does not list. On Debian 12
    # (kernel 6.1) AppArmor does not mediate connecting to a unix socket by path, so this
    # connects too: reported as a note (the socket's mode is what keeps others out); a kernel
    # that mediates AF_UNIX would refuse it, and then the rule above is what lets tor in.
    local probe=/run/rehearsal-probe.sock server
    rm -f "$probe"
    python3 -c 'import os, socket, sys
os.umask(0)  # the socket is 0777 from the start: anyone may connect, as far as modes go
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen()
s.settimeout(60)
for _ in range(2):
    c, _ = s.accept()
    c.recv(65536)  # the request first: closing before curl has sent it is a broken pipe
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    c.close()' "$probe" &
    server=$!
    for _ in $(seq 50); do
        if [[ -S $probe ]]; then break; fi
        sleep 0.2
    done
    run ls -la "$probe"
    # That aa-exec really confines: the label of a process started the same way, read by root
    # (the profile does not let the process read its own).
    runuser -u debian-tor -- aa-exec -p system_tor -- sleep 20 &
    local runner=$! sleeper=
    for _ in $(seq 50); do
        sleeper="$(pgrep -u debian-tor -n -x sleep || true)"
        if [[ -n $sleeper ]]; then break; fi
        sleep 0.2
    done
    label="$(cat "/proc/$sleeper/attr/current" 2>/dev/null || true)"
    if [[ -n $sleeper ]]; then kill "$sleeper" 2>/dev/null || true; fi
    wait "$runner" 2>/dev/null || true
    [[ $label == "system_tor (enforce)" ]] || fail "aa-exec did not confine: '$label'"
    ok "a process started by aa-exec -p system_tor runs as: $label"
    code="$(runuser -u debian-tor -- curl --silent --show-error --max-time 20 --unix-socket "$probe" \
        -o /dev/null -w '%{http_code}' http://probe/)" || true
    [[ $code == 200 ]] || fail "control: user debian-tor, unconfined, cannot reach the probe socket ('$code')"
    code="$(runuser -u debian-tor -- aa-exec -p system_tor -- curl --silent --show-error \
        --max-time 20 --unix-socket "$probe" -o /dev/null -w '%{http_code}' http://probe/)" || true
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -f "$probe"
    if [[ $code == 200 ]]; then
        echo "note: AppArmor here does not mediate unix-socket connects: system_tor also reached a socket it does not list"
    else
        ok "control: under system_tor the same curl cannot reach a socket the profile does not list"
    fi
}

step_status() { # make status: exit 1 while tor is offline, and says why in plain words
    local out="$RESULTS/status.out" status=0
    make_target status >"$out" 2>&1 || status=$?
    cat "$out"
    [[ $status != 0 ]] || fail "make status passed although tor cannot reach the Tor network"
    grep -q 'FAIL  tor is not connected to the Tor network' "$out" || fail "no plain 'tor is not connected' line"
    grep -qE '^ok    tor .* answers on (unix:)?/run/tor/control' "$out" || fail "tor's control port"
    grep -q '^ok    source app on /run/tipbox/source.sock answers (HTTP 200)' "$out" || fail "source app"
    grep -qE '^ok    journalist app on /run/tipbox/journalist.sock answers \(HTTP [23]' "$out" || fail "journalist app"
    grep -qE '^(ok|WARN|FAIL) +(no security update pending|[0-9]+ security updates? pending)' "$out" ||
        fail "no line on pending security updates"
    grep -qE '^(ok|WARN) +unattended-upgrades' "$out" || fail "no line on unattended-upgrades"
    local unexpected
    unexpected="$(grep '^FAIL' "$out" | grep -v 'tor is not connected' | grep -v 'is configured but not published yet' || true)"
    [[ -z $unexpected ]] || fail "unexpected: $unexpected"
    [[ "$(grep -v '^make' "$out" | tail -n 1)" =~ ^tipbox:\ error:\ [0-9]+\ of\ [0-9]+\ checks\ failed$ ]] ||
        fail "the error line does not come after the checks"
    ok "make status fails (exit $status): says tor is not connected (no network here), services not published yet, both apps answer"
}

step_deploy_again() { # idempotence
    make_target deploy KEYS="$KEYS" WHEELS="$WHEELS"
    same_addresses
    [[ "$(grep -c '^%include /etc/tor/torrc.d/\*.conf$' /etc/tor/torrc)" == 1 ]] || fail "torrc: not one %include line"
    [[ "$(grep -c 'BEGIN tipbox' /etc/apparmor.d/local/system_tor)" == 1 ]] || fail "AppArmor: not one block"
    ok "one %include line in torrc, one block in AppArmor's local/system_tor"
    pages_answer
}

step_user() { # make user NAME=… (non-interactive: a generated passphrase)
    make_target user NAME=rehearsal-admin | tee "$RESULTS/user.out"
    [[ "$(stat -c %U /var/lib/tipbox/store.sqlite3)" == tipbox ]] || fail "the database is not tipbox's"
    ok "account created; the database belongs to tipbox"
}

step_access() { # one journalist key: a checked reload of tor under systemd and AppArmor
    local tor_pid
    tor_pid="$(main_pid tor@default.service)"
    (cd /root && run timeout 120 tipbox access add alice)
    run tipbox access list
    grep -q '^alice ' <<<"$(tipbox access list)" || fail "alice is not listed"
    [[ "$(stat -c '%U %a' /var/lib/tor/tipbox-journalist/authorized_clients/alice.auth)" == "debian-tor 600" ]] ||
        fail "alice.auth: $(stat -c '%U %a' /var/lib/tor/tipbox-journalist/authorized_clients/alice.auth)"
    active tor@default.service
    [[ "$(main_pid tor@default.service)" == "$tor_pid" ]] || fail "tor restarted instead of reloading"
    ok "alice.auth debian-tor 0600; tor reloaded, same process"
}

step_backup() { # make backup: one age file, only the identity opens it
    rm -f "$BACKUP"
    make_target backup OUT="$BACKUP"
    [[ "$(stat -c %a "$BACKUP")" == 600 ]] || fail "backup mode $(stat -c %a "$BACKUP")"
    /usr/local/bin/tipbox decrypt -i "$IDENTITY" "$BACKUP" | tar -tvf - >"$RESULTS/backup-contents.txt"
    cat "$RESULTS/backup-contents.txt"
    local path
    for path in var/lib/tor/tipbox-source/hs_ed25519_secret_key var/lib/tor/tipbox-journalist/hs_ed25519_secret_key \
        var/lib/tor/tipbox-journalist/authorized_clients/alice.auth var/lib/tipbox/store.sqlite3 etc/tipbox/tipbox.env; do
        grep -q " $path\$" "$RESULTS/backup-contents.txt" || fail "$path is not in the backup"
    done
    ok "backup 0600, decrypts with the identity, holds both onion keys, alice.auth, the database, the config"
}

step_restore() { # make restore-key; re-encrypt (the VM stands in for the air-gapped machine); make restore
    local recipient moved="$BACKUP.for-server"
    recipient="$(make_target restore-key | tee /dev/stderr | awk '$1 == "restore" && $2 == "recipient:" { print $3 }')"
    [[ $recipient == age1* ]] || fail "make restore-key printed no recipient"
    /usr/local/bin/tipbox backup reencrypt -i "$IDENTITY" -r "$recipient" -o "$moved" "$BACKUP"
    make_target restore BACKUP="$moved" FORCE=1
    [[ ! -e /var/lib/tipbox-restore-key ]] || fail "the one-time restore key is still there"
    same_addresses
    grep -q '^alice ' <<<"$(tipbox access list)" || fail "alice is gone"
    pages_answer
}

step_uninstall() { # make uninstall: keeps data and onion keys
    make_target uninstall
    local unit
    for unit in tipbox-source.socket tipbox-source.service tipbox-journalist.socket tipbox-journalist.service; do
        [[ ! -e /etc/systemd/system/$unit ]] || fail "$unit is still installed"
        ! systemctl is-active --quiet "$unit" || fail "$unit is still active"
    done
    [[ ! -e /opt/tipbox && ! -e /usr/local/bin/tipbox && ! -e /etc/tor/torrc.d/tipbox.conf ]] || fail "code or snippet left"
    [[ ! -e /run/tipbox/source.sock ]] || fail "the source socket is still there"
    [[ -f /var/lib/tipbox/store.sqlite3 && -f /var/lib/tor/tipbox-source/hs_ed25519_secret_key ]] || fail "data or keys lost"
    ! grep -q 'BEGIN tipbox' /etc/apparmor.d/local/system_tor || fail "AppArmor block left"
    active tor@default.service
    ok "units, code, snippet, AppArmor block gone; data and onion keys kept; tor still runs"
}

step_deploy_after_uninstall() { # same addresses again
    make_target deploy KEYS="$KEYS" WHEELS="$WHEELS"
    same_addresses
    pages_answer
}

step_security() { # systemd-analyze security, online, on the running units
    local unit score
    for unit in tipbox-source.service tipbox-journalist.service tor@default.service; do
        systemd-analyze security --no-pager "$unit" >"$RESULTS/security-$unit.txt" 2>&1 || true
        score="$(grep -E '^→ Overall exposure level' "$RESULTS/security-$unit.txt" | sed 's/.*: //')"
        printf 'SCORE %s: %s\n' "$unit" "${score:-none}"
        [[ -n $score ]] || fail "no score for $unit"
    done
    grep -q 'Overall exposure level for tipbox-source.service: 0\.[0-9] SAFE' "$RESULTS/security-tipbox-source.service.txt" ||
        fail "tipbox-source.service is not SAFE below 1.0"
    grep -q 'Overall exposure level for tipbox-journalist.service: 0\.[0-9] SAFE' "$RESULTS/security-tipbox-journalist.service.txt" ||
        fail "tipbox-journalist.service is not SAFE below 1.0"
    ok "both app services SAFE below 1.0"
}

step_logs() { # what the journal says: no AppArmor denial for tor, no traceback in the apps
    journalctl -b --no-pager -o short-monotonic >"$RESULTS/journal.txt" 2>&1 || true
    local denials
    denials="$(grep 'apparmor="DENIED"' "$RESULTS/journal.txt" | grep 'profile="system_tor"' | grep 'comm="tor"' || true)"
    [[ -z $denials ]] || fail "AppArmor denied tor: $denials"
    ok "no AppArmor denial for tor"
    grep 'apparmor="DENIED"' "$RESULTS/journal.txt" || true
    journalctl -b --no-pager -u tipbox-source.service -u tipbox-journalist.service >"$RESULTS/apps-journal.txt" || true
    if grep -q Traceback "$RESULTS/apps-journal.txt"; then
        tail -n 60 "$RESULTS/apps-journal.txt"
        fail "a traceback in the apps' journal"
    fi
    ok "no traceback in the apps' journal"
    run journalctl -b --no-pager -u tipbox-source.service -n 20
}

step_purge() { # make uninstall PURGE=1: everything gone, tor still runs
    make_target uninstall PURGE=1
    [[ ! -e /var/lib/tipbox && ! -e /etc/tipbox && ! -e /var/lib/tor/tipbox-source && ! -e /var/lib/tor/tipbox-journalist ]] ||
        fail "data, configuration or onion keys left"
    ! getent passwd tipbox >/dev/null || fail "the user tipbox is left"
    active tor@default.service
    ok "data, configuration, onion keys and the user gone; tor still runs"
}

# A source's round trip through the source app's socket, with curl and a cookie jar.
source_curl() { # JAR CURL-ARGUMENTS…: a request to the source app as the source with that jar
    local jar="$1" host
    host="$(host_of source)"
    shift
    curl --silent --show-error --max-time 120 --unix-socket /run/tipbox/source.sock \
        -H "Host: $host" -b "$jar" -c "$jar" "$@"
}
csrf_of() { sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -n 1; }
submit_message() { # MESSAGE: a new source sends it; its codename is left in CODENAME
    local jar token code
    jar="$(mktemp)"
    CODENAME="$(source_curl "$jar" http://source/en/generate |
        sed -n 's/.*id="codename"[^>]*>[[:space:]]*\([^<]*[^<[:space:]]\)[[:space:]]*<.*/\1/p')"
    [[ -n $CODENAME ]] || fail "no codename on the codename page"
    token="$(source_curl "$jar" http://source/en/submit | csrf_of)"
    [[ -n $token ]] || fail "no CSRF token on the submission page"
    # The token first: the upload parser refuses any field before it.
    code="$(source_curl "$jar" -o /dev/null -w '%{http_code}' -F "csrf_token=$token" \
        -F "message=$1" -F "website=" http://source/en/submit)"
    rm -f "$jar"
    [[ $code == 303 ]] || fail "submission: HTTP $code, expected 303"
}
source_logs_in() { # CODENAME: it opens the source's page
    local jar token code
    jar="$(mktemp)"
    token="$(source_curl "$jar" http://source/en/login | csrf_of)"
    code="$(source_curl "$jar" -o /dev/null -w '%{http_code} %{redirect_url}' \
        --data-urlencode "csrf_token=$token" --data-urlencode "codename=$1" http://source/en/login)"
    rm -f "$jar"
    [[ $code == "303 "*/en/lookup ]] || fail "the codename did not log in: $code"
}
schema_version() { # the database's PRAGMA user_version, read as tipbox (its -shm stays tipbox's)
    runuser -u tipbox -- /opt/tipbox/venv/bin/python -c 'import sqlite3
db = sqlite3.connect("file:/var/lib/tipbox/store.sqlite3?mode=ro", uri=True)
print(db.execute("PRAGMA user_version").fetchone()[0])'
}

step_upgrade() { # the previous release deployed, a submission, then this release over it
    local message version item text since
    since="$(date +%s)"
    [[ -f $PREVIOUS_REPO/Makefile ]] || fail "no previous release in $PREVIOUS_REPO (step copy)"
    [[ ! -e /var/lib/tipbox ]] || fail "not a fresh system: /var/lib/tipbox exists (run after purge)"
    run timeout 600 make -C "$PREVIOUS_REPO" --no-print-directory deploy KEYS="$OLD_KEYS" WHEELS="$WHEELS"
    addresses | tee "$ADDRESSES"
    pages_answer
    ok "the previous release ($(cat "$PREVIOUS_REPO/RELEASE")) deployed and answers"
    message="Upgrade rehearsal: the minister's memo, page 3 — ñ ✉ $(date +%s)"
    submit_message "$message"
    printf '%s\n' "$CODENAME" >"$CODENAME_FILE"
    printf '%s\n' "$message" >"$MESSAGE_FILE"
    version="$(schema_version)"
    [[ $version == 0 ]] || fail "the previous release's database has schema version $version"
    ok "a source submitted a message; the database has schema version 0 (before versions)"
    make_target deploy KEYS="$OLD_KEYS" WHEELS="$WHEELS" 2>&1 | tee "$RESULTS/deploy-upgrade.out"
    grep -q 'tipbox: warning: 1 of 1 newsroom recipients are classical' "$RESULTS/deploy-upgrade.out" ||
        fail "the deploy did not warn that the newsroom key is classical"
    ok "this release's deploy warns that the newsroom key is classical (the rotation step replaces it)"
    grep -qE 'schema version [0-9]+ \([1-9][0-9]* migration\(s\) applied\)' "$RESULTS/deploy-upgrade.out" ||
        fail "make deploy did not say it migrated the database"
    local before
    before="$(find /var/backups/tipbox -maxdepth 1 -name 'before-upgrade-*.tar.age')"
    [[ -n $before && "$(wc -l <<<"$before")" == 1 ]] || fail "no backup (or several) before the migration: '$before'"
    /usr/local/bin/tipbox decrypt -i "$OLD_IDENTITY" "$before" | tar -xOf - var/lib/tipbox/store.sqlite3 >/root/before.sqlite3
    [[ "$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version").fetchone()[0])' /root/before.sqlite3)" == 0 ]] ||
        fail "the backup before the migration does not hold the schema-0 database"
    rm -f /root/before.sqlite3
    ok "before migrating, the deploy wrote $before (mode $(stat -c %a "$before")), which opens to the schema-0 database"
    same_addresses
    pages_answer
    version="$(schema_version)"
    [[ $version -ge 1 ]] || fail "the database still has schema version $version"
    ok "make deploy of this release migrated the database to schema version $version"
    source_logs_in "$CODENAME"
    ok "the old codename logs in on this release"
    mapfile -t item < <(find /var/lib/tipbox/items -maxdepth 1 -type f -name '[0-9a-f]*')
    [[ ${#item[@]} == 1 ]] || fail "expected one item file, found ${#item[@]}"
    text="$(/usr/local/bin/tipbox decrypt -i "$OLD_IDENTITY" "${item[0]}" | tar -xOf - message.txt 2>/dev/null || true)"
    [[ $text == "$message" ]] || fail "the submission does not open to the message sent: '$text'"
    ok "the submission made on the previous release opens with the newsroom identity, word for word"
    make_target deploy KEYS="$OLD_KEYS" WHEELS="$WHEELS" | tee "$RESULTS/deploy-upgrade-again.out"
    grep -q '(0 migration(s) applied)' "$RESULTS/deploy-upgrade-again.out" ||
        fail "a second deploy migrated again"
    ! grep -q 'backup before the database is migrated' "$RESULTS/deploy-upgrade-again.out" ||
        fail "a deploy with nothing to migrate made a backup"
    ok "a second deploy finds nothing to migrate"
    if journalctl --since "@$since" --no-pager -u tipbox-source.service -u tipbox-journalist.service |
        grep -q Traceback; then
        fail "a traceback in the apps' journal during the upgrade"
    fi
    ok "no traceback in the apps' journal during the upgrade"
}

one_item_opens() { # FILE IDENTITY MESSAGE: the item opens with that identity to that message
    local text
    text="$(/usr/local/bin/tipbox decrypt -i "$2" "$1" 2>/dev/null | tar -xOf - message.txt 2>/dev/null || true)"
    [[ $text == "$3" ]]
}
newest_item() { # the item file written last
    find /var/lib/tipbox/items -maxdepth 1 -type f -name '[0-9a-f]*' -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2
}

step_rotate() { # a new newsroom key replaces the old one; old items still open with the old identity
    local old_item message new_item
    old_item="$(newest_item)"
    [[ -n $old_item ]] || fail "no item from the upgrade step"
    one_item_opens "$old_item" "$OLD_IDENTITY" "$(cat "$MESSAGE_FILE")" || fail "the upgrade step's item does not open"
    # On the air-gapped machine (this VM stands in for it): the new key pair beside the old one.
    rm -rf "$NEW_KEYS" "$NEW_IDENTITY"
    mkdir -p "$NEW_KEYS"
    run /usr/local/bin/tipbox keygen --no-passphrase --identity "$NEW_IDENTITY" --recipient "$NEW_KEYS/newsroom-2.pub"
    grep -q '^age1pq1' "$NEW_KEYS/newsroom-2.pub" || fail "the new recipient is not post-quantum"
    # On the server: the new recipient deployed alone (the old one retired in the same step).
    make_target deploy KEYS="$NEW_KEYS" WHEELS="$WHEELS"
    [[ "$(find /etc/tipbox/keys -mindepth 1 -printf "%f ")" == "newsroom-2.pub " ]] || fail "keys on the server: $(find /etc/tipbox/keys -mindepth 1 -printf "%f ")"
    ok "the new recipient deployed, the old one retired: /etc/tipbox/keys holds newsroom-2.pub only"
    message="Rotation rehearsal: after the new key — $(date +%s)"
    submit_message "$message"
    new_item="$(newest_item)"
    [[ $new_item != "$old_item" ]] || fail "no new item"
    one_item_opens "$new_item" "$NEW_IDENTITY" "$message" || fail "the new item does not open with the new identity"
    ! one_item_opens "$new_item" "$OLD_IDENTITY" "$message" || fail "the new item opens with the retired identity"
    ok "a submission after the rotation opens with the new identity, not with the old one"
    one_item_opens "$old_item" "$OLD_IDENTITY" "$(cat "$MESSAGE_FILE")" || fail "the old item no longer opens with the old identity"
    run /usr/local/bin/tipbox decrypt -i "$OLD_IDENTITY" -i "$NEW_IDENTITY" -o /dev/null "$old_item"
    run /usr/local/bin/tipbox decrypt -i "$OLD_IDENTITY" -i "$NEW_IDENTITY" -o /dev/null "$new_item"
    ok "the item from before still opens with the old identity; both open given both (-i old -i new)"
    source_logs_in "$(cat "$CODENAME_FILE")"
    ok "the source from before the rotation still logs in"
    make_target status >"$RESULTS/status-rotate.out" 2>&1 || true
    cat "$RESULTS/status-rotate.out"
    grep -q '^ok    newsroom keys: 1 post-quantum recipient' "$RESULTS/status-rotate.out" ||
        fail "make status does not show the one post-quantum recipient"
    ok "make status: one post-quantum newsroom recipient"
}

# An SMTP server on loopback in the VM, standing in for the newsroom's relay: Python's own
# smtpd (deprecated, still in Debian 12's Python 3.11), each message kept in a file.
SMTP_SINK='import asyncore, os, smtpd, sys
class Sink(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        name = os.path.join(sys.argv[1], "%03d.eml" % (len(os.listdir(sys.argv[1])) + 1))
        with open(name + ".part", "wb") as out:
            out.write(data)
        os.rename(name + ".part", name)
Sink(("127.0.0.1", 2525), None, decode_data=False)
asyncore.loop()
'
# The encrypted part of a PGP/MIME message file, to standard output; its subject checked.
PGP_PART='import email, sys
message = email.message_from_binary_file(open(sys.argv[1], "rb"))
assert message["Subject"] == "Tipbox daily digest", message["Subject"]
sys.stdout.buffer.write(message.get_payload()[1].get_payload(decode=True))
'
wait_for_mail() { # DIR COUNT: until DIR holds COUNT messages (at most 60 s)
    local tries=0
    while (($(find "$1" -name '*.eml' | wc -l) < $2)); do
        ((tries++ < 120)) || fail "the SMTP server got $(find "$1" -name '*.eml' | wc -l) message(s), expected $2"
        sleep 0.5
    done
}
digest_says() { # FILE: the digest decrypted with alice's key
    python3 -c "$PGP_PART" "$1" | gpg --homedir "$GNUPG" --batch --quiet --decrypt 2>/dev/null
}

step_digest() { # the daily digest through an SMTP server in the VM, sent by its systemd unit
    local mailbox=/root/rehearsal-mail allowed
    rm -rf "$mailbox" "$GNUPG"
    mkdir -p "$mailbox"
    install -d -m 0700 "$GNUPG"
    python3 -W ignore -c "$SMTP_SINK" "$mailbox" &
    SINK=$!
    trap 'kill "$SINK" 2>/dev/null || true' EXIT
    # Alice's key pair (on her own machine in real life); the server gets her public key only.
    run gpg --homedir "$GNUPG" --batch --passphrase '' --quick-gen-key 'Alice <alice@newsroom.example>' future-default default never
    install -d -m 0755 /etc/tipbox/digest-keys
    gpg --homedir "$GNUPG" --armor --export alice@newsroom.example >/etc/tipbox/digest-keys/alice@newsroom.example.asc
    printf '%s\n' TIPBOX_DIGEST_RELAY=127.0.0.1 TIPBOX_DIGEST_PORT=2525 TIPBOX_DIGEST_TLS=none \
        TIPBOX_DIGEST_FROM=tipbox@newsroom.example TIPBOX_DIGEST_TIME=06:30 >>/etc/tipbox/tipbox.env
    make_target deploy KEYS="$NEW_KEYS" WHEELS="$WHEELS" | tee "$RESULTS/deploy-digest.out"
    systemctl is-active --quiet tipbox-digest.timer || fail "tipbox-digest.timer is not active"
    run systemctl list-timers --no-pager tipbox-digest.timer
    systemctl cat tipbox-digest.timer | grep -q '^OnCalendar=.*06:30' || fail "the timer is not set to 06:30"
    allowed="$(systemctl show -p IPAddressAllow --value tipbox-digest.service)"
    [[ $allowed =~ ^127\.0\.0\.1(/32)?$ ]] || fail "the digest's unit may reach: '$allowed'"
    # systemd shows "any" as both prefixes, in no set order.
    denied="$(systemctl show -p IPAddressDeny --value tipbox-digest.service)"
    [[ $denied =~ ^(0\.0\.0\.0/0\ ::/0|::/0\ 0\.0\.0\.0/0|any)$ ]] ||
        fail "the digest's unit is not IPAddressDeny=any: '$denied'"
    ok "timer on at 06:30 UTC; the digest's unit may reach 127.0.0.1 and no other address"
    # Turning the timer on sends nothing: a digest goes at the set time only (list-timers may
    # show a LAST of now: the timer's stamp file, made when it first starts).
    [[ "$(systemctl show -p InactiveExitTimestampMonotonic --value tipbox-digest.service)" == 0 ]] ||
        fail "the digest's service ran when the deploy turned its timer on"
    [[ -z "$(find "$mailbox" -mindepth 1)" ]] || fail "a digest was sent at deploy time"
    ok "the deploy sent no digest: the service has not run since boot"
    run timeout 300 systemctl start tipbox-digest.service
    wait_for_mail "$mailbox" 1
    digest_says "$mailbox/001.eml" | tee "$RESULTS/digest-1.txt" | grep -q 'Something new arrived' ||
        fail "the digest does not decrypt with alice's key to 'Something new arrived'"
    ok "the systemd unit sent one digest: subject 'Tipbox daily digest', decrypts with alice's key to 'something new'"
    run timeout 300 tipbox digest send --test
    wait_for_mail "$mailbox" 2
    digest_says "$mailbox/002.eml" | grep -q 'test digest' || fail "the test digest does not decrypt"
    ok "tipbox digest send --test: a test digest reached the relay and decrypts"
    make_target status >"$RESULTS/status-digest.out" 2>&1 || true
    cat "$RESULTS/status-digest.out"
    grep -q "^ok    daily digest at 06:30 UTC through 127.0.0.1:2525 (no TLS) to 1 recipient(s), keys valid" \
        "$RESULTS/status-digest.out" || fail "make status does not check the digest's settings"
    grep -q "^ok    last daily digest sent on $(date -u +%F)" "$RESULTS/status-digest.out" ||
        fail "make status does not show today's digest"
    ok "make status: digest settings and key valid, last digest sent today"
    if journalctl --no-pager -u tipbox-digest.service | grep -q Traceback; then fail "a traceback in the digest's journal"; fi
}

step_retention() { # the daily retention job, as its systemd unit runs it
    run timeout 120 systemctl start tipbox-retention.service
    journalctl --no-pager -u tipbox-retention.service -n 5 | tee "$RESULTS/retention-off.txt"
    grep -q 'retention is off' "$RESULTS/retention-off.txt" || fail "the retention job did not say it is off"
    printf 'TIPBOX_RETENTION_DAYS=30\n' >>/etc/tipbox/tipbox.env
    run timeout 120 systemctl start tipbox-retention.service
    journalctl --no-pager -u tipbox-retention.service -n 5 | tee "$RESULTS/retention-on.txt"
    grep -q 'retention 30 days: 0 source(s) deleted' "$RESULTS/retention-on.txt" || fail "the retention job did not run with 30 days"
    ok "tipbox-retention.service ran under systemd: off, then 30 days (today's sources kept)"
}

step_restore_elsewhere() { # a second server: fresh deploy, one-time restore key, the backup restored
    local recipient moved=/root/rehearsal-elsewhere.age backup=/root/rehearsal-elsewhere.tar.age
    local opened=0 item
    rm -f "$backup" "$moved"
    make_target backup OUT="$backup"
    addresses >"$ADDRESSES"
    make_target uninstall PURGE=1
    # The second server: a fresh deploy, with new onion addresses.
    make_target deploy KEYS="$NEW_KEYS" WHEELS="$WHEELS"
    [[ "$(addresses)" != "$(cat "$ADDRESSES")" ]] || fail "a fresh deploy has the old addresses"
    ok "a fresh deploy (the second server) with addresses of its own"
    recipient="$(make_target restore-key | tee /dev/stderr | awk '$1 == "restore" && $2 == "recipient:" { print $3 }')"
    [[ $recipient == age1* ]] || fail "make restore-key printed no recipient"
    # On the air-gapped machine: re-encrypted from the newsroom key to the one-time key.
    run /usr/local/bin/tipbox backup reencrypt -i "$NEW_IDENTITY" -r "$recipient" -o "$moved" "$backup"
    make_target restore BACKUP="$moved" FORCE=1
    [[ ! -e /var/lib/tipbox-restore-key ]] || fail "the one-time restore key is still there"
    ok "restored with the one-time key, which is gone"
    same_addresses
    pages_answer
    source_logs_in "$(cat "$CODENAME_FILE")"
    for item in /var/lib/tipbox/items/[0-9a-f]*; do
        /usr/local/bin/tipbox decrypt -i "$OLD_IDENTITY" -i "$NEW_IDENTITY" -o /dev/null "$item" && opened=$((opened + 1))
    done
    [[ $opened == 2 ]] || fail "$opened item(s) open on the restored server, expected 2"
    grep -q '^TIPBOX_DIGEST_RELAY=127.0.0.1' /etc/tipbox/tipbox.env || fail "the digest settings were not restored"
    ok "the old addresses, the source's codename, both items and the digest settings are back"
}

STEPS=(system copy deploy patched units pages tor_reaches_the_apps status deploy_again user
    access backup restore uninstall deploy_after_uninstall security logs purge upgrade rotate
    digest retention restore_elsewhere)

# --- One step (this script run again by the loop below) -------------------------------------

if [[ ${2:-} == --step ]]; then
    "step_$3"
    exit 0
fi

# --- The rehearsal --------------------------------------------------------------------------

if [[ "$(hostname)" != tipbox-rehearsal ]] || ! systemd-detect-virt --quiet --vm; then
    echo "rehearse-guest.sh: this is not the rehearsal VM; refusing to run" >&2
    exit 2
fi
mkdir -p "$RESULTS"
: >"$LOG"
if [[ -s $PAYLOAD/steps ]]; then read -r -a STEPS <"$PAYLOAD/steps"; fi
say() { printf '%s\n' "$*" | tee -a "$LOG"; }
say "Tipbox deploy rehearsal, $(date -u '+%Y-%m-%d %H:%M UTC'), in a qemu VM without network"
start=$SECONDS
passed=0
failed=0
summary=()
n=0
for name in "${STEPS[@]}"; do
    n=$((n + 1))
    out="$(printf '%s/%02d-%s.txt' "$RESULTS" "$n" "$name")"
    describe="$(grep -m1 "^step_$name() {" "$0" | sed 's/.*# //')"
    say ""
    say "--- step $n: $name ($describe)"
    t=$SECONDS
    status=0
    # A step may not hang: killed (with everything it started) after 15 minutes.
    timeout --kill-after=10 900 bash "$0" "$PAYLOAD" --step "$name" >"$out" 2>&1 </dev/null || status=$?
    took=$((SECONDS - t))
    grep -E '^(ok: |note: |CHECK FAILED: |SCORE )' "$out" | sed 's/^/    /' | tee -a "$LOG" || true
    if [[ $status == 0 ]]; then
        result=PASS
        passed=$((passed + 1))
    else
        result=FAIL
        failed=$((failed + 1))
        say "    exit status $status; the last lines of $(basename "$out"):"
        tail -n 25 "$out" | sed 's/^/      | /' | tee -a "$LOG"
    fi
    say "    $result in ${took}s"
    summary+=("$(printf '%-4s %5ss  %s' "$result" "$took" "$name")")
done
say ""
say "Summary (seconds per step):"
for line in "${summary[@]}"; do say "  $line"; done
say "$passed passed, $failed failed, in $((SECONDS - start))s"
if [[ $failed == 0 ]]; then say "REHEARSAL PASSED"; else say "REHEARSAL FAILED"; fi
sync
[[ $failed == 0 ]]
