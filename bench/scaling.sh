#!/usr/bin/env bash
# How tailfence's connection rate scales with its event loops (--threads)
# and with the CPUs it may use (taskset), measured in one run.
#
#   sudo bench/scaling.sh [--quick]
#
#   ROUNDS=N     interleaved rounds (5, or 2 with --quick); the median counts
#   LOOPS="1 2"  the --threads values measured
#
# For every pair of (event loops, CPUs tailfence may run on: the first one,
# or all), in rounds that alternate their order: the new-connection rate
# of 64 clients through tailfence (upstream "direct", the connect, one-byte
# echo, close exchange of bench/run.sh) and tailfence's own CPU time per
# connection (user + system from /proc/PID/stat). Ratios are to one loop on
# all CPUs, the rate in the same round. The load generator and the origin
# are not pinned: on a small machine they share the CPUs with tailfence,
# and the table says how many there are. Not part of the tests.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

quick=0
[ "${1:-}" = --quick ] && quick=1
if [ $quick = 1 ]; then RATE_N=4000; ROUNDS=${ROUNDS:-2}; else RATE_N=20000; ROUNDS=${ROUNDS:-5}; fi
CLIENTS=64
LOOPS=${LOOPS:-1 2}
TICK=$(getconf CLK_TCK)
NCPU=$(nproc)
sysctl -qw net.ipv4.ip_local_port_range="10000 65000" || true

ORIGIN=127.0.0.1:7002
"$LG" hold 7002 & pids+=($!)
wait_port 7002

figure() { sed -nE 's/.*"'"$1"'":([0-9.]+).*/\1/p'; }
cpu_ticks() { sed -E 's/.*\) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# The configurations: label, --threads, CPU list for taskset.
labels=() threads=() cpus=() tfpid=() ports=()
port=7200
for n in $LOOPS; do
	for c in all one; do
		list=$([ $c = all ] && echo "0-$((NCPU - 1))" || echo 0)
		"$TF" --listen "127.0.0.1:$port" --upstream direct --lift-guard loopback \
			--allow 127.0.0.0/8 --audit-log "$work/audit-$port.jsonl" \
			--max-connections 10000 --log-level error --threads "$n" \
			>>"$work/tailfence.log" 2>&1 &
		pid=$!
		pids+=("$pid")
		wait_port "$port"
		taskset -a -p -c "$list" "$pid" >/dev/null
		labels+=("$n loop$([ "$n" = 1 ] || echo s), $([ $c = all ] && echo "$NCPU CPUs" || echo "1 CPU")")
		threads+=("$n"); cpus+=("$list"); tfpid+=("$pid"); ports+=("$port")
		port=$((port + 1))
	done
done
rows=${#labels[@]}
order() { if (($1 % 2)); then seq $((rows - 1)) -1 0; else seq 0 $((rows - 1)); fi; }

declare -A rates ticks ratio
for ((r = 0; r < ROUNDS; r++)); do
	echo "[$(date +%T)] round $((r + 1)) of $ROUNDS" >&2
	declare -A this=()
	for i in $(order "$r"); do
		c0=$(cpu_ticks "${tfpid[$i]}")
		v=$("$LG" rate $ORIGIN "127.0.0.1:${ports[$i]}" $RATE_N $CLIENTS | figure per_second)
		ticks[$i]=$(( ${ticks[$i]:-0} + $(cpu_ticks "${tfpid[$i]}") - c0 ))
		rates[$i]+="$v "
		this[$i]=$v
	done
	# 0 is one loop on all CPUs: the baseline of the round
	for ((i = 0; i < rows; i++)); do
		ratio[$i]+="$(awk -v a="${this[$i]}" -v b="${this[0]}" 'BEGIN { printf "%.3f", a / b }') "
	done
done

n_conn=$((RATE_N / CLIENTS * CLIENTS * ROUNDS))
printf '\n%d CPUs; %d clients, %d connections per round, %d rounds (medians)\n\n' \
	"$NCPU" "$CLIENTS" $((RATE_N / CLIENTS * CLIENTS)) "$ROUNDS"
printf '| tailfence | new conn/s | ratio to 1 loop, %d CPUs | CPU µs per connection |\n' "$NCPU"
printf '|---|---:|---:|---:|\n'
for ((i = 0; i < rows; i++)); do
	rate=$(echo "${rates[$i]}" | tr ' ' '\n' | grep . | median)
	rt=$(echo "${ratio[$i]}" | tr ' ' '\n' | grep . | median)
	us=$(awk -v t="${ticks[$i]}" -v hz="$TICK" -v n="$n_conn" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
	printf '| %s | %s | %s | %s |\n' "${labels[$i]}" "${rate%.*}" "$rt" "$us"
done
