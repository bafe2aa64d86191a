"""
Issue 2: allow vs deny on loopback sub-ranges. The daemon allows
127.0.0.0/24 (the fixture's default --allow, loopback guard lifted) and
nothing else, so origins on 127.0.1.x are "outside the routes". A denied
origin must see no connection at all, the client gets its protocol's refusal
(SOCKS5 0x02, SOCKS4 0x5B, HTTP 403) and the trail a deny decision plus a
close record; an allowed connection gets an allow decision and a close record
with the bytes each way.
"""

import socket

import pytest

from helpers import (EchoOrigin, connect, curl, free_port, read_http_response, recv_all,
                     recv_exact, socks4_connect, socks5_connect, wait_until)

DENIED = "127.0.1.1"


def assert_denied_trail(d, addr, port, proto=None):
    match = dict(type="decision", verdict="deny", addr=addr, port=port)
    if proto:
        match["proto"] = proto
    dec = d.wait_audit(**match)[0]
    assert dec.get("reason"), "deny decision without a reason: %r" % dec
    d.wait_close(dec["conn"])
    return dec


def test_socks5_denied_origin_sees_nothing(tailfence, origins, echo_origin):
    denied = origins.echo(DENIED)
    d = tailfence()
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, DENIED, denied.port)
        assert rep == 0x02, "SOCKS5 reply 0x%02x, expected 0x02 (not allowed by ruleset)" % rep
    assert_denied_trail(d, DENIED, denied.port, "socks5")
    d.assert_serves(echo_origin)
    assert denied.count == 0, "denied origin saw %d connection(s)" % denied.count


def test_socks4_denied_origin_sees_nothing(tailfence, origins, echo_origin):
    denied = origins.echo(DENIED)
    d = tailfence()
    with d.connect() as s:
        code = socks4_connect(s, DENIED, denied.port)
        assert code == 0x5B, "SOCKS4 reply 0x%02x, expected 0x5B" % code
    assert_denied_trail(d, DENIED, denied.port, "socks4")
    d.assert_serves(echo_origin)
    assert denied.count == 0


def test_socks4a_name_resolving_to_denied_address(tailfence, origins, echo_origin, hosts_file):
    denied = origins.echo(DENIED)
    d = tailfence("--hosts-file", hosts_file({"denied.test": DENIED, "ok.test": "127.0.0.1"}))
    with d.connect() as s:
        assert socks4_connect(s, "denied.test", denied.port) == 0x5B
    dec = assert_denied_trail(d, DENIED, denied.port, "socks4a")
    assert dec["host"] == "denied.test"
    with d.connect() as s:
        assert socks4_connect(s, "ok.test", echo_origin.port) == 0x5A
        s.sendall(b"4a")
        assert recv_exact(s, 2) == b"4a"
    assert denied.count == 0


def test_socks5h_name_is_checked_by_its_address(tailfence, origins, echo_origin, hosts_file):
    # The name is resolved by tailfence and the address is what is checked
    # (and dialed): a name pointing into a denied range is denied.
    denied = origins.echo(DENIED)
    d = tailfence("--hosts-file", hosts_file({"sneaky.test": DENIED, "fine.test": "127.0.0.1"}))
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, "sneaky.test", denied.port)
        assert rep == 0x02
    dec = assert_denied_trail(d, DENIED, denied.port)
    assert dec["host"] == "sneaky.test"
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, "fine.test", echo_origin.port)
        assert rep == 0
        s.sendall(b"ok")
        assert recv_exact(s, 2) == b"ok"
    assert denied.count == 0


def test_http_connect_denied_403(tailfence, origins, echo_origin):
    denied = origins.https(DENIED)
    d = tailfence()
    with d.connect() as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (denied.hostport, denied.hostport)).encode())
        status, _, body, _ = read_http_response(s)
        assert status == 403, "CONNECT to a denied origin answered %d" % status
        assert body.strip(), "403 without a body naming the reason"
    assert_denied_trail(d, DENIED, denied.port, "http-connect")
    d.assert_serves(echo_origin)
    assert denied.count == 0


def test_http_absolute_form_denied_403(tailfence, origins, echo_origin):
    denied = origins.http(DENIED)
    d = tailfence()
    r = curl(denied.url + "secret", proxy=d.url("http"))
    assert r.http_code == 403, r
    assert r.body.strip(), "403 without a body naming the reason"
    assert_denied_trail(d, DENIED, denied.port, "http")
    d.assert_serves(echo_origin)
    assert denied.count == 0
    assert denied.requests == []


@pytest.mark.parametrize("scheme", ["socks5h", "socks5", "socks4", "socks4a"])
def test_curl_refused_for_denied_origin(scheme, tailfence, origins):
    denied = origins.http(DENIED)
    d = tailfence()
    r = curl(denied.url, proxy=d.url(scheme))
    assert r.returncode != 0 and r.http_code == 0, r
    d.wait_audit(type="decision", verdict="deny", addr=DENIED, port=denied.port)
    assert denied.count == 0


def test_allowed_connection_counts_bytes(tailfence, echo_origin):
    d = tailfence()
    payload = b"0123456789abcdef" * 4096  # 64 KiB
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, "127.0.0.1", echo_origin.port)
        assert rep == 0
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == payload
    dec = d.wait_audit(type="decision", verdict="allow", addr="127.0.0.1", port=echo_origin.port)[0]
    assert dec["proto"] == "socks5"
    close = d.wait_close(dec["conn"])
    assert close["bytes_up"] == len(payload), close
    assert close["bytes_down"] == len(payload), close
    assert echo_origin.count == 1


def test_socks5_reply_carries_bound_address(tailfence, echo_origin):
    d = tailfence()
    with d.connect() as s:
        rep, host, port = socks5_connect(s, "127.0.0.1", echo_origin.port)
        assert rep == 0
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        assert port != 0, "BND.PORT not filled in"


def test_port_list_limits_ports(tailfence, origins):
    ok = origins.echo("127.0.0.1")
    other = origins.echo("127.0.0.1")
    d = tailfence(allow=("127.0.0.0/24:%d" % ok.port,))
    with d.connect() as s:
        assert socks5_connect(s, "127.0.0.1", ok.port)[0] == 0
        s.sendall(b"p")
        assert recv_exact(s, 1) == b"p"
    with d.connect() as s:
        assert socks5_connect(s, "127.0.0.1", other.port)[0] == 0x02
    d.wait_audit(type="decision", verdict="deny", port=other.port)
    assert other.count == 0


def _echo_on_consecutive_ports(origins, n):
    """n echo origins on consecutive ports of 127.0.0.1."""
    for base in range(21000, 60000, 97):
        made = []
        try:
            for i in range(n):
                made.append(EchoOrigin("127.0.0.1", base + i))
        except OSError:
            for o in made:
                o.close()
            continue
        for o in made:
            origins._keep(o)
        return made
    raise RuntimeError("no %d consecutive free ports" % n)


def test_port_range_and_list(tailfence, origins):
    in_range, also_in_range, outside = _echo_on_consecutive_ports(origins, 3)
    single = origins.echo()
    spec = "127.0.0.0/24:%d-%d,%d" % (in_range.port, also_in_range.port, single.port)
    d = tailfence(allow=(spec,))
    for o in (in_range, also_in_range, single):
        with d.connect() as s:
            assert socks5_connect(s, "127.0.0.1", o.port)[0] == 0, "port %d of %s" % (o.port, spec)
    with d.connect() as s:
        assert socks5_connect(s, "127.0.0.1", outside.port)[0] == 0x02
    assert outside.count == 0


def test_loopback_guard_holds_unless_lifted(tailfence, echo_origin):
    # --allow 127.0.0.0/24 alone does not open loopback: the guard must be
    # lifted by name.
    d = tailfence(lift_guards=())
    with d.connect() as s:
        assert socks5_connect(s, "127.0.0.1", echo_origin.port)[0] == 0x02
    dec = d.wait_audit(type="decision", verdict="deny", port=echo_origin.port)[0]
    assert dec.get("guard") == "loopback", dec
    assert echo_origin.count == 0


def test_ipv6_loopback_needs_its_own_allow(tailfence, origins):
    v6 = origins.echo("::1")
    d = tailfence()
    with d.connect() as s:
        assert socks5_connect(s, "::1", v6.port)[0] == 0x02
    d.wait_audit(type="decision", verdict="deny", port=v6.port)
    assert v6.count == 0

    d6 = tailfence(allow=("127.0.0.0/24", "::1/128"))
    with d6.connect() as s:
        assert socks5_connect(s, "::1", v6.port)[0] == 0
        s.sendall(b"v6")
        assert recv_exact(s, 2) == b"v6"
    assert v6.count == 1


def test_ipv4_mapped_ipv6_is_checked_as_ipv4(tailfence, origins):
    denied = origins.echo(DENIED)
    d = tailfence()
    with d.connect() as s:
        assert socks5_connect(s, "::ffff:" + DENIED, denied.port)[0] == 0x02
    d.wait_audit(type="decision", verdict="deny", port=denied.port)
    assert denied.count == 0


def test_advertised_routes_are_allowed(tailfence, origins):
    routed = origins.echo("127.0.2.1")
    outside = origins.echo(DENIED)
    d = tailfence(allow=(), env={"TAILSCALE_ADVERTISE_ROUTES": "127.0.2.0/24,127.0.3.0/24"})
    with d.connect() as s:
        assert socks5_connect(s, "127.0.2.1", routed.port)[0] == 0
        s.sendall(b"r")
        assert recv_exact(s, 1) == b"r"
    with d.connect() as s:
        assert socks5_connect(s, DENIED, outside.port)[0] == 0x02
    assert outside.count == 0


def test_advertised_route_with_host_bits_is_refused(tailfence):
    d = tailfence(allow=(), env={"TAILSCALE_ADVERTISE_ROUTES": "127.0.2.1/24"}, wait=False)
    wait_until(lambda: not d.alive(), 15,
               "tailfence to refuse to start with a route that has host bits set",
               interval=0.05, detail=d.log)
    rc = d.wait_exit(expect=None)
    assert rc not in (0, None) and rc > 0, rc
    out = d.log()
    assert "127.0.2.1/24" in out and "127.0.2.0/24" in out, out


def test_default_route_is_not_allow_everything(tailfence):
    # An advertised default route (exit node) without allow_default_route
    # is refused at start-up, with a message naming the route: the daemon
    # never serves with it (config.c, apply_routes).
    d = tailfence(allow=(), env={"TAILSCALE_ADVERTISE_ROUTES": "0.0.0.0/0"}, wait=False)
    wait_until(lambda: not d.alive(), 15, "tailfence to refuse to start with a default route",
               interval=0.05, detail=d.log)
    rc = d.wait_exit(expect=None)
    assert rc is not None and rc > 0, rc
    out = d.log()
    assert "0.0.0.0/0" in out and "default route" in out, out


def test_name_with_denied_and_allowed_addresses_uses_only_allowed(tailfence, origins, hosts_file):
    # Every address of a name is checked; only allowed ones are tried.
    allowed = origins.echo("127.0.0.1")
    denied = origins._keep(EchoOrigin(DENIED, allowed.port))
    hosts = hosts_file({"multi.test": DENIED})
    with open(hosts, "a") as f:
        f.write("127.0.0.1 multi.test\n")  # the same name, a second address
    d = tailfence("--hosts-file", hosts)
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, "multi.test", allowed.port)
        assert rep == 0, "SOCKS5 reply 0x%02x for a name with one allowed address" % rep
        s.sendall(b"m")
        assert recv_exact(s, 1) == b"m"
    assert allowed.count == 1
    assert denied.count == 0
    dec = d.wait_audit(type="decision", verdict="allow", host="multi.test")[0]
    assert dec["addr"] == "127.0.0.1", dec


def test_http_connect_ipv6_literal(tailfence, origins):
    v6 = origins.echo("::1")
    d = tailfence(allow=("127.0.0.0/24", "::1/128"))
    with d.connect() as s:
        s.sendall(("CONNECT [::1]:%d HTTP/1.1\r\nHost: [::1]:%d\r\n\r\n" % (v6.port, v6.port)).encode())
        status, _, _, rest = read_http_response(s, body=False)
        assert status == 200
        s.sendall(b"six")
        assert rest + recv_exact(s, 3 - len(rest)) == b"six"
    dec = d.wait_audit(type="decision", verdict="allow", port=v6.port)[0]
    assert dec["addr"] == "::1", dec


def test_ipv6_listener(tailfence, echo_origin):
    p4, p6 = free_port(), free_port("::1")
    d = tailfence("--listen", "127.0.0.1:%d" % p4, "--listen", "[::1]:%d" % p6)
    with connect(p6, "::1") as s:
        assert socks5_connect(s, "127.0.0.1", echo_origin.port)[0] == 0
        s.sendall(b"v6 client")
        assert recv_exact(s, 9) == b"v6 client"
    dec = d.wait_audit(type="decision", verdict="allow", port=echo_origin.port)[0]
    assert dec["client"].startswith("[::1]") or dec["client"].startswith("::1"), dec
