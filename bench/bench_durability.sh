#!/usr/bin/env bash
# What audit.durability costs: connection rate and p99 connection time with
# --audit-durability queued, written and synced, as ratios to queued,
# measured in the same run: three daemons side by side (file sink on a real
# directory, not tmpfs), alternating over several rounds, at two client
# concurrencies (group commit shows at the higher one).
#
#   sudo bench/bench_durability.sh [--quick]
#
# Runs inside a private network namespace with only loopback up; uses
# bench/loadgen (meson -Dbench=true) as client and echo origin. Not a test.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

N=10000; ROUNDS=5; CONCURRENCY="4 32"
[ "${1:-}" = --quick ] && { N=2000; ROUNDS=2; }

# The audit files go where the operator would put them: a real directory
# (not tmpfs, where fdatasync costs nothing) unless BENCH_AUDIT_DIR says so.
adir=${BENCH_AUDIT_DIR:-$(mktemp -d /var/tmp/tf-bench-durability.XXXXXX)}
fs=$(df -T "$adir" | awk 'NR == 2 { print $2 }')

ORIGIN=127.0.0.1:7301
"$LG" serve 7301 & pids+=($!)
wait_port 7301
common=(--upstream direct --lift-guard loopback --allow 127.0.0.0/8 --log-level warn)
modes=(queued written synced)
for i in 0 1 2; do
	"$TF" --listen 127.0.0.1:$((7380 + i)) "${common[@]}" \
		--audit-log "$adir/audit-${modes[$i]}.jsonl" \
		--audit-durability "${modes[$i]}" & pids+=($!)
done
for i in 0 1 2; do wait_port $((7380 + i)); done

figure() { sed -E 's/.*"'"$1"'":([0-9.]+).*/\1/'; }
disk() { # the disk's own fdatasync time, for reading the synced rows
	local out
	out=$("$LG" fsync "$adir/fsync-probe" 500)
	echo "fdatasync of a 300-byte append on $fs: p50 $(figure p50_ms <<<"$out") ms, p99 $(figure p99_ms <<<"$out") ms"
}
before=$(disk)
results=""
for c in $CONCURRENCY; do
	for r in $(seq "$ROUNDS"); do
		for i in 0 1 2; do
			out=$("$LG" rate $ORIGIN 127.0.0.1:$((7380 + i)) "$N" "$c")
			rate=$(figure per_second <<<"$out")
			p99=$(figure p99_ms <<<"$out")
			echo "concurrency $c round $r ${modes[$i]}: $rate conn/s, p99 $p99 ms" >&2
			results+="$c ${modes[$i]} $rate $p99"$'\n'
		done
	done
done
after=$(disk)
[ -z "${BENCH_AUDIT_DIR:-}" ] && rm -rf "$adir"

echo "durability benchmark: $(nproc) cores, audit files on $fs, $ROUNDS rounds x $N connections per concurrency"
echo "before: $before"
echo "after:  $after"
printf '%s' "$results" | awk '
	{ rate[$1, $2] += $3; p99[$1, $2] += $4; n[$1, $2]++; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
	END {
		printf "%-11s %-8s %10s %7s %10s %7s\n", "concurrency", "mode", "conn/s", "ratio", "p99 ms", "ratio"
		split("queued written synced", m, " ")
		for (j = 1; j <= k; j++) {
			c = order[j]
			br = rate[c, "queued"] / n[c, "queued"]; bp = p99[c, "queued"] / n[c, "queued"]
			for (i = 1; i <= 3; i++) {
				r = rate[c, m[i]] / n[c, m[i]]; p = p99[c, m[i]] / n[c, m[i]]
				printf "%-11s %-8s %10.0f %7.2f %10.2f %7.2f\n", c, m[i], r, r / br, p, p / bp
			}
		}
	}'
