#!/usr/bin/python3
"""
gen_trail.py: writes a made-up audit trail for benchmarks, in the daemon's
own format (docs/audit.md): decision and close records of N/2 connections
over DAYS days from USERS users and CLIENTS clients to DSTS destinations
(10% denied; closes written when they happen, in time order), a restart
every 100,000 records or so (every other one a crash: no shutdown record,
no closes for the open connections), and with --key the HMAC chain, so
that `audit verify` and `audit report --key` accept it.

    bench/gen_trail.py RECORDS [--key FILE] [--days 30] [--dsts 5000]
                       [--users 200] [--clients 300] [--seed 1] > trail.jsonl
"""

import argparse
import hashlib
import heapq
import hmac
import random
import sys
import time

EPOCH = 1714521600  # 2024-05-01T00:00:00Z


def ts(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


class Chain:
    """Adds seq and mac as the writer does (docs/audit.md, "Exactly what
    is signed"); without a key, lines pass unchanged."""

    def __init__(self, key):
        self.key, self.seq, self.mac = key, 0, bytes(32)

    def line(self, body):
        if self.key is None:
            return '{"v":1,' + body + "}\n"
        signed = '{"v":1,"seq":%d,%s}' % (self.seq, body)
        self.mac = hmac.new(self.key, self.mac + signed.encode(), hashlib.sha256).digest()
        self.seq += 1
        return signed[:-1] + ',"mac":"%s"}\n' % self.mac.hex()


def decision(t, conn, client, user, d, allow):
    host, port, addr = "host%d.example" % d, (443, 5432, 22, 6379)[d % 4], "192.0.2.%d" % (d % 250)
    return ('"ts":"%s","type":"decision","conn":%d,"client":"%s","listener":"127.0.0.1:1080",'
            '"proto":"socks5","user":%s,"host":"%s","port":%d,"addr":"%s","verdict":"%s",'
            '"rule":%s,"guard":null,"reason":"%s","upstream":"direct"'
            % (ts(t), conn, client, user, host, port, addr, "allow" if allow else "deny",
               '"r%d"' % (d % 20) if allow else "null",
               "rule r%d accepts" % (d % 20) if allow else "no rule matches"), addr)


def close(t, conn, client, addr, up, down, dur, end):
    return ('"ts":"%s","type":"close","conn":%d,"client":"%s","proto":"socks5","addr":%s,'
            '"bytes_up":%d,"bytes_down":%d,"duration_ms":%d,"end":"%s","error":null'
            % (ts(t), conn, client, '"%s"' % addr if addr else "null", up, down, dur, end))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("records", type=int)
    ap.add_argument("--key")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--dsts", type=int, default=5000)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--clients", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    key = open(a.key, "rb").read().rstrip() if a.key else None
    chain = Chain(key)
    w = sys.stdout.write
    step = a.days * 86400 * 1000 // max(1, a.records // 2)  # two records a connection
    t = EPOCH * 1000
    pending = []  # (close time, seq, close record): written in time order
    w(chain.line('"ts":"%s","type":"start","detail":"direct","version":"0.1.0","pid":1' % ts(t)))
    n, conn, restarts = 1, 0, 0
    while n < a.records:
        if n // 100000 > restarts:
            # a restart: every other one a clean stop (open connections
            # closed first), the others a crash (their closes never come)
            restarts += 1
            if restarts % 2:
                for _, _, rec in sorted(pending):
                    w(chain.line(rec.replace('"end":"client_eof"', '"end":"shutdown"')))
                    n += 1
                w(chain.line('"ts":"%s","type":"shutdown","detail":null' % ts(t)))
                n += 1
            pending = []
            t += 60000
            w(chain.line('"ts":"%s","type":"start","detail":"direct","version":"0.1.0","pid":%d'
                         % (ts(t), restarts + 1)))
            n, conn = n + 1, 0
        t += rnd.randint(1, 2 * step)
        while pending and pending[0][0] <= t:
            w(chain.line(heapq.heappop(pending)[2]))
            n += 1
        conn += 1
        d = rnd.randrange(a.dsts)
        user = "null" if rnd.random() < 0.1 else '"user%d"' % rnd.randrange(a.users)
        c = rnd.randrange(a.clients)
        client = "127.0.%d.%d:%d" % (c // 250, c % 250 + 1, rnd.randint(30000, 60000))
        allow = rnd.random() >= 0.1
        rec, addr = decision(t, conn, client, user, d, allow)
        w(chain.line(rec))
        n += 1
        if allow:
            dur = rnd.randint(5, 600000)
            heapq.heappush(pending, (t + dur, conn, close(t + dur, conn, client, addr,
                                                          rnd.randint(0, 20000),
                                                          rnd.randint(0, 2000000), dur,
                                                          "client_eof")))
        else:
            w(chain.line(close(t, conn, client, None, 0, 0, 0, "denied")))
            n += 1
    for _, _, rec in sorted(pending):
        w(chain.line(rec.replace('"end":"client_eof"', '"end":"shutdown"')))
    w(chain.line('"ts":"%s","type":"shutdown","detail":null' % ts(t)))
    if key is not None:
        key_id = hmac.new(key, b"tailfence audit key id", hashlib.sha256).digest()[:8].hex()
        w(chain.line('"ts":"%s","type":"checkpoint","reason":"shutdown","key_id":"%s"'
                     % (ts(t), key_id)))


if __name__ == "__main__":
    main()
