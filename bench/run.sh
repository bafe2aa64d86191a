#!/usr/bin/env bash
# Benchmarks tailfence against a direct connection and other proxies, all
# measured in the same run, and prints one table of ratios.
#
#   sudo bench/run.sh [--quick]
#
#   HEV_SRC=DIR     a hev-socks5-server source tree with its submodules
#                   (src/core, third-part/*). It is copied into the run's
#                   temporary directory, built there and measured as a peer;
#                   nothing of it enters this tree. Without it the hev row
#                   says "not built".
#   TF_OTHER=FILE   another tailfence binary (say, the previous commit's, or
#                   an experiment), measured in front of tailscaled beside
#                   this one, in the same interleaved rounds; TF_OTHER_LABEL
#                   names its row.
#   ROUNDS=N        connection-rate rounds (3, or 1 with --quick).
#   ROWS=REGEX      only the rows whose label matches, and the baselines.
#
# Everything runs inside a private network namespace with only loopback up
# (bench/lib.sh): two origins (bench/loadgen serve for streams, loadgen hold
# for short exchanges and idle tunnels), tailfence with upstream "direct"
# (splice and copy relays), microsocks, hev-socks5-server, tailscaled
# (userspace, not logged in) with its SOCKS5 and its HTTP CONNECT listener,
# and tailfence in front of each of tailscaled's listeners.
#
# Per path: one bulk stream each way; the connection rate (64 clients, the
# median of 3 interleaved rounds, every other one in reverse order) and the proxy's own CPU time per
# connection (user + system from /proc/PID/stat); latency open-loop at
# 1,000 new connections/s (p50, p99, the medians of 3 interleaved rounds);
# the resident memory per idle tunnel of a fresh instance of the proxy with
# thousands held open. Ratios are to the direct connection of
# the same run, and for the paths through tailscaled to tailscaled's own
# SOCKS5 alone. Not part of the tests.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

quick=0
[ "${1:-}" = --quick ] && quick=1
rounds=${ROUNDS:-}
if [ $quick = 1 ]; then
	STREAM_BYTES=$((256 * 1024 * 1024)); RATE_N=4000; ROUNDS=1
	LAT_SECONDS=3; IDLE_WANT=2000
else
	STREAM_BYTES=$((1024 * 1024 * 1024)); RATE_N=20000; ROUNDS=3
	LAT_SECONDS=5; IDLE_WANT=10000
fi
ROUNDS=${rounds:-$ROUNDS}
RATE_CLIENTS=64
LAT_RATE=1000
TSBIN=${TSBIN:-/opt/tfgo/bin}
TICK=$(getconf CLK_TCK)

# Idle tunnels: tailfence and microsocks hold two descriptors per tunnel,
# tailscaled and hev-socks5-server six (two sockets and a pipe each way for
# splice). The hard limit, which only CAP_SYS_RESOURCE may raise, caps how
# many one process can hold (past it tailscaled's SOCKS5 listener fails its
# accept and tailscaled exits). Every proxy is measured at IDLE_ALL, which
# all can hold, and the two-descriptor ones also at IDLE_N.
nofile=$(ulimit -Hn)
IDLE_N=$IDLE_WANT IDLE_ALL=$IDLE_WANT
if [ "$nofile" != unlimited ]; then
	[ $(((nofile - 200) / 2)) -lt "$IDLE_N" ] && IDLE_N=$(((nofile - 200) / 2))
	[ $(((nofile - 2000) / 6 / 1000 * 1000)) -lt "$IDLE_ALL" ] &&
		IDLE_ALL=$(((nofile - 2000) / 6 / 1000 * 1000))
fi
# Many short connections: ephemeral ports of this namespace only.
sysctl -qw net.ipv4.ip_local_port_range="10000 65000" || true

STREAM_ORIGIN=127.0.0.1:7001
ORIGIN=127.0.0.1:7002
"$LG" serve 7001 & pids+=($!)
"$LG" hold 7002 & pids+=($!)
wait_port 7001
wait_port 7002

# The rows: label, proxy ("-": direct), the PID whose CPU and memory count,
# the baseline (direct or tailscaled), the idle measurements (none, all:
# IDLE_ALL tunnels, both: IDLE_ALL and IDLE_N).
labels=() proxies=() rpids=() bases=() idles=()
add_row() {
	# ROWS (a regular expression) keeps only the matching rows and the baselines.
	if [ -n "${ROWS:-}" ] && [ "$1" != direct ] && [ "$1" != "tailscaled SOCKS5" ] &&
		! [[ $1 =~ $ROWS ]]; then
		return 0
	fi
	labels+=("$1"); proxies+=("$2"); rpids+=("$3"); bases+=("$4"); idles+=("$5")
}
add_row direct - - direct none

start_tailfence() { # binary port upstream [flags...]
	local bin=$1 port=$2 up=$3
	shift 3
	"$bin" --listen "127.0.0.1:$port" --upstream "$up" --lift-guard loopback \
		--allow 127.0.0.0/8 --audit-log "$work/audit-$port.jsonl" \
		--max-connections 10000 --log-level error "$@" \
		>>"$work/tailfence.log" 2>&1 &
	pids+=($!)
	wait_port "$port"
}

start_microsocks() { # port
	microsocks -i 127.0.0.1 -p "$1" >/dev/null 2>&1 & pids+=($!)
	wait_port "$1"
}
hev=
start_hev() { # port
	sed "s/^  port: .*/  port: $1/" "$work/hev.yml" >"$work/hev-$1.yml"
	"$hev" "$work/hev-$1.yml" >/dev/null 2>&1 & pids+=($!)
	wait_port "$1"
}
start_tailscaled() { # socks5-port http-port
	"$TSBIN/tailscaled" --tun=userspace-networking --state=mem: --no-logs-no-support \
		--socket="$work/ts-$1.sock" --statedir="$work/ts-$1" \
		--socks5-server="127.0.0.1:$1" --outbound-http-proxy-listen="127.0.0.1:$2" \
		>"$work/tailscaled-$1.log" 2>&1 & pids+=($!)
	wait_port "$1"
	wait_port "$2"
}

start_tailfence "$TF" 7080 direct; add_row "tailfence" 127.0.0.1:7080 "$!" direct both
start_tailfence "$TF" 7082 direct --relay copy
add_row "tailfence --relay copy" 127.0.0.1:7082 "$!" direct none
start_tailfence "$TF" 7086 direct --threads 1
add_row "tailfence --threads 1" 127.0.0.1:7086 "$!" direct none

if command -v microsocks >/dev/null; then
	start_microsocks 7090
	add_row microsocks 127.0.0.1:7090 "$!" direct both
else
	add_row "microsocks (not installed)" none - direct none
fi

if [ -n "${HEV_SRC:-}" ] && [ -f "$HEV_SRC/Makefile" ]; then
	cp -a "$HEV_SRC" "$work/hev"
	if make -C "$work/hev" -j"$(nproc)" >"$work/hev-build.log" 2>&1; then
		hev=$work/hev/bin/hev-socks5-server
		cat >"$work/hev.yml" <<-EOF
		main:
		  workers: 2
		  port: 7091
		  listen-address: '127.0.0.1'
		misc:
		  log-level: error
		  limit-nofile: $nofile
		EOF
		start_hev 7091
		add_row "hev-socks5-server (2 workers)" 127.0.0.1:7091 "$!" direct all
	else
		tail -5 "$work/hev-build.log" >&2
		add_row "hev-socks5-server (build failed)" none - direct none
	fi
else
	add_row "hev-socks5-server (HEV_SRC not set)" none - direct none
fi

tspid=-
if [ -x "$TSBIN/tailscaled" ]; then
	start_tailscaled 7055 7056
	tspid=$!
	add_row "tailscaled SOCKS5" 127.0.0.1:7055 "$tspid" direct all
	add_row "tailscaled HTTP CONNECT" http://127.0.0.1:7056 "$tspid" direct none
	start_tailfence "$TF" 7081 socks5://127.0.0.1:7055
	add_row "tailfence + tailscaled SOCKS5" 127.0.0.1:7081 "$!" tailscaled all
	start_tailfence "$TF" 7083 http://127.0.0.1:7056
	add_row "tailfence + tailscaled HTTP" 127.0.0.1:7083 "$!" tailscaled none
	if [ -n "${TF_OTHER:-}" ]; then
		start_tailfence "$TF_OTHER" 7084 socks5://127.0.0.1:7055
		add_row "${TF_OTHER_LABEL:-TF_OTHER} + tailscaled SOCKS5" 127.0.0.1:7084 "$!" tailscaled none
	fi
else
	add_row "tailscaled (not found in $TSBIN)" none - direct none
fi
rows=${#labels[@]}

# Echoes the figure of one loadgen run.
figure() { sed -nE 's/.*"'"$1"'":([0-9.]+).*/\1/p'; }
# User + system clock ticks of a process so far.
cpu_ticks() { { sed -E 's/.*\) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; } 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
via() { [ "${proxies[$1]}" = - ] || echo "${proxies[$1]}"; }

# The rows in the order of round r: forward, then backward, and so on, so
# that no row always follows the same one (what ran just before moves a
# row's figure: by up to a fifth here).
order() { if (($1 % 2)); then seq $((rows - 1)) -1 0; else seq 0 $((rows - 1)); fi; }

declare -A stream rate cpu p50 p99 idle tscpu
phase() { echo "[$(date +%T)] $*" >&2; }

# A proxy that blocks on one direction while the other fills up (microsocks
# copies with blocking writes) can stall an echo stream for good: bounded.
phase "streams, $((STREAM_BYTES / 1024 / 1024)) MiB each way"
for ((i = 0; i < rows; i++)); do
	[ "${proxies[$i]}" = none ] && continue
	# shellcheck disable=SC2046
	stream[$i]=$(timeout 60 "$LG" stream $STREAM_ORIGIN $(via "$i") $STREAM_BYTES |
		figure mib_per_second) || stream[$i]=stalled
done

phase "connection rate, $ROUNDS rounds of $RATE_N connections x $RATE_CLIENTS clients"
declare -A ticks rates
for ((r = 0; r < ROUNDS; r++)); do
	for i in $(order "$r"); do
		[ "${proxies[$i]}" = none ] && continue
		pid=${rpids[$i]}
		[ "$pid" != - ] && c0=$(cpu_ticks "$pid")
		[ "$tspid" != - ] && t0=$(cpu_ticks "$tspid")
		# shellcheck disable=SC2046
		out=$(timeout 120 "$LG" rate $ORIGIN $(via "$i") $RATE_N $RATE_CLIENTS) || out=
		v=$(echo "$out" | figure per_second)
		rates[$i]+="${v:-0} "
		if [ "$pid" != - ]; then
			ticks[$i]=$(( ${ticks[$i]:-0} + $(cpu_ticks "$pid") - c0 ))
		fi
		if [ "$tspid" != - ] && [ "${bases[$i]}" = tailscaled ]; then
			tscpu[$i]=$(( ${tscpu[$i]:-0} + $(cpu_ticks "$tspid") - t0 ))
		fi
		[ -n "$v" ] || echo "rate failed: ${labels[$i]}" >&2
	done
done
for ((i = 0; i < rows; i++)); do
	[ "${proxies[$i]}" = none ] && continue
	rate[$i]=$(echo "${rates[$i]}" | tr ' ' '\n' | grep . | median)
	if [ -n "${ticks[$i]:-}" ]; then
		cpu[$i]=$(awk -v t="${ticks[$i]}" -v hz="$TICK" -v n=$((RATE_N / RATE_CLIENTS * RATE_CLIENTS * ROUNDS)) \
			'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
	fi
	if [ -n "${tscpu[$i]:-}" ]; then
		tscpu[$i]=$(awk -v t="${tscpu[$i]}" -v hz="$TICK" -v n=$((RATE_N / RATE_CLIENTS * RATE_CLIENTS * ROUNDS)) \
			'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
	fi
done

phase "latency, open loop at $LAT_RATE new connections/s, $ROUNDS rounds of $LAT_SECONDS s"
declare -A p50s p99s
for ((r = 0; r < ROUNDS; r++)); do
	for i in $(order "$r"); do
		[ "${proxies[$i]}" = none ] && continue
		# shellcheck disable=SC2046
		out=$(timeout $((LAT_SECONDS + 30)) "$LG" latency $ORIGIN $(via "$i") $LAT_RATE $LAT_SECONDS) ||
			echo "latency: failures through ${labels[$i]}: $out" >&2
		p50s[$i]+="$(echo "$out" | figure p50_us) "
		p99s[$i]+="$(echo "$out" | figure p99_us) "
	done
done
for ((i = 0; i < rows; i++)); do
	[ "${proxies[$i]}" = none ] && continue
	p50[$i]=$(echo "${p50s[$i]}" | tr ' ' '\n' | grep . | median)
	p99[$i]=$(echo "${p99s[$i]}" | tr ' ' '\n' | grep . | median)
done

# Idle tunnels go through a fresh instance of the row's proxy (ports
# 7100-7101), so that memory the earlier phases left in its heap does not
# hide what the tunnels take. Sets ipid (the process whose memory counts)
# and iproxy.
idle_start() { # row
	local label=${labels[$1]}
	case $label in
	tailfence) start_tailfence "$TF" 7100 direct; ipid=$! ;;
	microsocks) start_microsocks 7100; ipid=$! ;;
	hev-socks5-server*) start_hev 7100; ipid=$! ;;
	"tailscaled SOCKS5") start_tailscaled 7100 7101; ipid=$! ;;
	"tailfence + tailscaled SOCKS5")
		start_tailscaled 7102 7103
		start_tailfence "$TF" 7100 socks5://127.0.0.1:7102
		ipid=$!
		;;
	*) return 1 ;;
	esac
	iproxy=127.0.0.1:7100
}
idle_stop() { # pids
	kill "$@" 2>/dev/null || true
	wait "$@" 2>/dev/null || true
}
# Holds want tunnels through a fresh instance for row i; echoes its resident
# memory growth per tunnel in KB, or why there is none.
idle_kb() { # row want
	local fifo=$work/idle.fifo out=$work/idle.out before after lp n
	local first=${#pids[@]}
	if ! idle_start "$1"; then
		idle_res="–"
		return
	fi
	# warm: what the first connections set up once is not per tunnel
	"$LG" rate $ORIGIN "$iproxy" 256 4 >/dev/null || true
	sleep 0.5
	rm -f "$fifo" "$out"
	mkfifo "$fifo"
	before=$(rss_kb "$ipid")
	"$LG" idle $ORIGIN "$iproxy" "$2" <"$fifo" >"$out" &
	lp=$!
	exec 7>"$fifo"
	for _ in $(seq 1200); do [ -s "$out" ] && break; sleep 0.1; done
	sleep 1
	after=$(rss_kb "$ipid")
	exec 7>&-
	wait "$lp" || true
	n=$(figure open <"$out")
	if [ "${n:-0}" = "$2" ] && [ -n "$before" ] && [ -n "$after" ]; then
		idle_res=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')
	else
		idle_res="failed (${n:-0} of $2 open)"
	fi
	idle_stop "${pids[@]:$first}"
}
declare -A idle_big
phase "idle tunnels, $IDLE_ALL through each proxy, $IDLE_N through those holding two descriptors per tunnel"
for ((i = 0; i < rows; i++)); do
	case ${idles[$i]} in
	all)
		idle_kb "$i" "$IDLE_ALL"; idle[$i]=$idle_res
		;;
	both)
		idle_kb "$i" "$IDLE_ALL"; idle[$i]=$idle_res
		idle_kb "$i" "$IDLE_N"; idle_big[$i]=$idle_res
		;;
	esac
done

# ---- the table ----
ratio() { # value base
	awk -v v="$1" -v b="$2" 'BEGIN { if (v ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0)
		printf "%.2f", v / b; else printf "–" }'
}
ts_i=-1
for ((i = 0; i < rows; i++)); do
	[ "${labels[$i]}" = "tailscaled SOCKS5" ] && ts_i=$i
done
echo
echo "tailfence benchmark, $(date -u +%F), $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stream $((STREAM_BYTES / 1024 / 1024)) MiB each way; connection rate median of $ROUNDS x $RATE_N connections, $RATE_CLIENTS clients;"
echo "latency open loop $LAT_RATE/s, median of $ROUNDS x $LAT_SECONDS s; idle tunnels: $IDLE_ALL and $IDLE_N (open file limit $nofile)."
echo "Each ratio (x) is to the baseline column of the same run; absolute figures are this machine's."
echo
echo "| path | baseline | stream MiB/s | x | conn/s | x | p50 µs | x | p99 µs | x | p99 over direct µs | CPU µs/conn | idle KB/tunnel at $IDLE_ALL | at $IDLE_N |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for ((i = 0; i < rows; i++)); do
	if [ "${proxies[$i]}" = none ]; then
		echo "| ${labels[$i]} | | not measured | | | | | | | | | | | |"
		continue
	fi
	b=0
	[ "${bases[$i]}" = tailscaled ] && [ $ts_i -ge 0 ] && b=$ts_i
	base=${bases[$i]}
	[ "$base" = tailscaled ] && base="tailscaled SOCKS5"
	over=$(awk -v v="${p99[$i]:-}" -v d="${p99[0]:-}" 'BEGIN { if (v != "" && d != "") printf "%d", v - d; else printf "–" }')
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
		"${labels[$i]}" "$base" \
		"${stream[$i]:-–}" "$(ratio "${stream[$i]:-}" "${stream[$b]:-}")" \
		"${rate[$i]:-–}" "$(ratio "${rate[$i]:-}" "${rate[$b]:-}")" \
		"${p50[$i]:-–}" "$(ratio "${p50[$i]:-}" "${p50[$b]:-}")" \
		"${p99[$i]:-–}" "$(ratio "${p99[$i]:-}" "${p99[$b]:-}")" \
		"$over" "${cpu[$i]:-–}" "${idle[$i]:-–}" "${idle_big[$i]:-–}"
done
echo
for ((i = 0; i < rows; i++)); do
	if [ -n "${tscpu[$i]:-}" ]; then
		echo "tailscaled's own CPU µs/conn while measuring \"${labels[$i]}\": ${tscpu[$i]}"
	fi
done
