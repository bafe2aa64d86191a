"""The tailnet harness (tests/integration/tailnet/) does what it claims.

Only tailscaled A's own proxy is used here (no tailfence): a real tailnet
with Headscale and its embedded DERP in namespace H and a subnet router B
in namespace B, reachable from here only through the tailnet. Each test says
what it proves and waits with a deadline, never a fixed sleep.
"""
import json
import os
import socket
import subprocess
import uuid

import pytest

from helpers import (clean_env, connect, curl, free_port, read_http_response, socks5_connect,
                     wait_until)
from tailnet import Tailnet, missing_requirements, write_proxychains_conf

FORWARD_LINE = "netstack: forwarding incoming connection to %s"


def _hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def socks_get(tn, host, port, path, timeout=30):
    """GET path from host:port through A's tailscaled SOCKS5. Returns
    (socks reply, status, decoded JSON body or None)."""
    with connect(tn.a_proxy_port, timeout=timeout) as s:
        rep, _, _ = socks5_connect(s, host, port)
        if rep != 0:
            return rep, None, None
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                   % (path, _hostport(host, port))).encode())
        status, _, body, _ = read_http_response(s)
        return rep, status, json.loads(body)


def unique_path(tag):
    return "/harness/%s/%s" % (tag, uuid.uuid4().hex[:12])


def hits_for(tn, path):
    return [h for h in tn.web_hits() if h["path"] == path]


def test_subnet_is_not_reachable_from_a_directly(tailnet):
    """The subnet exists only in B: from A a plain connection fails at once
    (no such address, no route), and B's web server sees nothing."""
    before = len(tailnet.web_hits())
    for host, family in ((tailnet.web_v4[0], socket.AF_INET), (tailnet.web_v6[0], socket.AF_INET6)):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            with pytest.raises(OSError) as err:
                s.connect((host, 80))
            print("direct connect to %s: %r" % (host, err.value))
    assert len(tailnet.web_hits()) == before


def test_unrouted_address_is_not_carried(tailnet):
    """198.51.100.7 is in nobody's routes: tailscaled A dials it through
    A's own network, which has no route, so the SOCKS5 request fails."""
    assert tailnet.unrouted_v4 not in json.dumps(tailnet.status_a().get("Peer"))
    with connect(tailnet.a_proxy_port, timeout=30) as s:
        rep, _, _ = socks5_connect(s, tailnet.unrouted_v4, 80)
    assert rep != 0


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_socks5_through_a_reaches_b_web(tailnet, family):
    """Through A's tailscaled SOCKS5, a GET reaches B's web server over the
    tailnet; the server recorded it and B's netstack logged forwarding it."""
    host, port = tailnet.web_v4 if family == "v4" else tailnet.web_v6
    line = FORWARD_LINE % _hostport(host, port)
    forwarded_before = tailnet.b_log().count(line)
    path = unique_path("socks5-" + family)

    rep, status, body = socks_get(tailnet, host, port, path)

    assert rep == 0, "SOCKS5 reply 0x%02x for %s\n%s" % (rep, host, tailnet.logs())
    assert status == 200
    assert body["server"] == "tailnet-b-web"
    assert body["local"] == _hostport(host, port)
    assert body["path"] == path
    hits = hits_for(tailnet, path)
    assert len(hits) == 1 and hits[0]["local"] == host, tailnet.web_hits()
    wait_until(lambda: tailnet.b_log().count(line) > forwarded_before, 30,
               "B's tailscaled to log %r" % line)


def test_http_proxy_through_a_reaches_b_web(tailnet):
    """The same listener speaks HTTP proxy too (tailscaled's
    --outbound-http-proxy-listen): curl with --proxy reaches B."""
    path = unique_path("http-proxy")
    r = curl("http://%s:%d%s" % (tailnet.web_v4 + (path,)), proxy="http://" + tailnet.a_proxy)
    assert r.returncode == 0 and r.http_code == 200, r
    assert r.json()["server"] == "tailnet-b-web"
    assert len(hits_for(tailnet, path)) == 1


def test_split_dns_goes_over_the_tailnet_to_b(tailnet):
    """A's tailscaled resolver sends corp.example questions to B's DNS server
    (split DNS from Headscale), through the tailnet: the server saw them,
    arriving from B's own side over TCP (A's UDP attempt has no route)."""
    before = len(tailnet.dns_queries())

    a = tailnet.dns_query_a(tailnet.db_name + ".", "A")
    assert a["rcode"] == "NOERROR" and a["addresses"] == [tailnet.web_v4[0]], a
    assert [r.get("Addr") for r in a["resolvers"]] == [tailnet.dns_v4[0]]
    aaaa = tailnet.dns_query_a(tailnet.db_name + ".", "AAAA")
    assert aaaa["rcode"] == "NOERROR" and aaaa["addresses"] == [tailnet.web_v6[0]], aaaa
    missing = "nothing-%s.%s." % (uuid.uuid4().hex[:8], tailnet.split_domain)
    assert tailnet.dns_query_a(missing, "A")["rcode"] == "NXDOMAIN"

    def seen():
        got = [(q["name"], q["type"]) for q in tailnet.dns_queries()[before:]]
        return {(tailnet.db_name, "A"), (tailnet.db_name, "AAAA"),
                (missing.rstrip("."), "A")} <= set(got)
    wait_until(seen, 30, "B's DNS server to record the three questions")
    new = tailnet.dns_queries()[before:]
    assert {q["transport"] for q in new} == {"tcp"}, new
    assert {q["client"] for q in new} <= {tailnet.web_v4[0], tailnet.dns_v4[0]}, new


def test_magicdns_name_of_b_in_a_status(tailnet):
    """A's LocalAPI status lists B under its MagicDNS name with its tailnet
    addresses, and A's resolver answers that name with them."""
    assert tailnet.magicdns_suffix == tailnet.magicdns_base
    assert tailnet.b_dnsname == "%s.%s." % (tailnet.hostname_b, tailnet.magicdns_suffix)
    peer = tailnet.peer_b()
    assert peer is not None and peer["DNSName"] == tailnet.b_dnsname
    assert tuple(peer["TailscaleIPs"]) == tailnet.b_ips
    assert peer["Online"] is True
    ans = tailnet.dns_query_a(tailnet.b_dnsname, "A")
    assert ans["addresses"] == [tailnet.b_ips[0]], ans


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_psql_through_proxychains_reaches_b_postgres(tailnet, tmp_path, family):
    """psql, made to use A's tailscaled SOCKS5 by proxychains4, runs queries
    on B's PostgreSQL at 192.0.2.10 (or 2001:db8:99::10) with password
    authentication."""
    host = tailnet.pg.host if family == "v4" else tailnet.pg.host_v6
    conf = write_proxychains_conf(tmp_path / "proxychains.conf", tailnet.a_proxy)
    line = FORWARD_LINE % _hostport(host, tailnet.pg.port)
    forwarded_before = tailnet.b_log().count(line)
    r = subprocess.run(["proxychains4", "-q", "-f", conf, "psql", "-X", "-A", "-t",
                        "-c", "select 1", "-c", "select string_agg(name, ',' order by id) from items",
                        "-c", "select host(inet_server_addr())", tailnet.pg_dsn(host=host)],
                       capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
                       env=clean_env())
    assert r.returncode == 0, "psql exited %d\nstdout: %s\nstderr: %s" % (
        r.returncode, r.stdout, r.stderr)
    assert r.stdout.split() == ["1", "alpha,beta,gamma", host], r.stdout
    wait_until(lambda: tailnet.b_log().count(line) > forwarded_before, 30,
               "B's tailscaled to log %r" % line)


def test_revoked_routes_stop_carrying_and_reapproval_restores(tailnet):
    """Revoking B's routes in Headscale: A's status drops them (bounded
    wait) and a SOCKS5 dial to 192.0.2.10 no longer reaches B. Approving
    them again makes it work again."""
    tailnet.revoke_routes(timeout=60)
    assert tailnet.b_routes_seen_by_a() == []
    assert tailnet.headscale_routes()[1] == []
    path = unique_path("revoked")
    rep, _, _ = socks_get(tailnet, tailnet.web_v4[0], 80, path)
    assert rep != 0
    assert hits_for(tailnet, path) == []

    tailnet.approve_routes(timeout=60)
    assert tailnet.b_routes_seen_by_a() == sorted(tailnet.routes)
    path = unique_path("reapproved")
    rep, status, body = socks_get(tailnet, tailnet.web_v4[0], 80, path)
    assert (rep, status) == (0, 200), tailnet.logs()
    assert len(hits_for(tailnet, path)) == 1


def test_restarted_a_rejoins_with_its_state(tailnet):
    """stop_a() stops tailscaled A (its proxy goes away); start_a() brings
    it back from the same state directory, Running, with B's routes."""
    ips = tailnet.a_ips
    tailnet.stop_a()
    with pytest.raises(OSError):
        connect(tailnet.a_proxy_port, timeout=5).close()
    tailnet.start_a()
    assert tuple(tailnet.status_a()["Self"]["TailscaleIPs"]) == ips
    path = unique_path("after-restart")
    rep, status, _ = socks_get(tailnet, tailnet.web_v4[0], 80, path)
    assert (rep, status) == (0, 200)


def test_teardown_leaves_no_process_and_no_namespace(tmp_path, tailnet):
    """A second, throw-away tailnet: after close() none of its processes
    runs, nothing holds its namespaces, and its ports and sockets are gone.
    (Needs the session tailnet only to share the skip conditions.)"""
    assert not missing_requirements()
    tn = Tailnet(tmp_path / "tn2", free_port=free_port)
    with tn:
        pids = tn.pids()
        namespaces = (tn.ns_b, tn.ns_h)
        sock_dir = tn.sock_dir
        rep, status, _ = socks_get(tn, tn.web_v4[0], 80, unique_path("second-tailnet"))
        assert (rep, status) == (0, 200)
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        assert state == "Z", "pid %d survived teardown" % pid
    for ns in namespaces:
        assert ns.remains() == [], "namespace %s still held" % ns.name
    with pytest.raises(OSError):
        connect(tn.a_proxy_port, timeout=5).close()
    with pytest.raises(OSError):
        connect(tn.hs_port, timeout=5).close()
    assert not os.path.exists(sock_dir)
