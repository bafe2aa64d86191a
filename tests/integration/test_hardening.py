"""Hostile inputs that once walked past the fence, one section per class.

Each test makes the attempt against a daemon whose rules would otherwise
let it through, checks that the client gets its protocol's refusal with the
reason, that nothing was dialed, and that the audit trail and `tailfence
check` say the same. Everything stays on loopback (and a documentation
address on lo) in the suite's private network namespace.

  1. names: one validator for SOCKS, HTTP, rules and check
  2. names that never resolve cannot starve the others
  4. a reload cannot change what was bound at start
  5. the audit trail and the operator log cannot be made to lie or break
  7. IPv6 addresses that carry an IPv4 address meet the IPv4 guards
  8. the upstream's port on every address of this host; this host's addresses
  9. NUL in a config string
"""
import json
import signal
import socket
import subprocess

import pytest

from helpers import (EchoOrigin, Proc, clean_env, connect, free_port, http_connect_status,
                     http_get_status, read_audit, recv_exact, socks4_connect, socks4a_code,
                     socks5_connect, socks5_greet, socks5_rep, wait_listening, wait_until)


def write(tmp_path, cfg, name="policy.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=2))
    return str(path)


# ------------------------------------------------------------------ 1. names

SECRET = "secret.test"


@pytest.fixture
def secret_fence(tailfence, tmp_path, hosts_file, origins):
    """deny secret.test and *.blocked.test, then accept all of 127.0.0.0/24
    (guard lifted); the names resolve (hosts file) to an echo origin."""
    origin = origins.echo("127.0.0.5")
    hosts = hosts_file({SECRET: "127.0.0.5", "x.blocked.test": "127.0.0.5"})
    cfg = write(tmp_path, {"lift_guards": ["loopback"], "rules": [
        {"name": "no secret", "action": "deny", "dst": [SECRET + ":*", "*.blocked.test:*"]},
        {"name": "loopback", "action": "accept", "dst": ["127.0.0.0/24:*"]}]})
    d = tailfence("--config", cfg, "--hosts-file", hosts, allow=(), lift_guards=())
    return d, origin, cfg, hosts


@pytest.mark.parametrize("name", [SECRET + "..", "x.blocked.test..", SECRET + "...",
                                  "." + SECRET, "secret..test", ".."])
def test_a_deny_by_name_cannot_be_walked_past(name, secret_fence):
    d, origin, _, _ = secret_fence
    port = origin.port
    assert socks5_rep(d, name, port) == 2
    assert socks4a_code(d, name, port) == 0x5B
    hp = "%s:%d" % (name, port)
    assert http_connect_status(d, hp) in (400, 403)
    assert http_get_status(d, hp) in (400, 403)
    assert origin.count == 0
    recs = [r for r in d.wait_audit(n=2, type="decision", verdict="deny") if r["host"] == name]
    assert len(recs) >= 2, d.audit()
    assert all("empty label" in r["reason"] for r in recs), recs


def test_the_denied_names_themselves_are_denied_by_the_rule(secret_fence):
    d, origin, _, _ = secret_fence
    for name in (SECRET, SECRET + ".", "SECRET.test", "x.blocked.test."):
        assert socks5_rep(d, name, origin.port) == 2, name
    assert origin.count == 0
    assert {r["rule"] for r in d.wait_audit(n=4, type="decision")} == {"no secret"}
    # the control: the address itself goes through
    assert socks5_rep(d, "127.0.0.5", origin.port) == 0


@pytest.mark.parametrize("name, why", [
    (SECRET + "..", "has an empty label"),
    ("127.1", "is neither a host name nor an IPv4 address in dotted-quad form"),
    ("0177.0.0.1", "is neither a host name"),
    ("a_b-c.test.", None),
])
def test_check_says_what_the_daemon_does(name, why, secret_fence, tailfence_cli):
    d, origin, cfg, hosts = secret_fence
    p = tailfence_cli("check", "--config", cfg, "--hosts-file", hosts,
                      "%s:%d" % (name, origin.port))
    daemon_rep = socks5_rep(d, name, origin.port)
    if why:
        assert p.returncode == 1 and why in p.stdout, p.stdout
        assert daemon_rep == 2
        rec = [r for r in d.wait_audit(type="decision") if r["host"] == name][-1]
        assert why in rec["reason"]
    else:
        # a valid name the hosts file does not know: both fail to resolve
        assert p.returncode == 1 and "cannot resolve" in p.stdout, p.stdout
        assert daemon_rep != 0


# ----------------------------------------- 2. names that never resolve

def _socks5_name_pending(d, name, port, source):
    """A SOCKS5 CONNECT for name from the source address, left waiting for
    its answer; returns the socket."""
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect((d.host, d.port))
    s.sendall(bytes([5, 1, 0]))
    assert recv_exact(s, 2) == b"\x05\x00"
    s.sendall(bytes([5, 1, 0, 3, len(name)]) + name.encode() + port.to_bytes(2, "big"))
    return s


@pytest.fixture
def holes(tailfence, dns, origins):
    """A daemon whose nameserver answers good.test and never answers
    anything under hole.test; lookups may wait 60 s."""
    origin = origins.echo("127.0.0.9")
    server = dns({"good.test": ["127.0.0.9"]}, silent=("hole.test",))
    d = tailfence("--dns-server", server.addr, "--dns-timeout", "60s", dns=False)
    return d, origin, server


def test_a_flood_of_unanswered_names_does_not_starve_a_good_one(holes):
    """300 lookups that never answer, from ten clients, are all pending;
    a lookup of a name that does answer is answered meanwhile (evdns no
    longer queues lookups behind its in-flight limit, where nothing timed
    them out)."""
    d, origin, server = holes
    pending = []
    try:
        for i in range(300):
            pending.append(_socks5_name_pending(d, "n%d.hole.test" % i, origin.port,
                                                "127.0.0.%d" % (20 + i % 10)))
        wait_until(lambda: len({n for n, _ in server.queries if n.endswith("hole.test")}) >= 300,
                   30, "every unanswered name to reach the nameserver")
        assert socks5_rep(d, "good.test", origin.port) == 0
        assert origin.count == 1
    finally:
        for s in pending:
            s.close()


def test_lookups_in_flight_are_bounded_per_client_and_released_on_close(holes):
    """One client may have 32 lookups in flight: the 33rd is refused at
    once with the reason; when the waiting clients go away their lookups
    are cancelled and the client may look up again."""
    d, origin, _ = holes
    first = [_socks5_name_pending(d, "a%d.hole.test" % i, origin.port, "127.0.0.30")
             for i in range(32)]
    try:
        extra = _socks5_name_pending(d, "over.hole.test", origin.port, "127.0.0.30")
        rep = recv_exact(extra, 10)[1]
        extra.close()
        assert rep == 1  # general failure: try again
        rec = d.wait_audit(type="decision", host="over.hole.test")[0]
        assert "too many name lookups in flight from this client (32)" in rec["reason"], rec
        # another client is not affected
        other = _socks5_name_pending(d, "b.hole.test", origin.port, "127.0.0.31")
        other.close()
    finally:
        for s in first:
            s.close()
    wait_until(lambda: len(d.closes(end="client_eof")) >= 33, 10,
               "the waiting connections to close as client_eof")
    again = [_socks5_name_pending(d, "c%d.hole.test" % i, origin.port, "127.0.0.30")
             for i in range(32)]
    for s in again:
        s.close()
    refused = [r for r in d.decisions() if "too many name lookups" in (r["reason"] or "")]
    assert len(refused) == 1, refused


def test_a_lookup_has_a_deadline(tailfence, dns, origins):
    origin = origins.echo()
    server = dns({}, silent=("hole.test",))
    d = tailfence("--dns-server", server.addr, "--dns-timeout", "1s", dns=False)
    assert socks5_rep(d, "late.hole.test", origin.port) == 6  # TTL expired
    rec = d.wait_audit(type="decision", host="late.hole.test")[0]
    assert rec["verdict"] == "deny" and "no answer within 1000 ms" in rec["reason"], rec
    status = http_get_status(d, "late2.hole.test:%d" % origin.port)
    assert status == 504


# ------------------------------------------------------------- 4. reloads

def test_a_reload_cannot_turn_a_public_listener_unauthenticated(tailfence_bin, tmp_path, origins):
    """Start on 0.0.0.0 with users; reload with 127.0.0.1 and no users: the
    whole reload is refused with the reason, and the 0.0.0.0 listener still
    asks for a login. (The listener comes from the file alone, so the
    daemon is started here, not by the fixture, which adds --listen.)"""
    h = subprocess.run([tailfence_bin, "passwd"], input="pw\npw\n", capture_output=True,
                       text=True, check=True).stdout.strip()
    port = free_port()
    echo = origins.echo()
    audit = tmp_path / "audit.jsonl"
    rules = [{"action": "accept", "dst": ["127.0.0.0/24:*"]}]
    path = write(tmp_path, {"listen": ["0.0.0.0:%d" % port], "users": {"alice": h},
                            "lift_guards": ["loopback"], "rules": rules})
    proc = Proc([tailfence_bin, "--config", path, "--tailscaled-socket", "none",
                 "--upstream", "direct", "--audit-log", str(audit)],
                tmp_path / "tailfence.log", env=clean_env())
    try:
        wait_listening(port, 15, proc.proc, "tailfence")
        write(tmp_path, {"listen": ["127.0.0.1:%d" % port], "lift_guards": ["loopback"],
                         "rules": rules})
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: [r for r in read_audit(str(audit)) if r["type"] == "reload"], 10,
                   "a reload record")
        rec = [r for r in read_audit(str(audit)) if r["type"] == "reload"][0]
        assert rec["detail"].startswith("listen: 0.0.0.0:%d -> 127.0.0.1:%d" % (port, port)), rec
        assert "needs a restart" in rec["detail"]
        assert "reload rejected" in proc.log()
        with connect(port) as s:
            assert socks5_greet(s, methods=(0x00,)) == 0xFF  # no login, no service
        assert echo.count == 0
    finally:
        assert proc.stop(signal.SIGTERM, 30) == 0, proc.log()


def test_a_reload_cannot_move_the_admin_endpoint(tailfence, tmp_path):
    """The admin address is bound at start: a reload that would move it (or
    open one) is refused whole, like one that would move a listener."""
    path = write(tmp_path, {"admin": "127.0.0.1:%d" % free_port()})
    d = tailfence("--config", path)
    write(tmp_path, {"admin": "127.0.0.1:%d" % free_port(), "log_level": "debug"})
    d.proc.proc.send_signal(signal.SIGHUP)
    rec = d.wait_audit(type="reload")[0]
    assert rec["detail"].startswith("admin: 127.0.0.1:"), rec
    assert "needs a restart" in rec["detail"], rec


# ------------------------------------- 5. an honest trail, an honest log

def _socks5_raw_name(d, name_bytes, port=80, user=None, pw=None):
    """A SOCKS5 CONNECT for a name given as raw bytes (optionally after an
    RFC 1929 login with raw bytes); returns the reply code or None."""
    with d.connect() as s:
        if user is None:
            s.sendall(b"\x05\x01\x00")
            if recv_exact(s, 2) != b"\x05\x00":
                return None
        else:
            s.sendall(b"\x05\x01\x02")
            if recv_exact(s, 2) != b"\x05\x02":
                return None
            s.sendall(bytes([1, len(user)]) + user + bytes([len(pw)]) + pw)
            if recv_exact(s, 2)[1] != 0:
                return None
        s.sendall(bytes([5, 1, 0, 3, len(name_bytes)]) + name_bytes + port.to_bytes(2, "big"))
        try:
            return recv_exact(s, 10)[1]
        except EOFError:
            return None


def _strict_records(raw):
    """Every line of an audit file's bytes, decoded as strict UTF-8 and JSON."""
    return [json.loads(line) for line in raw.decode("utf-8", errors="strict").splitlines()]


HOSTILE = [b"caf\xe9.test", b"\xff\xfe", b"a\xc0\xafb.test", b"x\x1b[2Jy.test",
           b"n\n{\"v\":1,\"type\":\"decision\",\"verdict\":\"allow\"}", b"tab\there"]


def test_every_record_is_valid_utf8_json(tailfence, tailfence_bin, tmp_path):
    h = subprocess.run([tailfence_bin, "passwd"], input="pw\npw\n", capture_output=True,
                       text=True, check=True).stdout.strip()
    cfg = write(tmp_path, {"users": {"ok": h}, "rules": [{"action": "accept", "dst": ["*:80"]}]})
    d = tailfence("--config", cfg, "--allow-default-route", allow=(), lift_guards=())
    for name in HOSTILE:
        assert _socks5_raw_name(d, name, user=b"ok", pw=b"pw") == 2, name
    # user names that are not UTF-8, for failed logins
    for user in (b"\xff\xfeuser", b"\x1b[31mroot", b"ev\nil"):
        assert _socks5_raw_name(d, b"x.test", user=user, pw=b"no") is None
    d.wait_audit(n=len(HOSTILE) + 3, type="decision", verdict="deny")
    raw = open(d.audit_path, "rb").read()  # one read: the writer goes on appending
    recs = _strict_records(raw)
    hosts = [r["host"] for r in recs if r.get("type") == "decision" and r.get("host")]
    assert "caf\ufffd.test" in hosts and "\ufffd\ufffd" in hosts, hosts
    assert any("\x1b" in h_ for h_ in hosts)  # JSON carries it escaped (\u001b)
    users = [r["user"] for r in recs if r.get("guard") == "auth"]
    assert "\ufffd\ufffduser" in users and "ev\nil" in users, users
    assert b"\x1b" not in raw and raw.count(b"\n") == len(recs)


def test_the_operator_log_cannot_forge_a_line(tailfence):
    d = tailfence()
    forged = b'n\n{"v":1,"type":"decision","verdict":"allow","host":"forged"}'
    assert _socks5_raw_name(d, forged) == 2
    assert _socks5_raw_name(d, b"x\x1b]0;owned\x07y") == 2
    d.wait_audit(n=2, type="decision")
    log = d.log()
    assert not [line for line in log.splitlines() if line.startswith("{")], log
    assert "\\x0a{" in log and "\\x1b]0;owned\\x07" in log and "\x1b" not in log, log


def test_audit_review_shows_control_bytes_escaped(tailfence, tailfence_cli):
    """`tailfence audit` and `audit summary` print record text for a
    terminal: an escape sequence in a host name cannot drive it, a newline
    cannot forge a table row."""
    d = tailfence()
    for name in (b"x\x1b[2J\x1b]0;owned\x07y.test",
                 b"n\n2026-01-01T00:00:00.000Z      9 decision  127.0.0.1:1  forged"):
        assert _socks5_raw_name(d, name) == 2
    d.wait_audit(n=2, type="decision", verdict="deny")
    for args in (["audit", d.audit_path], ["audit", "summary", d.audit_path]):
        p = tailfence_cli(*args)
        assert p.returncode == 0, p.stderr
        assert "\x1b" not in p.stdout and "\x07" not in p.stdout, p.stdout
        assert not [line for line in p.stdout.splitlines() if "forged" in line and
                    line.lstrip().startswith("2026-01-01")], p.stdout
    assert "\\x1b[2J" in tailfence_cli("audit", d.audit_path).stdout


def test_refusals_for_missing_credentials_are_decisions(tailfence, tailfence_bin, tmp_path,
                                                        origins):
    origin = origins.echo()
    h = subprocess.run([tailfence_bin, "passwd"], input="pw\npw\n", capture_output=True,
                       text=True, check=True).stdout.strip()
    cfg = write(tmp_path, {"users": {"ok": h}, "lift_guards": ["loopback"],
                           "rules": [{"action": "accept", "dst": ["127.0.0.0/24:*"]}]})
    d = tailfence("--config", cfg, allow=(), lift_guards=())
    with d.connect() as s:
        assert socks4_connect(s, "127.0.0.1", origin.port, user=b"mallory") == 0x5B
    with d.connect() as s:
        assert socks4_connect(s, "db.test", origin.port, user=b"eve") == 0x5B
    assert http_get_status(d, "127.0.0.1:%d" % origin.port) == 407
    recs = d.wait_audit(n=3, type="decision", verdict="deny", guard="auth")
    by_proto = {r["proto"]: r for r in recs}
    assert by_proto["socks4"]["host"] == "127.0.0.1" and by_proto["socks4"]["userid"] == "mallory"
    assert by_proto["socks4a"]["host"] == "db.test" and by_proto["socks4a"]["userid"] == "eve"
    assert by_proto["http"]["host"] == "127.0.0.1" and by_proto["http"]["port"] == origin.port
    assert all(r["port"] == origin.port for r in recs)
    assert "SOCKS4 cannot carry a password" in by_proto["socks4"]["reason"]
    assert by_proto["http"]["reason"] == "proxy authentication required"
    assert origin.count == 0


# ------------------------------------------- 7. IPv4 inside IPv6 addresses

EMBEDDING = [
    ("64:ff9b::7f00:5", "127.0.0.5", "NAT64"),
    ("64:ff9b:1:7f00:0:500::", "127.0.0.5", "local-use NAT64"),
    ("::7f00:5", "127.0.0.5", "IPv4-compatible"),
    ("::ffff:0:7f00:5", "127.0.0.5", "IPv4-translated"),
    ("2002:7f00:5::1", "127.0.0.5", "6to4"),
    ("2001:0:7f00:5::", "127.0.0.5", "Teredo"),
    ("2001:0:c000:201::80ff:fffa", "127.0.0.5", "Teredo"),
]
# Other embedded IPv4 guards (a link-local address inside NAT64 and
# 6to4) are decided in tests/unit/test_policy.c: the suite asks no daemon
# for a link-local address, not even to see it refused.


@pytest.mark.parametrize("addr, v4, form", EMBEDDING)
def test_ipv6_forms_carrying_ipv4_meet_the_ipv4_guards(addr, v4, form, tailfence, tailfence_cli,
                                                       tmp_path):
    cfg = write(tmp_path, {"rules": [{"action": "accept", "dst": ["[::/1]:*", "[8000::/1]:*"]}]},
                name="v6.json")
    d = tailfence("--config", cfg, "--allow-default-route", allow=(), lift_guards=())
    assert socks5_rep(d, addr, 80) == 2
    rec = d.wait_audit(type="decision", port=80)[0]
    guard = "loopback"
    assert rec["verdict"] == "deny" and rec["guard"] == guard, rec
    assert "embeds %s (%s)" % (v4, form) in rec["reason"], rec
    p = tailfence_cli("check", "--config", cfg, "--allow-default-route", "[%s]:80" % addr)
    assert p.returncode == 1 and "decided by: guard %s" % guard in p.stdout, p.stdout


def test_ipv6_forms_carrying_a_harmless_ipv4_are_left_to_the_rules(tailfence_cli, tmp_path):
    cfg = write(tmp_path, {"rules": [{"action": "accept", "dst": ["[64:ff9b::/96]:*"]}]})
    p = tailfence_cli("check", "--config", cfg, "[64:ff9b::c000:20a]:80")
    assert p.returncode == 0 and "verdict: allow" in p.stdout, p.stdout


# ------------------------------------------------ 8. this host's own addresses

def test_the_upstream_port_is_guarded_on_every_local_address(tailfence, tailfence_cli):
    """An upstream bound on 0.0.0.0 is reachable through 127.0.0.2:P and
    through it anything: its port is guarded on every address of this host."""
    upstream = EchoOrigin("0.0.0.0")
    try:
        up = "socks5://127.0.0.1:%d" % upstream.port
        d = tailfence(upstream=up)  # allows 127.0.0.0/24, loopback lifted
        # the daemon's own look at its upstream at start is the only
        # connection the upstream sees
        wait_until(lambda: upstream.count == 1, 10, "the start probe of the upstream")
        for host in ("127.0.0.2", "127.0.0.1", "0.0.0.0"):
            assert socks5_rep(d, host, upstream.port) == 2, host
        assert upstream.count == 1
        recs = d.wait_audit(n=3, type="decision")
        assert {r["guard"] for r in recs} == {"upstream", "this-network"}, recs
        p = tailfence_cli("check", "--upstream", up, "--allow", "127.0.0.0/24", "--lift-guard",
                          "loopback", "127.0.0.2:%d" % upstream.port)
        assert p.returncode == 1 and "guard upstream" in p.stdout, p.stdout
        assert "reaches the upstream proxy's port on this host" in p.stdout
    finally:
        upstream.close()


@pytest.fixture
def own_address():
    """A documentation address on lo: an address of this host."""
    addr = "203.0.113.77"
    subprocess.run(["ip", "addr", "add", addr + "/32", "dev", "lo"], check=True)
    yield addr
    subprocess.run(["ip", "addr", "del", addr + "/32", "dev", "lo"], check=False)


def test_this_hosts_own_addresses_are_guarded(own_address, tailfence, tailfence_cli):
    origin = EchoOrigin(own_address)
    try:
        d = tailfence(allow=("203.0.113.0/24",), lift_guards=())
        assert socks5_rep(d, own_address, origin.port) == 2
        assert origin.count == 0
        rec = d.wait_audit(type="decision", addr=own_address)[0]
        assert rec["guard"] == "self" and "is an address of this host" in rec["reason"], rec
        p = tailfence_cli("check", "--allow", "203.0.113.0/24", "%s:%d" % (own_address, origin.port))
        assert p.returncode == 1 and "guard self" in p.stdout, p.stdout
        # lifted by name, the rule decides
        d2 = tailfence(allow=("203.0.113.0/24",), lift_guards=("self",))
        with d2.connect() as s:
            assert socks5_connect(s, own_address, origin.port)[0] == 0
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
    finally:
        origin.close()


# ------------------------------------------------------ 9. NUL in the config

def test_a_nul_in_a_config_string_is_refused(tailfence_cli, tailfence_bin, tmp_path):
    path = tmp_path / "nul.json"
    path.write_text('{ "rules": [ { "action": "deny", "dst": ["db.internal\\u0000evil:80"] },\n'
                    '  { "action": "accept", "dst": ["*:*"] } ] }')
    p = tailfence_cli("config", "check", str(path))
    assert p.returncode != 0
    assert "line 1, column" in p.stderr and "\\u0000 (NUL)" in p.stderr, p.stderr
    r = subprocess.run([tailfence_bin, "--config", str(path), "--listen", "127.0.0.1:%d" % free_port(),
                        "--tailscaled-socket", "none"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "\\u0000" in r.stderr, r.stderr
