"""Inbound fence: tailnet users reach a service of A's through tailfence, by
identity, audited (scenario 2 of docs/railway.md done without advertising a
route).

Everything runs over the harness's real tailnet (tests/integration/tailnet/):
tailscaled A serves tailnet port SERVE_PORT with `tailscale serve --tcp
SERVE_PORT --proxy-protocol 2 tcp://127.0.0.2:L`, where tailfence listens;
tailfence reads the PROXY header, asks tailscaled A's LocalAPI who the
source is (whois), decides the identity rules and relays to a PostgreSQL in
A's own namespace (the suite's `postgres` fixture on 127.0.0.1). Clients are
psql in namespace B, through `tailscale nc` of node B (user "harness",
allowed) or of a third node C (user mallory@example.com, denied), which
runs its own tailscaled in B's namespace. Nothing leaves the namespaces.
"""
import json
import os
import socket
import struct
import subprocess
import time

import pytest

from helpers import clean_env, connect, free_port, socks5_connect, wait_closed
from tailnet import wait_for
from tailnet.harness import TAILSCALE, TAILSCALED, Proc as NsProc

SOCAT = "/usr/bin/socat"
OTHER_USER, OTHER_EMAIL, OTHER_HOST = "mallory", "mallory@example.com", "tailnet-c"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src, sport, dst, dport):
    """A PROXY protocol v2 header for TCP over IPv4, as tailscaled writes it."""
    return (SIG + b"\x21\x11" + struct.pack("!H", 12) + socket.inet_aton(src)
            + socket.inet_aton(dst) + struct.pack("!HH", sport, dport))


# ------------------------------------------------------------------ node C

class Node:
    """A third tailnet node of another user: its own tailscaled (userspace,
    --no-logs-no-support, the harness's Headscale only) in namespace B."""

    def __init__(self, tn, workdir):
        self.tn = tn
        users = tn.headscale("users", "list") or []
        user = next((u for u in users if u.get("name") == OTHER_USER), None)
        if user is None:
            user = tn.headscale("users", "create", OTHER_USER, "--email", OTHER_EMAIL)
        key = tn.headscale("preauthkeys", "create", "--user", str(user["id"]), "--expiration",
                           "1h")["key"]
        self.state = os.path.join(workdir, "tailscaled-c")
        os.makedirs(self.state, exist_ok=True)
        self.socket = os.path.join(tn.sock_dir, "c.sock")
        self.proc = NsProc([TAILSCALED, "--tun=userspace-networking", "--no-logs-no-support",
                            "--socket=" + self.socket, "--statedir=" + self.state,
                            "--state=" + os.path.join(self.state, "tailscaled.state"),
                            "--port=0"],
                           os.path.join(workdir, "tailscaled-c.log"), netns=tn.ns_b,
                           env=tn.node_env(self.state))
        wait_for(lambda: self.proc.check_alive("tailscaled C") or os.path.exists(self.socket),
                 60, "tailscaled C's socket")
        up = self.cli("up", "--login-server=" + tn.control_url, "--auth-key=" + key,
                      "--hostname=" + OTHER_HOST, "--accept-routes=false", "--timeout=90s",
                      timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr + self.proc.log(4000)
        self.ip = json.loads(self.cli("status", "--json").stdout)["Self"]["TailscaleIPs"][0]
        wait_for(lambda: any(self.ip in (p.get("TailscaleIPs") or [])
                             for p in (tn.status_a().get("Peer") or {}).values()),
                 60, "A to see node C")

    def cli(self, *args, timeout=60):
        return self.tn.in_b([TAILSCALE, "--socket=" + self.socket] + list(args), timeout=timeout)

    def close(self):
        self.proc.stop()
        node = self.tn.node(OTHER_HOST)
        if node:
            self.tn.headscale("nodes", "delete", "--identifier", str(node["id"]), "--force",
                              json_output=False)


@pytest.fixture(scope="module")
def node_c(tailnet, tmp_path_factory):
    n = Node(tailnet, str(tmp_path_factory.mktemp("node-c")))
    yield n
    n.close()


class Bridge:
    """socat in namespace B: 127.0.0.1:port there, each connection carried by
    `tailscale nc` of one node (B's or C's tailscaled) to A's tailnet address."""

    def __init__(self, tn, sock, port, workdir, name):
        self.port = free_port()
        cmd = "%s --socket=%s nc %s %d" % (TAILSCALE, sock, tn.a_ips[0], port)
        self.proc = NsProc([SOCAT, "TCP4-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % self.port,
                            "EXEC:" + cmd], os.path.join(workdir, name + ".log"), netns=tn.ns_b)
        wait_for(lambda: self.proc.check_alive("socat " + name) or tn.ns_b.listening(self.port),
                 30, "socat %s in B" % name)

    def close(self):
        self.proc.stop(group=True)


def psql_in_b(tn, port, sql, timeout=90):
    """psql in namespace B against 127.0.0.1:port there (a Bridge)."""
    dsn = "postgresql://postgres@127.0.0.1:%d/tfdb?sslmode=disable&connect_timeout=30" % port
    return tn.in_b(["psql", "-X", "-At", dsn, "-c", sql], timeout=timeout,
                   env=clean_env(PGCONNECT_TIMEOUT="30"))


# ---------------------------------------------------------------- the fence

@pytest.fixture
def serve(tailnet):
    """Sets tailscaled A's serve entries; resets them afterwards."""
    tn = tailnet

    def add(port, target, version=2):
        r = tn.tailscale_a("serve", "--bg", "--tcp", str(port), "--proxy-protocol", str(version),
                           "tcp://" + target)
        assert r.returncode == 0, r.stdout + r.stderr
    yield add
    tn.tailscale_a("serve", "reset")


def inbound_fence(tailfence, tn, tmp_path, entries, *args):
    cfg = tmp_path / "inbound.json"
    cfg.write_text(json.dumps({"inbound": entries}))
    d = tailfence("--tailscaled-socket", tn.a_socket, "--config", str(cfg), *args,
                  upstream="socks5://" + tn.a_proxy, allow=(), lift_guards=())
    d.wait_audit(type="tailnet", state="running", timeout=30)
    return d


@pytest.fixture
def pg_service(tailnet, tailfence, postgres, serve, tmp_path):
    """tailfence with two inbound services in front of A's PostgreSQL: "pg"
    (user:harness allowed, the default peer check) and "pg-open" (peer_check
    loopback, for header tests), each served on a tailnet port."""
    tn = tailnet
    s = {"serve_port": free_port(), "listen": "127.0.0.2:%d" % free_port(),
         "open_port": free_port(), "open_listen": "127.0.0.2:%d" % free_port()}
    d = inbound_fence(tailfence, tn, tmp_path, [
        {"name": "pg", "port": s["serve_port"], "listen": s["listen"],
         "target": "127.0.0.1:%d" % postgres.port,
         "rules": [{"action": "deny", "from": ["tag:kiosk"]},
                   {"action": "accept", "from": ["user:harness"]}]},
        {"name": "pg-open", "port": s["open_port"], "listen": s["open_listen"],
         "target": "127.0.0.1:%d" % postgres.port, "peer_check": "loopback",
         "rules": [{"action": "accept", "from": ["*"]}]},
    ])
    serve(s["serve_port"], s["listen"])
    serve(s["open_port"], s["open_listen"])
    s["d"] = d
    return s


def test_identities_allowed_and_denied_with_psql(tailnet, node_c, pg_service, tmp_path,
                                                  tailfence_cli):
    """B's user reaches A's PostgreSQL through serve and tailfence; C's user
    does not; the records name both, with the reason for C."""
    tn = tailnet
    d = pg_service["d"]
    via_b = Bridge(tn, tn.b_socket, pg_service["serve_port"], str(tmp_path), "bridge-b")
    via_c = Bridge(tn, node_c.socket, pg_service["serve_port"], str(tmp_path), "bridge-c")
    try:
        r = psql_in_b(tn, via_b.port, "select 'reached ' || string_agg(name, ',' order by id) "
                                      "from items")
        assert r.returncode == 0 and r.stdout.strip() == "reached alpha,beta,gamma", \
            r.stdout + r.stderr + d.log()[-3000:]
        r = psql_in_b(tn, via_c.port, "select 1")
        assert r.returncode != 0, r.stdout
    finally:
        via_b.close()
        via_c.close()

    allow = d.wait_audit(type="decision", verdict="allow", service="pg")[0]
    assert allow["direction"] == "inbound"
    assert allow["tailnet_user"] == "harness"
    assert allow["tailnet_node"] == tn.b_dnsname.rstrip(".")
    assert allow["tailnet_addr"].startswith(tn.b_ips[0] + ":")
    assert allow["tailnet_tags"] == []
    assert allow["rule"] == "accept user:harness"
    assert allow["addr"] == "127.0.0.1" and allow["upstream"] == "direct"
    assert allow["proto"] == "proxy-v2"
    close = d.wait_close(allow["conn"])
    assert close["direction"] == "inbound" and close["service"] == "pg"
    assert close["tailnet_user"] == "harness" and close["end"] in ("client_eof", "upstream_eof")
    assert close["bytes_up"] > 0 and close["bytes_down"] > 0 and close["addr"] == "127.0.0.1"

    deny = d.wait_audit(type="decision", verdict="deny", service="pg",
                        tailnet_user=OTHER_EMAIL)[0]
    assert deny["tailnet_node"] == OTHER_HOST + "." + tn.magicdns_suffix
    assert deny["tailnet_addr"].startswith(node_c.ip + ":")
    assert deny["rule"] is None and deny["guard"] is None
    assert deny["reason"] == "no inbound rule of pg accepts %s (%s.%s)" % (
        OTHER_EMAIL, OTHER_HOST, tn.magicdns_suffix)
    assert d.wait_close(deny["conn"])["end"] == "denied"
