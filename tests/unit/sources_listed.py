"""sources_listed: every C file of the library, the unit tests, the fuzzers
and the benchmarks is named by its meson list.

    sources_listed.py SOURCE_ROOT LISTED_FILE...

meson lists each of these files by name (a renamed or missing one is a
build error); this is the other direction. A file on disk that no list
names would never be compiled, tested or fuzzed, and nothing would say so.
Exits 1 naming each such file and the list it belongs in.
"""
import glob
import os
import sys

# (pattern under the source root, the list it belongs in)
KINDS = [
    ("src/*.c", "lib_sources in meson.build"),
    ("tests/unit/test_*.c", "unit_tests in tests/unit/meson.build"),
    ("fuzz/*_fuzzer.c", "fuzzers in fuzz/meson.build"),
    ("bench/*.c", "benches in bench/meson.build"),
]


def main(argv):
    if len(argv) < 3:
        print("usage: sources_listed.py SOURCE_ROOT LISTED_FILE...", file=sys.stderr)
        return 2
    root = os.path.realpath(argv[1])
    listed = {os.path.realpath(p) for p in argv[2:]}
    missing = []
    seen = 0
    for pattern, where in KINDS:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            seen += 1
            if os.path.realpath(path) not in listed:
                missing.append("%s is not listed: add it to %s"
                               % (os.path.relpath(path, root), where))
    if seen == 0:
        print("no C files under %s: wrong source root?" % root)
        return 1
    for line in missing:
        print(line)
    if missing:
        return 1
    print("%d C files, every one listed" % seen)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
