"""Logins under load, and what is left of a password afterwards.

Item 3, password-hash flooding. A login that misses the cache of verified
credentials costs a KDF run (scrypt, tens of milliseconds) on the worker
pool. The pool is bounded (256 checks waiting or running, 4 per client
prefix: /32, /64); a login past a limit is refused at once with the reason
(SOCKS5: RFC 1929 failure; HTTP: 503 with Retry-After), and a connection
that closes takes its waiting check out of the queue, so a burst of bad
logins that close at once costs almost nothing and never holds back a
good login. Without users there is nothing to check: a SOCKS5 client
offering no-auth and username/password is answered no-auth.

Item 10, passwords after close: the daemon's own memory, read through
/proc/PID/mem while it runs, holds no password (nor its Basic encoding)
once the connections that carried them are closed. The functions that do
the wiping are unit-tested too (test_socks, test_httpproxy, test_auth).

The tests assert behaviour, never time: how long a good login waits during
a flood is measured by bench/bench_login_flood.sh.
"""

import base64
import json
import re
import secrets
import socket
import subprocess

import pytest

from helpers import (clean_env, curl, free_port, read_http_response, recv_exact, socks5_greet,
                     socks5_read_reply, socks5_request_bytes, wait_closed, wait_until)

PASSWORDS = {user: "%s-%s" % (user, secrets.token_hex(12)) for user in ("alice", "bob", "carol")}
WRONG = "wrong-" + secrets.token_hex(12)
PER_CLIENT = 4
BUSY_CLIENT = "password checks from this client are already waiting or running"

FLOOD_SOURCES = ["127.0.0.%d" % i for i in range(100, 150)]  # 50 clients
GOOD_SOURCE = "127.0.0.60"


@pytest.fixture(scope="module")
def user_hashes(tailfence_bin):
    out = {}
    for user, pw in PASSWORDS.items():
        p = subprocess.run([tailfence_bin, "passwd"], input=pw + "\n", capture_output=True,
                           text=True, env=clean_env(), timeout=60)
        assert p.returncode == 0, p.stderr
        out[user] = p.stdout.strip()
    return out


@pytest.fixture
def fence(tailfence, origins, user_hashes, tmp_path):
    """A daemon with users, debug log, and one HTTP origin every user may
    reach. Fresh per test, so no credentials are cached."""
    origin = origins.http("127.0.0.1", label="origin")
    cfg = tmp_path / "users.json"
    cfg.write_text(json.dumps({
        "users": user_hashes, "lift_guards": ["loopback"],
        "rules": [{"action": "accept", "dst": ["127.0.0.1:%d" % origin.port]}]}))

    def start(*args):
        return tailfence("--config", cfg, "--log-level", "debug", *args, allow=(),
                         lift_guards=())
    return start, origin


def connect_from(d, src, port=None, host=None, timeout=30.0):
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect((host or d.host, port or d.port))
    return s


def rfc1929(user, pw):
    u, p = user.encode(), pw.encode()
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def basic(user, pw):
    return base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def good_socks5_login(d, src, user, origin, path, **kw):
    """A whole SOCKS5 session with the right password; returns the origin's
    answer to GET path."""
    with connect_from(d, src, **kw) as s:
        assert socks5_greet(s, (0x00, 0x02)) == 0x02
        s.sendall(rfc1929(user, PASSWORDS[user]))
        assert recv_exact(s, 2) == b"\x01\x00", "good login of %s from %s refused" % (user, src)
        s.sendall(socks5_request_bytes(origin.host, origin.port))
        rep, _, _ = socks5_read_reply(s)
        assert rep == 0, "SOCKS5 reply 0x%02x after a good login" % rep
        s.sendall(("GET /%s HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n" % path).encode())
        status, _, body, _ = read_http_response(s)
        assert status == 200
        return json.loads(body)


def stats_line(log):
    """The counters of the shutdown line: ran, dropped, refused (full), refused
    (client limit); zeros when no check was asked for."""
    m = re.search(r"password checks: (\d+) ran, (\d+) dropped .*?(\d+) refused \(queue full\), "
                  r"(\d+) refused \(client limit\)", log)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0, 0)


def client_of(rec):
    return rec["client"].rsplit(":", 1)[0].strip("[]")


# ------------------------------------------- 3. flooding: closed connections

def test_a_flood_of_logins_that_close_at_once_runs_none_of_their_checks(fence):
    """200 bad logins from 50 clients (4 each: never over the per-client
    limit) are sent and closed at once; right after them a good login whose
    credentials are not cached succeeds (within the daemon's handshake
    timeout: before the fix it waited behind every one of the 200 checks).
    A check whose client left before it started is dropped and never runs;
    the counters prove it: every check that ran belongs to a connection
    that was still there when it started (its result was delivered, or
    dropped as "already running")."""
    start, origin = fence
    d = start()
    burst = b"\x05\x01\x02" + rfc1929("alice", WRONG)
    for i in range(len(FLOOD_SOURCES) * PER_CLIENT):
        with connect_from(d, FLOOD_SOURCES[i % len(FLOOD_SOURCES)]) as s:
            s.sendall(burst)
    n_flood = len(FLOOD_SOURCES) * PER_CLIENT

    answer = good_socks5_login(d, GOOD_SOURCE, "bob", origin, "after-the-flood")
    assert answer["path"] == "/after-the-flood"
    d.wait_audit(type="decision", verdict="allow", user="bob")

    # every flood connection is over: closed by its client (an EOF, or a
    # reset when the greeting's answer found it gone), or answered after its
    # check ran and the throttle's delay passed; none waited for a timeout
    flood = set(FLOOD_SOURCES)
    closes = [r for r in d.wait_audit(type="close", n=n_flood, timeout=120)
              if client_of(r) in flood]
    assert len(closes) == n_flood, closes
    assert {c["end"] for c in closes} <= {"client_eof", "error", "auth_failed"}, closes

    d.stop()
    log = d.log()
    ran, dropped, full, limit = stats_line(log)
    dropped_lines = log.count("password check dropped before it ran")
    running_lines = log.count("password check already running; result discarded")
    delivered_failures = len(re.findall(r': login failed for user "[^"]*"$', log, re.M))
    assert full == 0 and limit == 0, log[-3000:]
    assert ran + dropped == n_flood + 1, (ran, dropped)
    assert dropped == dropped_lines and dropped > 0, (dropped, dropped_lines)
    # bob's check, the flood's checks that answered their client, and those
    # that were already running when their client left: nothing else ran
    assert ran == 1 + delivered_failures + running_lines, (ran, delivered_failures, running_lines)
    failed = [r for r in d.decisions(guard="auth") if client_of(r) in flood]
    assert len(failed) == delivered_failures and all("login failed" in r["reason"] for r in failed)
    assert not d.decisions(verdict="allow", user="alice")


# --------------------------------------------- 3. flooding: per-client limit

def _logins_taken(d):
    """How many logins the daemon has taken up so far: queued for a check or
    refused at once (its debug log)."""
    log = d.log()
    return log.count("password check for user") + log.count("login refused for user")


def _sent_and_taken(d, socks, msg):
    """Sends msg on every socket, then waits until the daemon has taken up
    each login: with several event loops the connections are read in no
    set order, and a test's next login must come after these."""
    before = _logins_taken(d)
    for s in socks:
        s.sendall(msg)
    wait_until(lambda: _logins_taken(d) >= before + len(socks), 30,
               "the daemon to take up %d logins" % len(socks))
    return socks


def socks5_bad_logins(d, src, n, **kw):
    """n connections from src, greeted first, then the bad credentials sent
    back to back; returns the sockets (still open) once the daemon has taken
    up every login."""
    socks = []
    for _ in range(n):
        s = connect_from(d, src, **kw)
        assert socks5_greet(s, (0x02,)) == 0x02
        socks.append(s)
    return _sent_and_taken(d, socks, rfc1929("alice", WRONG))


def http_bad_logins(d, src, origin, n):
    socks = [connect_from(d, src) for _ in range(n)]
    head = ("GET %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n"
            % (origin.url + "flood", origin.hostport, basic("alice", WRONG))).encode()
    return _sent_and_taken(d, socks, head)


@pytest.mark.parametrize("proto", ["socks5", "http"])
def test_the_per_client_limit_refuses_at_once_and_others_still_log_in(proto, fence):
    """One client sends 10 bad logins at once: its first 4 checks are
    queued, the ones found over the limit are refused at once (RFC 1929
    failure / 503 with Retry-After) with a decision naming the limit. While
    they are pending, another client's good login (not cached) succeeds."""
    start, origin = fence
    d = start()
    flood_src, n = "127.0.0.70", 10
    if proto == "socks5":
        socks = socks5_bad_logins(d, flood_src, n)
    else:
        socks = http_bad_logins(d, flood_src, origin, n)

    answer = good_socks5_login(d, "127.0.0.71", "carol", origin, "meanwhile")
    assert answer["path"] == "/meanwhile"

    statuses = []
    for s in socks:
        with s:
            if proto == "socks5":
                ver, status = recv_exact(s, 2)
                assert ver == 1 and status != 0, "RFC 1929 status %d" % status
            else:
                status, headers, body, _ = read_http_response(s)
                assert status in (407, 503), status
                if status == 503:
                    assert headers.get("retry-after") == "1", headers
                    assert b"try again" in body, body
                    assert "proxy-authenticate" not in headers, headers
                else:
                    assert headers.get("proxy-authenticate") == 'Basic realm="tailfence"'
            statuses.append(status)
            assert wait_closed(s)
    decisions = d.wait_audit(type="decision", guard="auth", n=n, timeout=30)
    busy = [r for r in decisions if BUSY_CLIENT in r["reason"]]
    failed = [r for r in decisions if r["reason"].startswith("login failed")]
    if proto == "http":
        assert statuses.count(503) == len(busy), statuses
    # the first PER_CLIENT are always queued; at least one more is refused
    assert len(failed) >= PER_CLIENT and 1 <= len(busy) <= n - PER_CLIENT, decisions
    assert len(busy) + len(failed) == n
    for r in busy:
        assert client_of(r) == flood_src and r["user"] == "alice" and r["verdict"] == "deny"
        assert "(limit)" in r["reason"] and str(PER_CLIENT) in r["reason"], r
    refusals = [c for c in d.closes(end="auth_failed")
                if (c.get("error") or "").startswith("too many logins from this client")]
    assert len(refusals) == len(busy), d.closes()
    assert origin.count == 1 and not d.decisions(verdict="allow", user="alice")
    d.stop()
    ran, dropped, full, limit = stats_line(d.log())
    assert limit == len(busy) and full == 0 and ran == len(failed) + 1 and dropped == 0


@pytest.fixture
def ipv6_clients():
    """Documentation addresses on lo: two in one /64, one in another."""
    addrs = ["2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:3::a"]
    for a in addrs:
        subprocess.run(["ip", "-6", "addr", "add", a + "/128", "dev", "lo", "nodad"], check=True)
    yield addrs
    for a in addrs:
        subprocess.run(["ip", "-6", "addr", "del", a + "/128", "dev", "lo"], check=False)


def test_the_per_client_limit_counts_an_ipv6_64_as_one_client(fence, ipv6_clients):
    """Four checks from one address of a /64 fill that client's share: a
    login from another address of the same /64 is refused at once, one from
    the next /64 is not."""
    start, origin = fence
    port6 = free_port("::1")
    d = start("--listen", "127.0.0.1:%d" % free_port(), "--listen", "[::1]:%d" % port6)
    a, sibling, neighbour = ipv6_clients
    with connect_from(d, sibling, host="::1", port=port6) as s:
        assert socks5_greet(s, (0x02,)) == 0x02
        held = socks5_bad_logins(d, a, PER_CLIENT, host="::1", port=port6)
        s.sendall(rfc1929("bob", PASSWORDS["bob"]))
        assert recv_exact(s, 2)[1] != 0, "a login over the /64's limit was not refused"
    good_socks5_login(d, neighbour, "carol", origin, "next-64", host="::1", port=port6)
    for s in held:
        with s:
            assert recv_exact(s, 2)[1] != 0
    busy = d.wait_audit(type="decision", guard="auth", user="bob")[0]
    assert BUSY_CLIENT in busy["reason"] and client_of(busy) == sibling, busy
    d.wait_audit(type="decision", verdict="allow", user="carol")


# ------------------------------------------------------ 3. no users, no check

def test_without_users_socks5_is_answered_no_auth(tailfence, echo_origin, http_origin):
    d = tailfence("--log-level", "debug")
    with d.connect() as s:
        assert socks5_greet(s, (0x00, 0x02)) == 0x00, "username/password chosen without users"
        s.sendall(socks5_request_bytes(echo_origin.host, echo_origin.port))
        assert socks5_read_reply(s)[0] == 0
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
    with d.connect() as s:
        assert socks5_greet(s, (0x02, 0x00)) == 0x00, "the order of the offer decided"
    # a client that offers only username/password is let in, unchecked and
    # unnamed, as HTTP ignores Proxy-Authorization without users
    with d.connect() as s:
        assert socks5_greet(s, (0x02,)) == 0x02
        s.sendall(rfc1929("someone", WRONG))
        assert recv_exact(s, 2) == b"\x01\x00"
        s.sendall(socks5_request_bytes(echo_origin.host, echo_origin.port))
        assert socks5_read_reply(s)[0] == 0
    # curl with credentials in the proxy URL offers both methods
    r = curl(http_origin.url + "curl", proxy="socks5h://someone:%s@%s" % (WRONG, d.addr))
    assert r.returncode == 0 and r.http_code == 200, r
    allowed = d.wait_audit(type="decision", verdict="allow", n=3)
    assert all(rec["user"] is None for rec in allowed), allowed
    d.stop()
    assert stats_line(d.log()) == (0, 0, 0, 0), "a password check ran without users"
    assert not re.search(r"conn \d+: password check", d.log()), "a password check was queued"


# ------------------------------------------------- 10. passwords after close

def readable_regions(pid):
    """(start, end) of the daemon's private writable mappings, except
    sanitizer shadow memory (reserved in terabytes, never the heap)."""
    out = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if parts[1].startswith("rw") and hi - lo <= (1 << 30):
                out.append((lo, hi))
    return out


def memory_holds(pid, needles):
    found = set()
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for lo, hi in readable_regions(pid):
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            for n in needles:
                if n in data:
                    found.add(n)
    return found


def test_no_password_is_left_in_the_daemon_after_close(fence):
    """Logins of every kind (SOCKS5 and HTTP; right, wrong, refused over the
    limit; checked by the KDF and from the cache), all closed: the daemon's
    memory holds none of the passwords sent, nor their Basic encoding."""
    start, origin = fence
    d = start()
    # SOCKS5: right (KDF), right again (cache), wrong
    good_socks5_login(d, "127.0.0.81", "alice", origin, "s1")
    good_socks5_login(d, "127.0.0.81", "alice", origin, "s2")
    with connect_from(d, "127.0.0.82") as s:
        assert socks5_greet(s, (0x02,)) == 0x02
        s.sendall(rfc1929("bob", WRONG))
        assert recv_exact(s, 2)[1] != 0
    # HTTP: right (KDF, then cache), wrong; a CONNECT with the right one
    for path in ("h1", "h2"):
        with connect_from(d, "127.0.0.83") as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n"
                       % (origin.url + path, origin.hostport, basic("bob", PASSWORDS["bob"])))
                      .encode())
            assert read_http_response(s)[0] == 200
    for socks in (http_bad_logins(d, "127.0.0.84", origin, 6),
                  socks5_bad_logins(d, "127.0.0.85", 6)):
        for s in socks:
            with s:
                wait_closed(s)
    with connect_from(d, "127.0.0.86") as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n"
                   % (origin.hostport, origin.hostport, basic("carol", PASSWORDS["carol"])))
                  .encode())
        assert read_http_response(s, body=False)[0] == 200
        s.sendall(b"GET /tunnel HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
        assert read_http_response(s)[0] == 200
    d.wait_audit(type="decision", n=18)  # one per connection
    d.wait_audit(type="close", n=18)
    assert d.decisions(guard="auth", verdict="deny"), "no refusal was exercised"

    secrets_sent = [p.encode() for p in PASSWORDS.values()] + [WRONG.encode()]
    secrets_sent += [basic(u, p).encode() for u, p in PASSWORDS.items()]
    secrets_sent += [basic("alice", WRONG).encode()]
    found = memory_holds(d.proc.pid, secrets_sent)
    assert not found, "the daemon's memory still holds %s" % sorted(found)
    # the scan itself sees the daemon's memory: its listener's address is there
    assert memory_holds(d.proc.pid, [d.addr.encode()]), "memory scan found nothing at all"
