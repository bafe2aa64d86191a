#!/usr/bin/env bash
# `tailfence audit report` on a million records: CPU time (user + system:
# less disturbed than wall time on a shared machine) and peak RSS (GNU
# time), as ratios to `tailfence audit summary` over the same file (the
# review that parses the same records) measured in the same run, best of 3. Also: the report from a gzip-compressed copy, with --json, with the
# HMAC chain verified (--key), at a tenth of the records, and with smaller
# tables (--max-keys 2000): memory follows the tables' caps, not the input.
#
#   sudo bench/bench_audit_report.sh [--quick]     (--quick: 200,000 records)
#
# The trail is made up by bench/gen_trail.py (the daemon's format, with
# restarts and the chain). Needs GNU time (/usr/bin/time, Debian package
# "time"). Not a test.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "$@"

N=1000000
[ "${1:-}" = --quick ] && N=200000
if [ ! -x /usr/bin/time ]; then
	echo "bench_audit_report: needs GNU time (apt-get install time)" >&2
	exit 2
fi

head -c 32 /dev/urandom | base64 >"$work/audit.key"
echo "generating $N records ..."
/usr/bin/python3 "$here/bench/gen_trail.py" "$N" --key "$work/audit.key" >"$work/trail.jsonl"
head -n $((N / 10)) "$work/trail.jsonl" >"$work/tenth.jsonl"
gzip -c "$work/trail.jsonl" >"$work/trail.jsonl.gz"
lines=$(wc -l <"$work/trail.jsonl")
mib=$(($(stat -c %s "$work/trail.jsonl") / 1048576))

# measure LABEL CMD...: the least CPU time of 3 runs and the largest peak RSS.
declare -A secs rss
measure() {
	local label=$1 best="" top=0 s m
	shift
	for _ in 1 2 3; do
		/usr/bin/time -o "$work/time" -f "%U %S %M" "$@" >/dev/null 2>&1
		read -r s m <<<"$(awk '{ print $1 + $2, $3 }' "$work/time")"
		if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then
			best=$s
		fi
		[ "$m" -gt "$top" ] && top=$m
	done
	secs[$label]=$best
	rss[$label]=$top
}

measure summary "$TF" audit summary "$work/trail.jsonl"
measure report "$TF" audit report -q "$work/trail.jsonl" -o "$work/r.html"
measure json "$TF" audit report -q --json "$work/trail.jsonl" -o "$work/r.json"
measure gzip "$TF" audit report -q "$work/trail.jsonl.gz" -o "$work/r.html"
measure key "$TF" audit report -q --key "$work/audit.key" "$work/trail.jsonl" -o "$work/r.html"
measure tenth "$TF" audit report -q "$work/tenth.jsonl" -o "$work/r.html"
measure keys "$TF" audit report -q --max-keys 2000 "$work/trail.jsonl" -o "$work/r.html"

echo "audit report benchmark: $lines records, $mib MiB, best of 3"
printf '%-44s %8s %7s %10s\n' "" "CPU s" ratio "peak RSS"
row() {
	awk -v l="$1" -v s="${secs[$2]}" -v b="${secs[summary]}" -v m="${rss[$2]}" \
		'BEGIN { printf "%-44s %8.2f %7.2f %6.1f MiB\n", l, s, s / b, m / 1024 }'
}
row "audit summary (baseline)" summary
row "audit report -o report.html" report
row "audit report --json" json
row "audit report, gzip-compressed input" gzip
row "audit report --key (chain verified too)" key
row "audit report, a tenth of the records" tenth
row "audit report --max-keys 2000" keys
