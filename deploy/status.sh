#!/usr/bin/env bash
# `make status`: is tor reachable, are both onion services published, do both apps answer on
# their sockets, has the data folder room (free space against TIPBOX_FREE_SPACE_RESERVE, read
# from the apps' settings file), are the newsroom keys and the digest right, are security
# updates pending, is a reboot needed? Plain words, exit status 1 if anything is wrong (see
# `tipbox status`).
source "$(dirname "$0")/lib.sh"
need_root status
[[ -x $VENV/bin/tipbox ]] || die "Tipbox is not installed here: run 'sudo make deploy'"
tipbox status
