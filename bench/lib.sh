# shellcheck shell=bash
# bench/lib.sh: what every benchmark script shares. Sourced, not run.
#
# bench_setup "$0" "$@": re-executes the script inside a private network
# namespace with only loopback up (so nothing can leave the machine), builds
# the release build with the benchmark programs, and sets
#   here (the source tree), build, LG (bench/loadgen), TF (tailfence),
#   work (a temporary directory removed on exit), pids (killed on exit).
# wait_port PORT: waits until 127.0.0.1:PORT accepts.

# shellcheck disable=SC2034  # the variables are the sourcing script's
bench_setup() {
	local script=$1
	shift
	here=$(cd "$(dirname "$script")/.." && pwd)
	if [ "${TAILFENCE_BENCH_NS:-}" != 1 ]; then
		exec unshare --net env TAILFENCE_BENCH_NS=1 bash "$script" "$@"
	fi
	ip link set lo up

	build=${BENCH_BUILD:-$here/build-bench}
	if [ ! -d "$build" ]; then
		meson setup "$build" "$here" -Dbench=true --buildtype=release >/dev/null
	fi
	meson compile -C "$build" >/dev/null
	LG=$build/bench/loadgen
	TF=$build/tailfence

	work=$(mktemp -d)
	pids=()
	trap bench_cleanup EXIT
}

bench_cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "port $1 did not open" >&2
	return 1
}
