#!/usr/bin/python3
"""Reads one callgrind output file and prints, per connection, the calls of
the functions that matter on tailfence's connection path (events and
timers, allocations, clock reads, audit records), the share of instructions
spent on audit records, and the top functions by their own instructions.

    callgrind_calls.py FILE CONNECTIONS

bench/profile.sh calls it; not part of the tests.
"""

import re
import sys
from collections import defaultdict

# What the profile counts, by function name (versioned names such as
# clock_gettime@@GLIBC_2.17 count under their base name).
GROUPS = [
    ("events and timers", ["event_new", "event_assign", "event_add", "event_del",
                           "event_free", "bufferevent_socket_new", "bufferevent_free"]),
    ("allocations", ["malloc", "calloc", "realloc", "free", "cJSON_CreateObject",
                     "cJSON_Delete"]),
    ("clock", ["clock_gettime", "__clock_gettime", "gettimeofday", "time"]),
    ("audit records", ["audit_decision", "audit_close", "cJSON_PrintUnformatted",
                       "audit_json_str", "writer_main"]),
]
# Whose calls to these are listed.
WHO_CALLS = ["event_new", "event_assign", "clock_gettime", "__clock_gettime", "gettimeofday"]
# Inclusive shares of these, of all instructions the daemon ran.
SHARES = ["audit_decision", "audit_close", "writer_main", "cJSON_PrintUnformatted",
          "audit_fmt_decision", "audit_fmt_close",
          "policy_decide", "upstream_dial", "relay_start"]


def base(name):
    name = re.sub(r"'\d+$", "", name)      # recursion depth suffix
    return name.split("@")[0]


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    names = {"fn": {}, "ob": {}}
    ob = cob = "?"
    self_cost = defaultdict(int)
    incl_calls = defaultdict(int)           # cost of calls made from fn
    calls = defaultdict(int)
    callers = defaultdict(lambda: defaultdict(int))
    total = 0
    fn = None
    callee = None
    pending_call = False

    def resolve(kind, rest, where=None):
        """fn and cfn share one numbering, ob and cob another."""
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        if not m:
            return base(rest)
        key = m.group(1)
        table = names[kind]
        if m.group(2) is not None:
            name = m.group(2)
            if kind == "ob":
                name = name.rsplit("/", 1)[-1]
            elif name.startswith("0x"):
                name = "%s in %s" % (base(name), where)  # no symbol: say where
            else:
                name = base(name)
            table[key] = name
        return table.get(key, "?")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("ob="):
                ob = resolve("ob", line[3:])
                continue
            if line.startswith("cob="):
                cob = resolve("ob", line[4:])
                continue
            if line.startswith("fn="):
                fn = resolve("fn", line[3:], ob)
                cob = ob
                continue
            if line.startswith("cfn="):
                callee = resolve("fn", line[4:], cob)
                cob = ob
                continue
            if line.startswith("calls="):
                calls[callee] += int(line[6:].split()[0])
                callers[callee][fn] += int(line[6:].split()[0])
                pending_call = True
                continue
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
                continue
            if line[0] in "0123456789+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    incl_calls[fn] += cost
                    pending_call = False
                else:
                    self_cost[fn] += cost
                continue
            # ob=, fl=, fi=, fe=, cob=, cfi=, headers: not needed
    if not total:
        total = sum(self_cost.values()) or 1

    print("| group | function | calls per connection |")
    print("|---|---|---:|")
    for group, fns in GROUPS:
        for f in fns:
            if calls.get(f):
                print("| %s | %s | %.2f |" % (group, f, calls[f] / n))
    print()
    print("| who calls it | calls per connection |")
    print("|---|---:|")
    for f in WHO_CALLS:
        for caller, k in sorted(callers[f].items(), key=lambda kv: -kv[1])[:6]:
            if k / n >= 0.05:
                print("| %s ← %s | %.2f |" % (f, caller, k / n))
    print()
    print("Instructions per connection (all threads): %.0f" % (total / n))
    print()
    print("| function (inclusive) | share of instructions |")
    print("|---|---:|")
    for f in SHARES:
        inc = self_cost.get(f, 0) + incl_calls.get(f, 0)
        if inc:
            print("| %s | %.1f%% |" % (f, 100.0 * inc / total))
    print()
    print("| function (self) | share of instructions |")
    print("|---|---:|")
    for f, c in sorted(self_cost.items(), key=lambda kv: -kv[1])[:15]:
        print("| %s | %.1f%% |" % (f, 100.0 * c / total))


if __name__ == "__main__":
    main()
