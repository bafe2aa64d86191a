#!/usr/bin/python3
"""soak: tailfence under mixed load with faults, for a long while.

    bench/soak.sh [SECONDS]          (default 600; root; a private netns)

Runs the tailfence given in $TAILFENCE_BIN (bench/soak.sh builds the
ASan+UBSan build) with every fault this project has seen at once:

  - relays to an echo origin, one in four reset by the origin mid-stream;
  - HTTP CONNECT and absolute-form requests;
  - names resolved by a DNS server that answers some and never answers
    others (each client gives up after a second and goes);
  - clients that vanish mid-handshake (a partial greeting, then a reset);
  - bad logins against a configured user, and good ones;
  - SIGHUP every 5 s and SIGUSR1 every 7 s.

Every 10 s it samples the daemon's RSS. At the end it stops the daemon
with SIGTERM and reports: connections by kind, the RSS after warm-up and
at the end, whether the sanitizers reported anything (LeakSanitizer runs
at exit), and whether every decision record has its close record. Exit
status 0 when the daemon exited cleanly, nothing was reported and no
decision lacks its close.
"""
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from helpers import (EchoOrigin, TinyDNS, free_port, read_audit, sanitizer_report,  # noqa: E402
                     wait_listening)

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 600
counts = {}
lock = threading.Lock()
stop = threading.Event()


def count(kind):
    with lock:
        counts[kind] = counts.get(kind, 0) + 1


class ResettingEcho(EchoOrigin):
    """An echo origin that resets one connection in four after a few bytes."""

    def handle(self, conn):
        if random.random() < 0.25:
            try:
                conn.recv(16)
            except OSError:
                pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        super().handle(conn)


def socks5(port, host, dport, user=None, pw=None, timeout=3.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if user:
        s.sendall(b"\x05\x01\x02")
        s.recv(2)
        s.sendall(bytes([1, len(user)]) + user + bytes([len(pw)]) + pw)
        reply = s.recv(2)
        if len(reply) < 2 or reply[1] != 0:
            raise OSError("login refused")
    else:
        s.sendall(b"\x05\x01\x00")
        s.recv(2)
    name = host.encode()
    s.sendall(bytes([5, 1, 0, 3, len(name)]) + name + dport.to_bytes(2, "big"))
    rep = s.recv(10)
    return s, (rep[1] if len(rep) > 1 else None)


def relay_worker(port, origin_port):
    while not stop.is_set():
        try:
            s, rep = socks5(port, "127.0.0.5", origin_port)
            if rep == 0:
                payload = os.urandom(random.randint(1, 200000))
                s.sendall(payload)
                got = 0
                while got < len(payload):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
            s.close()
            count("relay")
        except OSError:
            count("relay-reset")


def http_worker(port, origin_port):
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
            if random.random() < 0.5:
                s.sendall(("CONNECT 127.0.0.5:%d HTTP/1.1\r\nHost: x\r\n\r\n" % origin_port).encode())
                s.recv(100)
                s.sendall(b"ping")
                s.recv(4)
                count("http-connect")
            else:
                s.sendall(("GET http://good.soak:%d/x HTTP/1.1\r\nHost: x\r\n\r\n" % origin_port).encode())
                s.recv(4096)
                count("http-get")
            s.close()
        except OSError:
            count("http-error")


def dns_worker(port, origin_port):
    while not stop.is_set():
        try:
            s, rep = socks5(port, "n%d.hole.soak" % random.randint(0, 1 << 30), origin_port,
                            timeout=1.0)
            s.close()
            count("hole-answered")
        except OSError:
            count("hole-gave-up")


def vanish_worker(port):
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(random.choice([b"\x05", b"\x05\x02\x00", b"\x04\x01", b"GET http://", b"CONN"]))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            count("vanish")
        except OSError:
            count("vanish-error")
        time.sleep(0.005)


def login_worker(port, origin_port):
    while not stop.is_set():
        good = random.random() < 0.5
        try:
            s, rep = socks5(port, "127.0.0.5", origin_port, user=b"soak",
                            pw=b"soak-pw" if good else b"wrong")
            s.close()
            count("login-good" if good else "login-bad-accepted")
        except OSError:
            count("login-bad" if not good else "login-good-failed")


def rss_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    tf = os.environ.get("TAILFENCE_BIN")
    if not tf:
        sys.exit("soak: set TAILFENCE_BIN")
    work = tempfile.mkdtemp(prefix="soak-")
    origin = ResettingEcho("127.0.0.5")
    dns = TinyDNS({"good.soak": ["127.0.0.5"]}, silent=("hole.soak",))
    h = subprocess.run([tf, "passwd"], input="soak-pw\nsoak-pw\n", capture_output=True,
                       text=True, check=True).stdout.strip()
    cfg = os.path.join(work, "soak.json")
    with open(cfg, "w") as f:
        json.dump({"users": {"soak": h}, "lift_guards": ["loopback"],
                   "rules": [{"action": "accept", "dst": ["127.0.0.0/24:*"]},
                             {"action": "accept", "dst": ["good.soak:*", "*.hole.soak:*"]}]}, f)
    # The users make every client log in; a second, open listener serves
    # the anonymous load.
    port, anon = free_port(), free_port()
    audit = os.path.join(work, "audit.jsonl")
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:exitcode=86")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")
    log = open(os.path.join(work, "tailfence.log"), "w")
    # Two daemons share nothing; one with users, one without.
    procs = []
    for p, with_users in ((port, True), (anon, False)):
        c = cfg if with_users else os.path.join(work, "anon.json")
        if not with_users:
            with open(c, "w") as f:
                json.dump({"lift_guards": ["loopback"],
                           "rules": [{"action": "accept", "dst": ["127.0.0.0/24:*"]},
                                     {"action": "accept",
                                      "dst": ["good.soak:*", "*.hole.soak:*"]}]}, f)
        procs.append(subprocess.Popen(
            [tf, "--config", c, "--listen", "127.0.0.1:%d" % p, "--upstream", "direct",
             "--tailscaled-socket", "none", "--dns-server", dns.addr, "--dns-timeout", "3s",
             "--audit-log", audit + (".users" if with_users else ".anon"),
             "--idle-timeout", "30s"],
            stdout=log, stderr=subprocess.STDOUT, env=env))
    for p, pr in zip((port, anon), procs):
        wait_listening(p, 30, pr, "tailfence")

    threads = [threading.Thread(target=relay_worker, args=(anon, origin.port)) for _ in range(4)]
    threads += [threading.Thread(target=http_worker, args=(anon, origin.port)) for _ in range(2)]
    threads += [threading.Thread(target=dns_worker, args=(anon, origin.port)) for _ in range(2)]
    threads += [threading.Thread(target=vanish_worker, args=(anon,)) for _ in range(2)]
    threads += [threading.Thread(target=login_worker, args=(port, origin.port)) for _ in range(2)]
    for t in threads:
        t.daemon = True
        t.start()

    samples = []
    t0 = time.monotonic()
    next_hup, next_usr1, next_sample = 5, 7, 10
    while time.monotonic() - t0 < SECONDS:
        time.sleep(0.5)
        el = time.monotonic() - t0
        if el >= next_hup:
            for pr in procs:
                pr.send_signal(signal.SIGHUP)
            next_hup += 5
            count("SIGHUP")
        if el >= next_usr1:
            for pr in procs:
                pr.send_signal(signal.SIGUSR1)
            next_usr1 += 7
            count("SIGUSR1")
        if el >= next_sample:
            samples.append((int(el), [rss_kb(pr.pid) for pr in procs]))
            next_sample += 10
        if any(pr.poll() is not None for pr in procs):
            break
    stop.set()
    for t in threads:
        t.join(10)
    rcs = []
    for pr in procs:
        if pr.poll() is None:
            pr.send_signal(signal.SIGTERM)
        try:
            rcs.append(pr.wait(60))
        except subprocess.TimeoutExpired:
            pr.kill()
            rcs.append("killed")
    log.close()
    out = open(os.path.join(work, "tailfence.log")).read()
    report = sanitizer_report(out)

    missing = 0
    decisions = closes = 0
    for suffix in (".users", ".anon"):
        recs = read_audit(audit + suffix)
        dec = {r["conn"] for r in recs if r.get("type") == "decision"}
        clo = {r["conn"] for r in recs if r.get("type") == "close"}
        decisions += len(dec)
        closes += len(clo)
        missing += len(dec - clo)

    print("soak: %d s, %d worker threads, two daemons (with and without users), "
          "event loops each: %s" % (SECONDS, len(threads),
                                    os.environ.get("TAILFENCE_THREADS") or "one per CPU"))
    for k in sorted(counts):
        print("  %-14s %9d" % (k, counts[k]))
    warm = [s for s in samples if s[0] >= 60] or samples
    if warm:
        print("RSS kB (users, anon) after warm-up at %ds: %s; at the end (%ds): %s; peak: %s"
              % (warm[0][0], warm[0][1], samples[-1][0], samples[-1][1],
                 [max(s[1][i] or 0 for s in samples) for i in range(2)]))
    print("RSS samples: %s" % " ".join("%d:%s/%s" % (t, a, b) for t, (a, b) in samples))
    print("decision records: %d, close records: %d, decisions without a close: %d"
          % (decisions, closes, missing))
    print("exit statuses: %s; sanitizer report: %s" % (rcs, "none" if report is None else report[:2000]))
    ok = all(rc == 0 for rc in rcs) and report is None and missing == 0
    print("soak: %s" % ("ok" if ok else "FAILED"))
    origin.close()
    dns.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
