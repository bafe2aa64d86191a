#!/usr/bin/env bash
# Benchmarks tailfence against a direct connection, measured in the same run.
#
#   sudo bench/run.sh [--quick]
#
# Everything runs inside a private network namespace with only loopback up:
# an echo origin (bench/loadgen serve), tailfence with upstream "direct",
# tailscaled (userspace, not logged in), tailfence in front of tailscaled,
# and microsocks as another SOCKS5 proxy for comparison. Figures are ratios
# to the direct connection of the same run; absolute numbers depend on the
# machine. Not part of the tests.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

quick=0
[ "${1:-}" = --quick ] && quick=1
if [ $quick = 1 ]; then
	STREAM_BYTES=$((256 * 1024 * 1024)); RATE_N=4000
else
	STREAM_BYTES=$((1024 * 1024 * 1024)); RATE_N=20000
fi
THREADS=4
TSBIN=${TSBIN:-/opt/tfgo/bin}


ORIGIN=127.0.0.1:7001
"$LG" serve 7001 & pids+=($!)
wait_port 7001

"$TF" --listen 127.0.0.1:7080 --upstream direct --lift-guard loopback \
	--allow 127.0.0.0/8 --audit-log "$work/audit-direct.jsonl" --log-level warn \
	& pids+=($!)
wait_port 7080

"$TF" --listen 127.0.0.1:7082 --upstream direct --lift-guard loopback \
	--allow 127.0.0.0/8 --audit-log "$work/audit-copy.jsonl" --log-level warn \
	--relay copy & pids+=($!)
wait_port 7082

have_ts=0
if [ -x "$TSBIN/tailscaled" ]; then
	"$TSBIN/tailscaled" --tun=userspace-networking --state=mem: --no-logs-no-support \
		--socket="$work/ts.sock" --statedir="$work/ts" \
		--socks5-server=127.0.0.1:7055 >"$work/tailscaled.log" 2>&1 & pids+=($!)
	wait_port 7055
	"$TF" --listen 127.0.0.1:7081 --upstream socks5://127.0.0.1:7055 \
		--lift-guard loopback --allow 127.0.0.0/8 \
		--audit-log "$work/audit-ts.jsonl" --log-level warn & pids+=($!)
	wait_port 7081
	have_ts=1
fi
have_ms=0
if command -v microsocks >/dev/null; then
	microsocks -i 127.0.0.1 -p 7090 >/dev/null 2>&1 & pids+=($!)
	wait_port 7090
	have_ms=1
fi

# Echoes the figure of one loadgen run.
figure() { sed -E 's/.*"'"$1"'":([0-9.]+).*/\1/'; }

# A proxy that blocks on one direction while the other fills up (microsocks
# copies with blocking writes) can stall an echo stream for good: bounded.
run_pair() { # label proxy-or-empty
	local s r
	# shellcheck disable=SC2086
	s=$(timeout 60 "$LG" stream $ORIGIN $2 $STREAM_BYTES | figure mib_per_second) || s=stalled
	# shellcheck disable=SC2086
	r=$(timeout 120 "$LG" rate $ORIGIN $2 $RATE_N $THREADS | figure per_second) || r=failed
	echo "$1 $s $r"
}

results=$(
	run_pair direct ""
	run_pair tailfence 127.0.0.1:7080
	run_pair tailfence--relay-copy 127.0.0.1:7082
	[ $have_ms = 1 ] && run_pair microsocks 127.0.0.1:7090
	[ $have_ts = 1 ] && run_pair tailscaled 127.0.0.1:7055
	[ $have_ts = 1 ] && run_pair tailfence+tailscaled 127.0.0.1:7081
	true
)

echo "tailfence benchmark: $(nproc) cores, stream $((STREAM_BYTES / 1024 / 1024)) MiB each way, $RATE_N connections x $THREADS threads"
echo "$results" | awk '
	function cell(v, base, unit) {
		if (v !~ /^[0-9.]+$/) return sprintf("%14s %-14s", v, "");
		return sprintf("%9.1f %-4s (%.2fx direct)", v, unit, v / base);
	}
	NR == 1 { bs = $2; br = $3 }
	{ printf "%-24s stream %s   new connections %s\n", $1,
		cell($2, bs, "MiB/s"), cell($3, br, "/s") }'
