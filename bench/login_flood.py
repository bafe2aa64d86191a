#!/usr/bin/python3
"""How long a good login waits while bad logins flood the daemon.

    login_flood.py [--rounds N] [--flood N] LABEL=TAILFENCE_BIN ...

Run by bench/bench_login_flood.sh inside a private network namespace (only
loopback up). For each binary and round it starts a fresh daemon with users
(hashes from `tailfence passwd`), then times, with credentials that are not
cached (a new user each time):

  quiet   a good SOCKS5 login with nothing else going on (the baseline);
  one     the same right after FLOOD bad logins from one client address
          (127.0.0.2), each connection sending its greeting and credentials
          and closing at once;
  spread  the same after FLOOD bad logins spread over 100 client addresses
          (127.0.0.100-199).

The good client is 127.0.0.3. A login is timed from connect to the RFC 1929
status reply; "refused" is a non-zero status, "timeout" no answer within
the client's limit. Prints one JSON object per measurement and a summary of
ratios to the quiet login of the same binary in the same run. Not a test.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

GOOD_SRC = "127.0.0.3"
CLIENT_LIMIT_S = 180.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("tailfence exited with %d" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def auth_bytes(user, pw):
    u, p = user.encode(), pw.encode()
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            break
        b += chunk
    return b


def good_login(port, user, pw):
    """Seconds from connect to the RFC 1929 reply, and the outcome."""
    t0 = time.monotonic()
    s = socket.socket()
    s.settimeout(CLIENT_LIMIT_S)
    try:
        s.bind((GOOD_SRC, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"\x05\x01\x02")
        if recv_exact(s, 2) != b"\x05\x02":
            return time.monotonic() - t0, "no-userpass"
        s.sendall(auth_bytes(user, pw))
        rep = recv_exact(s, 2)
        dt = time.monotonic() - t0
        if len(rep) < 2:
            return dt, "closed"
        return dt, "ok" if rep[1] == 0 else "refused"
    except socket.timeout:
        return time.monotonic() - t0, "timeout"
    finally:
        s.close()


def flood(port, n, sources):
    """n connections, round-robin over the source addresses, each sending a
    greeting and bad credentials in one write and closing at once."""
    msg = b"\x05\x01\x02" + auth_bytes("alice", "not-the-password")
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(msg)
        except OSError:
            pass
        s.close()
    return time.monotonic() - t0


def make_hashes(binary, users):
    out = {}
    for user, pw in users.items():
        p = subprocess.run([binary, "passwd"], input=pw + "\n", capture_output=True,
                           text=True, timeout=60, check=True)
        out[user] = p.stdout.strip()
    return out


def run_round(binary, hashes, passwords, flood_n, kind, work):
    port = free_port()
    cfg = os.path.join(work, "cfg-%d.json" % port)
    with open(cfg, "w") as f:
        json.dump({"users": hashes, "lift_guards": ["loopback"],
                   "rules": [{"action": "accept", "dst": ["127.0.0.0/24:*"]}]}, f)
    log = open(os.path.join(work, "tf-%d.log" % port), "w")
    proc = subprocess.Popen([binary, "--config", cfg, "--listen", "127.0.0.1:%d" % port,
                             "--upstream", "direct", "--tailscaled-socket", "none",
                             "--audit-log", "/dev/null", "--log-level", "warn",
                             "--handshake-timeout", "300s"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        quiet, quiet_out = good_login(port, "quiet", passwords["quiet"])
        sources = ["127.0.0.2"] if kind == "one" else ["127.0.0.%d" % i for i in range(100, 200)]
        flood_s = flood(port, flood_n, sources)
        waited, out = good_login(port, "fresh", passwords["fresh"])
        return {"quiet_s": round(quiet, 4), "quiet": quiet_out, "flood": kind,
                "flood_send_s": round(flood_s, 3), "during_s": round(waited, 4),
                "during": out}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()


def main():
    args = sys.argv[1:]
    rounds, flood_n = 3, 400
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--rounds":
            rounds = int(args.pop(0))
        elif opt == "--flood":
            flood_n = int(args.pop(0))
    binaries = [a.split("=", 1) for a in args]
    passwords = {"quiet": "quiet-Pw-1", "fresh": "fresh-Pw-2", "alice": "alice-Pw-3"}
    summary = []
    with tempfile.TemporaryDirectory() as work:
        for label, binary in binaries:
            hashes = make_hashes(binary, passwords)
            for kind in ("one", "spread"):
                rows = []
                for r in range(rounds):
                    row = run_round(binary, hashes, passwords, flood_n, kind, work)
                    row.update(binary=label, round=r + 1)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                ratio = statistics.median(x["during_s"] / x["quiet_s"] for x in rows)
                outs = sorted({x["during"] for x in rows})
                summary.append((label, kind, statistics.median(x["quiet_s"] for x in rows),
                                statistics.median(x["during_s"] for x in rows), ratio, outs))
    print("good login (uncached credentials) during a flood of %d bad logins that close at "
          "once; median of %d rounds, ratio to the quiet login of the same binary and run"
          % (flood_n, rounds))
    for label, kind, q, d, ratio, outs in summary:
        print("%-8s flood from %-17s quiet %.3f s  during %.3f s  ratio %7.1fx  (%s)"
              % (label, "1 address" if kind == "one" else "100 addresses", q, d, ratio,
                 ",".join(outs)))


if __name__ == "__main__":
    main()
