#!/usr/bin/env bash
# How long a good login (credentials not cached) waits while a burst of bad
# logins floods the daemon, as a ratio to the same login with no flood, for
# this tree and for an earlier one (default: main) built in the same run.
#
#   sudo bench/bench_login_flood.sh [--rounds N] [--flood N]
#   BEFORE_REF=fe04e7f sudo bench/bench_login_flood.sh
#
# Runs inside a private network namespace with only loopback up; the client
# is bench/login_flood.py (Debian's python3, standard library only). Not a
# test: tests never assert on timing.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

ref=${BEFORE_REF:-main}
before=$work/before
mkdir -p "$before"
git -C "$here" archive "$ref" | tar -x -C "$before"
meson setup "$before/build" "$before" --buildtype=release >/dev/null
meson compile -C "$before/build" tailfence:executable >/dev/null

/usr/bin/python3 "$here/bench/login_flood.py" "$@" \
	"before=$before/build/tailfence" "after=$TF"
