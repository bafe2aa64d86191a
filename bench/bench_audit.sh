#!/usr/bin/env bash
# Connection rate with the audit trail on (file sink + HMAC chain) as a ratio
# to audit off (records to /dev/null, no chain), measured in the same run,
# alternating the two daemons over several rounds.
#
#   sudo bench/bench_audit.sh [--quick]
#
# Runs inside a private network namespace with only loopback up; uses
# bench/loadgen (meson -Dbench=true) as client and echo origin. Not a test.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

N=20000; ROUNDS=5; THREADS=4
[ "${1:-}" = --quick ] && { N=4000; ROUNDS=3; }


head -c 32 /dev/urandom | base64 >"$work/audit.key"
chmod 600 "$work/audit.key"
# The audit file goes where the operator would put it: a real directory
# (not tmpfs) unless BENCH_AUDIT_DIR says otherwise.
adir=${BENCH_AUDIT_DIR:-$(mktemp -d /var/tmp/tf-bench-audit.XXXXXX)}

ORIGIN=127.0.0.1:7201
"$LG" serve 7201 & pids+=($!)
wait_port 7201
common=(--upstream direct --lift-guard loopback --allow 127.0.0.0/8 --log-level warn)
"$TF" --listen 127.0.0.1:7280 "${common[@]}" --audit-log /dev/null & pids+=($!)
"$TF" --listen 127.0.0.1:7281 "${common[@]}" --audit-log "$adir/audit.jsonl" \
	--audit-hmac-key "$work/audit.key" & pids+=($!)
on_pid=$!
wait_port 7280
wait_port 7281

figure() { sed -E 's/.*"per_second":([0-9.]+).*/\1/'; }
off=0; on=0
for r in $(seq "$ROUNDS"); do
	a=$("$LG" rate $ORIGIN 127.0.0.1:7280 $N $THREADS | figure)
	b=$("$LG" rate $ORIGIN 127.0.0.1:7281 $N $THREADS | figure)
	echo "round $r: audit off $a/s, audit on (file + chain) $b/s"
	off=$(echo "$off + $a" | bc -l); on=$(echo "$on + $b" | bc -l)
done
kill "$on_pid"; wait "$on_pid" || true	# flushes the trail
records=$(wc -l <"$adir/audit.jsonl")
[ -z "${BENCH_AUDIT_DIR:-}" ] && rm -rf "$adir"
awk -v off="$off" -v on="$on" -v n="$ROUNDS" -v rec="$records" -v c="$N" -v t="$THREADS" 'BEGIN {
	printf "audit benchmark: %d rounds x %d connections x %d threads; %d records written\n", n, c, t, rec
	printf "audit off %.0f conn/s, audit on (file sink, HMAC chain) %.0f conn/s: ratio %.3f\n",
		off / n, on / n, on / off }'
