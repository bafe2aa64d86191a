#!/usr/bin/env bash
# Profiles tailfence's connection path: what one connection costs it.
#
#   sudo bench/profile.sh [--quick]
#   STEPS="strace perf callgrind"   the steps to run (all three by default)
#
# tailfence (upstream direct, audit to a file) in a private network
# namespace, driven by bench/loadgen rate (connect, SOCKS5 greeting and
# CONNECT, a 1-byte echo, close) against loadgen's one-thread echo origin:
#
#   1. strace -c -f: system calls per connection, by name (all threads).
#   2. perf record (cpu-clock, call graphs): where the time goes, user and
#      kernel, top symbols by self time.
#   3. valgrind --tool=callgrind: calls per connection of the functions that
#      create events and timers, allocate, read the clock, and the share of
#      instructions spent building and printing audit records.
#
# Each tool that is missing is skipped with a line saying so. Figures are per
# connection of that step's run; the tools slow the daemon down, so none of
# this is a rate. Not part of the tests.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

quick=0
[ "${1:-}" = --quick ] && quick=1
if [ $quick = 1 ]; then
	N_STRACE=2000; N_PERF=5000; N_CG=500
else
	N_STRACE=10000; N_PERF=40000; N_CG=2000
fi
CLIENTS=8
STEPS=" ${STEPS:-strace perf callgrind} "
ORIGIN=127.0.0.1:7002
"$LG" hold 7002 & pids+=($!)
wait_port 7002

tf_args=(--listen 127.0.0.1:7080 --upstream direct --lift-guard loopback
	--allow 127.0.0.0/8 --audit-log "$work/audit.jsonl" --log-level error)

start_tf() { # [wrapper...]
	"$@" "$TF" "${tf_args[@]}" >>"$work/tailfence.log" 2>&1 &
	tfpid=$!
	pids+=("$tfpid")
	wait_port 7080
	# warm: the first connections set up what later ones reuse
	"$LG" rate $ORIGIN 127.0.0.1:7080 200 4 >/dev/null
}
stop_tf() {
	kill "$tfpid" 2>/dev/null || true
	wait "$tfpid" 2>/dev/null || true
	rm -f "$work/audit.jsonl"
}
conns() { # loadgen rate output -> connections made
	sed -nE 's/.*"ok":([0-9]+).*/\1/p'
}

echo "tailfence connection-path profile, $(date -u +%F), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "each connection: connect, SOCKS5 greeting + CONNECT (IPv4), 1-byte echo, close; upstream direct; audit to a file"

# ---- 1. system calls ----
echo
if [[ $STEPS != *" strace "* ]]; then
	:
elif command -v strace >/dev/null; then
	start_tf
	strace -c -f -q -o "$work/strace.txt" -p "$tfpid" &
	spid=$!
	sleep 1	# attached to every thread
	n=$("$LG" rate $ORIGIN 127.0.0.1:7080 $N_STRACE $CLIENTS | conns)
	sleep 0.5
	kill -INT $spid
	wait $spid 2>/dev/null || true
	stop_tf
	echo "## system calls per connection (strace -c -f, $n connections, all threads)"
	echo
	echo "| syscall | per connection |"
	echo "|---|---:|"
	awk -v n="$n" '
		$1 ~ /^[0-9.]+$/ && NF >= 5 {
			name = $NF; calls = $4
			if (name == "total") { total = calls; next }
			printf "%s %.2f\n", name, calls / n
		}
		END { printf "TOTAL %.2f\n", total / n }' "$work/strace.txt" |
		sort -k2 -rn | awk '$2 >= 0.01 { printf "| %s | %s |\n", $1, $2 }'
else
	echo "strace not installed: no system call counts"
fi

# ---- 2. perf ----
echo
if [[ $STEPS != *" perf "* ]]; then
	:
elif command -v perf >/dev/null &&
	perf record -q -e cpu-clock -o "$work/probe.data" true >/dev/null 2>&1; then
	start_tf
	perf record -q -e cpu-clock -F 4999 -g -o "$work/perf.data" -p "$tfpid" \
		>/dev/null 2>&1 &
	ppid=$!
	sleep 0.5
	n=$("$LG" rate $ORIGIN 127.0.0.1:7080 $N_PERF 64 | conns)
	kill -INT $ppid
	wait $ppid 2>/dev/null || true
	stop_tf
	echo "## where tailfence's time goes (perf, cpu-clock, $n connections, 64 clients)"
	echo
	perf report -i "$work/perf.data" --stdio --no-children -g none --sort dso -t ';' \
		2>/dev/null | awk -F';' '/^ *[0-9.]+%/ && n++ < 8 {
			gsub(/ +/, "", $1); gsub(/^ +| +$/, "", $2); printf "- %s %s\n", $1, $2 }'
	echo
	echo "| self | symbol | object |"
	echo "|---:|---|---|"
	perf report -i "$work/perf.data" --stdio --no-children -g none \
		--sort symbol,dso -t ';' 2>/dev/null |
		awk -F';' '/^ *[0-9.]+%/ && n++ < 25 {
			gsub(/ +/, "", $1); gsub(/^ +| +$/, "", $2); gsub(/^ +| +$/, "", $3)
			printf "| %s | %s | %s |\n", $1, $2, $3 }'
else
	echo "perf not usable here: no time profile"
fi

# ---- 3. callgrind ----
echo
if [[ $STEPS != *" callgrind "* ]]; then
	:
elif command -v valgrind >/dev/null; then
	start_tf valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" -q
	# Counted from here: start-up and warm-up are zeroed, the run is dumped.
	callgrind_control -z "$tfpid" >/dev/null
	n=$("$LG" rate $ORIGIN 127.0.0.1:7080 $N_CG 4 | conns)
	callgrind_control -d "$tfpid" >/dev/null
	stop_tf
	out=$work/cg.out.1
	echo "## calls per connection (callgrind, $n connections)"
	echo
	/usr/bin/python3 "$here/bench/callgrind_calls.py" "$out" "$n"
else
	echo "valgrind not installed: no call counts"
fi
