"""tailfence follows the tailnet: the fence is what the tailnet carries.

Everything here runs over the real tailnet of the harness (tests/integration/
tailnet/): tailfence in A dials through tailscaled A's SOCKS5, and bytes reach
B's subnet (192.0.2.0/24, 2001:db8:99::/64, existing only in B) over
WireGuard in DERP frames. tailfence gets no --allow at all: only the socket.
"""
import json
import re
import subprocess
import time
import uuid

import pytest

from helpers import (clean_env, connect, read_http_response, socks4_connect, socks5_connect,
                     wait_closed, wait_until)
from tailnet import write_proxychains_conf

FORWARD_LINE = "netstack: forwarding incoming connection to %s"
DEFAULT_RULE = "default: accept tailnet:* for every user"


def hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def fence(tailfence, tn, *args):
    """tailfence in A following tailscaled A, nothing else allowed; waits
    until it has seen the tailnet running."""
    d = tailfence("--tailscaled-socket", tn.a_socket, *args,
                  upstream="socks5://" + tn.a_proxy, allow=(), lift_guards=())
    d.wait_audit(type="tailnet", state="running", timeout=30)
    return d


def unique(tag):
    return "/fence/%s/%s" % (tag, uuid.uuid4().hex[:12])


def b_saw(tn, path):
    return [h for h in tn.web_hits() if h["path"] == path]


def get_via_socks(d, host, port, path, version=5):
    """GET path on host:port through tailfence with SOCKS5 (or 4a for
    names); returns (reply, status, body)."""
    with d.connect(timeout=30) as s:
        if version == 5:
            rep, _, _ = socks5_connect(s, host, port)
            ok = rep == 0
        else:
            rep = socks4_connect(s, host, port)
            ok = rep == 0x5a
        if not ok:
            return rep, None, None
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                   % (path, hostport(host, port))).encode())
        status, _, body, _ = read_http_response(s)
        return rep, status, body


def http_request(d, raw, timeout=30):
    with d.connect(timeout=timeout) as s:
        s.sendall(raw)
        return read_http_response(s)


def test_no_direct_path_from_a(tailnet):
    """The premise: from A, B's subnet is reachable only over the tailnet."""
    with pytest.raises(OSError):
        connect(80, tailnet.web_v4[0], timeout=5)


@pytest.mark.parametrize("proto, family", [
    ("socks5", "v4"), ("socks5", "v6"), ("socks4", "v4"),
    ("http-connect", "v4"), ("http-connect", "v6"), ("http", "v4"), ("http", "v6"),
])
def test_fence_reaches_the_subnet_over_wireguard(tailfence, tailnet, proto, family):
    """With only the socket configured, SOCKS5, SOCKS4 and HTTP reach B's
    web server over IPv4 and IPv6; B's web server and B's tailscaled saw
    it; the decision names the path and the peer that carried it."""
    tn = tailnet
    d = fence(tailfence, tn)
    host, port = tn.web_v4 if family == "v4" else tn.web_v6
    path = unique("%s-%s" % (proto, family))
    forwarded = tn.b_log().count(FORWARD_LINE % hostport(host, port))

    if proto in ("socks5", "socks4"):
        rep, status, body = get_via_socks(d, host, port, path, 5 if proto == "socks5" else 4)
        assert status == 200, "reply %r\n%s" % (rep, d.log())
    elif proto == "http-connect":
        with d.connect(timeout=30) as s:
            s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                       % (hostport(host, port), hostport(host, port))).encode())
            st, _, _, _ = read_http_response(s, body=False)
            assert st == 200, d.log()
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
            status, _, body, _ = read_http_response(s)
    else:
        status, _, body, _ = http_request(
            d, ("GET http://%s%s HTTP/1.1\r\nHost: x\r\n\r\n" % (hostport(host, port), path)).encode())
    assert status == 200
    assert json.loads(body)["server"] == "tailnet-b-web"
    assert len(b_saw(tn, path)) == 1
    wait_until(lambda: tn.b_log().count(FORWARD_LINE % hostport(host, port)) > forwarded, 15,
               "B's tailscaled to log forwarding the connection")

    rec = d.wait_audit(type="decision", verdict="allow", addr=host)[-1]
    assert rec["rule"] == DEFAULT_RULE
    assert rec["path"] == "tailnet"
    assert rec["peer"]["name"] == tn.b_dnsname.rstrip(".")
    assert rec["peer"]["route"] == (tn.route_v4 if family == "v4" else tn.route_v6)
    assert rec["upstream"] == "socks5://" + tn.a_proxy


def test_split_dns_name_through_socks4a_and_absolute_form(tailfence, tailnet):
    """db.corp.example exists only in B's DNS server, which the tailnet's
    split DNS names: tailfence asks tailscaled's resolver, checks the answer
    and dials the address it checked."""
    tn = tailnet
    d = fence(tailfence, tn)
    queries = len(tn.dns_queries())
    path = unique("socks4a-split")
    rep, status, body = get_via_socks(d, tn.db_name, 80, path, version=4)
    assert status == 200, "SOCKS4a reply %r\n%s" % (rep, d.log())
    assert json.loads(body)["local"] == "192.0.2.10:80"
    assert len(tn.dns_queries()) > queries, "B's resolver was not asked"
    path = unique("absolute-split")
    status, _, body, _ = http_request(
        d, ("GET http://%s%s HTTP/1.1\r\nHost: x\r\n\r\n" % (tn.db_name, path)).encode())
    assert status == 200 and len(b_saw(tn, path)) == 1
    recs = d.wait_audit(2, type="decision", verdict="allow", host=tn.db_name)
    assert {r["proto"] for r in recs} == {"socks4a", "http"}
    assert all(r["addr"] in ("192.0.2.10", "2001:db8:99::10") and r["path"] == "tailnet"
               for r in recs)


def test_psql_with_database_url_naming_a_split_dns_host(tailfence, tailnet, tmp_path):
    """The deployment's database recipe: psql under proxychains4 (proxy_dns)
    with a DATABASE_URL naming db.corp.example reaches B's PostgreSQL."""
    tn = tailnet
    d = fence(tailfence, tn)
    conf = str(tmp_path / "proxychains.conf")
    write_proxychains_conf(conf, d.addr)
    database_url = tn.pg_dsn(host=tn.db_name)
    p = subprocess.run(["proxychains4", "-q", "-f", conf, "psql", "-X", "-At", database_url,
                        "-c", "select 'reached ' || inet_server_addr()"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=90,
                       env=clean_env(PGCONNECT_TIMEOUT="20"))
    assert p.returncode == 0, p.stderr + d.log()
    assert p.stdout.strip() in ("reached 192.0.2.10/32", "reached 2001:db8:99::10/128")
    rec = d.wait_audit(type="decision", host=tn.db_name, port=tn.pg.port)[-1]
    assert rec["verdict"] == "allow" and rec["path"] == "tailnet"


def test_magicdns_name_reaches_a_peer(tailfence, tailnet):
    """B's MagicDNS name (full or short) resolves from the netmap to B's
    tailnet address; tailscaled B hands the connection to its loopback,
    where the web server also listens."""
    tn = tailnet
    d = fence(tailfence, tn)
    for name in (tn.b_dnsname, tn.hostname_b):
        path = unique("magicdns")
        rep, status, body = get_via_socks(d, name, tn.web_self_port, path)
        assert status == 200, "%s: reply %r\n%s" % (name, rep, d.log())
        assert json.loads(body)["local"] == "127.0.0.1:%d" % tn.web_self_port
        rec = d.wait_audit(type="decision", host=name)[-1]
        assert rec["addr"] in tn.b_ips and rec["path"] == "tailnet"
        assert rec["peer"]["route"] is None  # a peer's own address


def test_what_nobody_carries_and_own_address_are_denied(tailfence, tailnet):
    """198.51.100.7 is in nobody's routes, and A's own tailnet address would
    be handed to A's loopback: both are denied with the reason, over every
    protocol, and nothing is dialed."""
    tn = tailnet
    d = fence(tailfence, tn)
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, tn.unrouted_v4, 80)
    assert rep == 2  # connection not allowed by ruleset
    status, _, body, _ = http_request(
        d, b"GET http://198.51.100.7/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 403 and b"no rule accepts 198.51.100.7:80" in body
    recs = d.wait_audit(2, type="decision", addr=tn.unrouted_v4)
    assert all(r["verdict"] == "deny" and r["path"] == "host" and r["peer"] is None
               for r in recs)

    own = tn.a_ips[0]
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, own, 22)
    assert rep == 2
    rec = d.wait_audit(type="decision", addr=own)[0]
    assert rec["verdict"] == "deny" and rec["guard"] == "self", rec
    assert "own Tailscale address" in rec["reason"]


def test_a_via_tailnet_rule_never_dials_through_the_host(tailfence, tailnet, tmp_path):
    """A rule naming a prefix no peer carries is still refused, with the
    reason, because tailscaled would dial it through the host."""
    tn = tailnet
    cfg = tmp_path / "rules.json"
    cfg.write_text(json.dumps({"rules": [
        {"name": "wrong subnet", "action": "accept", "dst": ["198.51.100.0/24:80"]},
        {"name": "b", "action": "accept", "dst": ["192.0.2.10:80"]}]}))
    d = fence(tailfence, tn, "--config", str(cfg))
    status, _, body, _ = http_request(d, b"GET http://198.51.100.7/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 403
    assert b"no peer carries 198.51.100.7; tailscaled would dial it through the host network" in body
    path = unique("rule-b")
    rep, status, _ = get_via_socks(d, tn.web_v4[0], 80, path)
    assert status == 200
    assert d.wait_audit(type="decision", addr=tn.web_v4[0])[0]["rule"] == "b"


def _socks_reply(d, host, port):
    """The SOCKS5 reply code, or None when the connection ended without one
    (polled while the tailnet changes, where a try may fail outright)."""
    with d.connect(timeout=30) as s:
        try:
            rep, _, _ = socks5_connect(s, host, port)
        except (OSError, EOFError):
            return None
        return rep


def test_revoke_and_reapprove_without_restart(tailfence, tailnet):
    """A route revoked in Headscale denies new connections (reply 2, not a
    dial failure) without a restart, and the tailnet record says what was
    removed; approving it again allows them again."""
    tn = tailnet
    d = fence(tailfence, tn)
    host = tn.web_v4[0]
    assert _socks_reply(d, host, 80) == 0

    t0 = time.monotonic()
    tn.revoke_routes()
    wait_until(lambda: _socks_reply(d, host, 80) == 2, 30, "a denial after the revoke")
    print("revoke -> first denial: %.2fs (headscale, tailscaled A, tailfence)"
          % (time.monotonic() - t0))
    def removed():
        return {e["prefix"] for r in d.audit() if r.get("type") == "tailnet"
                for e in r["removed"] if e["peer"] == tn.b_dnsname.rstrip(".")}
    wait_until(lambda: removed() >= set(tn.routes), 10, "a tailnet record naming both routes")
    deny = d.wait_audit(type="decision", addr=host, verdict="deny")[-1]
    assert "no rule accepts" in deny["reason"] and deny["path"] == "host"

    tn.approve_routes()
    wait_until(lambda: _socks_reply(d, host, 80) == 0, 30, "an allow after re-approving")

    def added_v4():
        return sum(1 for r in d.audit() if r.get("type") == "tailnet"
                   for e in r["added"] if e["prefix"] == tn.route_v4)
    wait_until(lambda: added_v4() >= 2, 10, "a tailnet record adding the route again")
    assert d.alive()
    # what an operator reads in the trail (shown with pytest -s)
    for r in d.audit():
        if r.get("type") == "tailnet" or r.get("addr") == host:
            print(json.dumps(r, separators=(",", ":")))


def test_tailscaled_stopped_fails_closed(tailfence, tailnet, tailfence_cli):
    """tailscaled A stopped: tailnet destinations are denied with the reason
    (not dialed), the trail records the state, status says it; after the
    restart they are allowed again."""
    tn = tailnet
    d = fence(tailfence, tn)
    tn.stop_a()
    wait_until(lambda: any(r.get("type") == "tailnet" and r.get("state") == "unknown"
                           for r in d.audit()), 20, "a tailnet record saying unknown")
    status, _, body, _ = http_request(d, b"GET http://192.0.2.10/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 403
    assert body.startswith(b"tailnet state unknown: ") and tn.a_socket.encode() in body, body
    p = tailfence_cli("status", "--tailscaled-socket", tn.a_socket)
    assert p.returncode == 1 and "tailnet: unknown" in p.stdout, p.stdout

    tn.start_a()
    wait_until(lambda: _socks_reply(d, tn.web_v4[0], 80) == 0, 60, "an allow after the restart")
    assert d.alive()


def test_check_and_status_say_what_the_daemon_does(tailfence, tailnet, tailfence_cli):
    tn = tailnet
    d = fence(tailfence, tn)
    base = ["--tailscaled-socket", tn.a_socket, "--upstream", "socks5://" + tn.a_proxy]
    p = tailfence_cli("check", *base, "%s:5432" % tn.db_name)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "addresses (tailscaled):" in p.stdout
    assert re.search(r"^path: tailnet \(peer %s, id \S+, route 192\.0\.2\.0/24\)$"
                     % re.escape(tn.b_dnsname.rstrip(".")), p.stdout, re.M), p.stdout
    p = tailfence_cli("check", *base, "198.51.100.7:80")
    assert p.returncode == 1 and "reason: no rule accepts 198.51.100.7:80" in p.stdout
    assert "path: host" in p.stdout
    p = tailfence_cli("check", *base, "%s:22" % tn.a_ips[0])
    assert p.returncode == 1 and "decided by: guard self" in p.stdout

    p = tailfence_cli("status", *base, "--json")
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["state"] == "running" and st["accept_routes"] is True
    assert st["self"]["addrs"] == list(tn.a_ips)
    (peer,) = [x for x in st["peers"] if x["name"] == tn.b_dnsname.rstrip(".")]
    assert sorted(peer["routes"]) == sorted(tn.routes) and peer["online"]
    assert {c["prefix"] for c in st["carried"]} >= set(tn.routes)
    assert tn.split_domain in st["split_dns"]
    p = tailfence_cli("status", *base)
    assert p.returncode == 0 and "tailnet: running (backend Running)" in p.stdout
    assert "routes carried: %s, %s" % tn.routes in p.stdout
    assert d.alive()


def _open_keepalive(d, tn):
    """A SOCKS5 relay to B's web server kept open (HTTP/1.1 keep-alive);
    returns the socket after one answered request."""
    s = d.connect(timeout=30)
    rep, _, _ = socks5_connect(s, tn.web_v4[0], 80)
    assert rep == 0, d.log()
    s.sendall(b"GET /keepalive HTTP/1.1\r\nHost: b\r\n\r\n")
    status, _, _, _ = read_http_response(s)
    assert status == 200
    return s


@pytest.mark.parametrize("close_revoked", [False, True])
def test_open_relays_after_a_revoke(tailfence, tailnet, close_revoked):
    """By default a revoke stops new connections and leaves open relays to
    tailscaled; with --close-revoked tailfence closes them itself, with end
    reason "revoked" and the reason in the close record."""
    tn = tailnet
    d = fence(tailfence, tn, *(["--close-revoked"] if close_revoked else []))
    s = _open_keepalive(d, tn)
    conn = d.wait_audit(type="decision", addr=tn.web_v4[0], verdict="allow")[-1]["conn"]
    tn.revoke_routes()
    wait_until(lambda: _socks_reply(d, tn.web_v4[0], 80) == 2, 30, "new connections denied")
    if close_revoked:
        assert wait_closed(s, 30), "the relay was not closed"
        rec = d.wait_close(conn)
        assert rec["end"] == "revoked" and "no rule accepts 192.0.2.10:80" in rec["error"], rec
    else:
        s.close()
        rec = d.wait_close(conn)
        assert rec["end"] != "revoked", rec
    s.close()
