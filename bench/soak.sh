#!/usr/bin/env bash
# soak.sh [SECONDS]: tailfence under mixed load with faults for SECONDS
# (default 600), built with AddressSanitizer + UBSan + LeakSanitizer, in a
# private network namespace with only loopback. See bench/soak.py for what
# runs and what is reported. TAILFENCE_THREADS sets the daemons' event loops
# (default: one per CPU). Root. Not part of the tests (it takes long).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${TAILFENCE_BENCH_NS:-}" != 1 ]; then
	exec unshare --net --mount env TAILFENCE_BENCH_NS=1 bash "$0" "$@"
fi
ip link set lo up
build=${SOAK_BUILD:-$here/build-soak}
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$here" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
meson compile -C "$build" >/dev/null
TAILFENCE_BIN=$build/tailfence exec /usr/bin/python3 "$here/bench/soak.py" "${1:-600}"
