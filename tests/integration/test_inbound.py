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
    `tailscale nc` of one node (B's or C's tailscaled) to A's tailnet address
    (or to_ip's)."""

    def __init__(self, tn, sock, port, workdir, name, to_ip=None):
        self.port = free_port()
        # A script, since socat's EXEC would split an IPv6 address at its colons.
        script = os.path.join(workdir, name + ".sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexec %s --socket=%s nc %s %d\n"
                    % (TAILSCALE, sock, to_ip or tn.a_ips[0], port))
        os.chmod(script, 0o755)
        self.proc = NsProc([SOCAT, "TCP4-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % self.port,
                            "EXEC:" + script], os.path.join(workdir, name + ".log"), netns=tn.ns_b)
        wait_for(lambda: self.proc.check_alive("socat " + name) or tn.ns_b.listening(self.port),
                 30, "socat %s in B" % name)

    def close(self):
        self.proc.stop(group=True)


def wait_reaches(tn, sock, ip, what):
    """Waits until the node whose tailscaled listens on sock (in namespace B)
    reaches ip over WireGuard (a TSMP ping), so that a connection is not
    the first packet after a change of the tailnet.

    First A pings B: when an address is added to and removed from lo in A's
    namespace (test_hardening does), tailscaled A takes the network for down
    and drops its DERP connection, and reconnects only to send something;
    until then nothing initiated elsewhere reaches A."""
    tn.wait_path()

    def ok():
        r = tn.in_b([TAILSCALE, "--socket=" + sock, "ping", "--tsmp", "--c=1",
                     "--until-direct=false", "--timeout=5s", ip], timeout=30)
        return r.returncode == 0
    wait_for(ok, 90, what, interval=0.5)


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
    via_b6 = Bridge(tn, tn.b_socket, pg_service["serve_port"], str(tmp_path), "bridge-b6",
                    to_ip=tn.a_ips[1])
    wait_reaches(tn, tn.b_socket, tn.a_ips[0], "B to reach A")
    wait_reaches(tn, node_c.socket, tn.a_ips[0], "C to reach A")
    try:
        r = psql_in_b(tn, via_b.port, "select 'reached ' || string_agg(name, ',' order by id) "
                                      "from items where id <= 3")
        assert r.returncode == 0 and r.stdout.strip() == "reached alpha,beta,gamma", \
            r.stdout + r.stderr + d.log()[-3000:]
        r = psql_in_b(tn, via_c.port, "select 1")
        assert r.returncode != 0, r.stdout
        # To A's IPv6 tailnet address: the header carries B's IPv6 address.
        r = psql_in_b(tn, via_b6.port, "select 'v6'")
        assert r.returncode == 0 and r.stdout.strip() == "v6", r.stdout + r.stderr
    finally:
        via_b.close()
        via_c.close()
        via_b6.close()
    v6 = d.wait_audit(type="decision", verdict="allow", service="pg", tailnet_user="harness",
                      n=2)[-1]
    assert v6["tailnet_addr"].startswith("[%s]:" % tn.b_ips[1]), v6
    d.wait_close(v6["conn"])

    allow = d.wait_audit(type="decision", verdict="allow", service="pg")[0]
    print("allowed:", json.dumps(allow))
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
    print("denied:", json.dumps(deny))
    assert d.wait_close(deny["conn"])["end"] == "denied"

    # The review commands: by direction, by tailnet user, who used what.
    summary = tailfence_cli("audit", "summary", "--direction", "inbound", d.audit_path)
    assert summary.returncode == 0, summary.stderr
    print(summary.stdout)
    used = summary.stdout.split("Inbound: who used which service\n")[1].split("\n\n")[0]
    assert "harness -> pg " in used and OTHER_EMAIL not in used, summary.stdout
    by_user = summary.stdout.split("Allowed connections by user\n")[1].split("\n\n")[0]
    assert "  harness " in by_user, summary.stdout
    denied_by = summary.stdout.split("Denied attempts by client\n")[1].split("\n\n")[0]
    assert "  %s " % node_c.ip in denied_by, summary.stdout
    refused = summary.stdout.split("Inbound: refused, by tailnet identity\n")[1]
    assert "%s (%s.%s) -> pg " % (OTHER_EMAIL, OTHER_HOST, tn.magicdns_suffix) in refused
    print(tailfence_cli("audit", "--direction", "inbound", d.audit_path).stdout)
    mine = tailfence_cli("audit", "--json", "--tailnet-user", OTHER_EMAIL.upper(), d.audit_path)
    recs = [json.loads(line) for line in mine.stdout.splitlines()]
    assert [(r["type"], r["conn"]) for r in recs] == [("decision", deny["conn"]),
                                                      ("close", deny["conn"])], mine.stdout
    outbound = tailfence_cli("audit", "--json", "--direction", "outbound", d.audit_path)
    assert outbound.returncode == 0 and outbound.stdout == "", outbound.stdout


def refused_record(d, **match):
    rec = d.wait_audit(type="decision", verdict="deny", **match)[-1]
    close = d.wait_close(rec["conn"])
    assert close["direction"] == "inbound" and close["end"] in ("denied", "protocol_error")
    return rec


@pytest.mark.parametrize("first, guard, why", [
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", "proxy",
     "no PROXY protocol header: the connection starts with 00 00 00 08 04 d2 16 2f, like a "
     "PostgreSQL client"),
    (b"PROXY TCP4 100.64.0.2 100.64.0.1 4444 5432\r\n", "proxy",
     "PROXY protocol version 1 header, but this listener expects version 2"),
    (SIG + b"\x20\x00\x00\x00", "proxy", "PROXY v2 LOCAL command"),
])
def test_connection_without_a_valid_header_is_refused(pg_service, first, guard, why):
    """On the listener whose peer check is off, only the header decides: a
    client that speaks first without one, or with another version's, or a
    LOCAL command, is refused with the reason."""
    d = pg_service["d"]
    host, port = pg_service["open_listen"].rsplit(":", 1)
    with connect(int(port), host) as s:
        s.sendall(first)
        assert wait_closed(s), "tailfence kept the connection open"
    rec = refused_record(d, service="pg-open", guard=guard)
    assert rec["reason"].startswith(why), rec
    assert rec["tailnet_user"] is None and rec["tailnet_node"] is None


def test_forged_header_from_a_local_process_is_refused(tailnet, pg_service):
    """A local process that connects to the listener itself and claims to
    be B is refused: tailscaled does not hold the connecting socket. The
    record shows the claimed address and no identity (whois is not asked)."""
    tn = tailnet
    d = pg_service["d"]
    host, port = pg_service["listen"].rsplit(":", 1)
    with connect(int(port), host) as s:
        s.sendall(proxy_v2(tn.b_ips[0], 4444, tn.a_ips[0], int(port)) + b"\x00\x00\x00\x08")
        assert wait_closed(s), "tailfence kept the connection open"
    rec = refused_record(d, service="pg", guard="peer")
    assert rec["reason"].startswith("PROXY header not trusted: the connection comes from a "
                                    "socket (inode "), rec
    assert "that tailscaled (pid " in rec["reason"] and "not tailscale serve" in rec["reason"]
    # the claimed address, when the header was in before the check answered
    assert rec["tailnet_addr"] in (None, "%s:4444" % tn.b_ips[0]), rec
    assert rec["tailnet_user"] is None
    # Without a header at all: refused too, by whichever check answers first.
    with connect(int(port), host) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert wait_closed(s)
    rec = d.wait_audit(2, type="decision", verdict="deny", service="pg")[-1]
    assert rec["guard"] in ("proxy", "peer") and rec["tailnet_addr"] is None, rec


def through_tailscaled_proxy(tn, listen, header):
    """A local process asking tailscaled A's own SOCKS5 proxy (no
    authentication, dials loopback through the host) to connect to the
    inbound listener, then sending a header of its choosing."""
    host, port = listen.rsplit(":", 1)
    s = connect(tn.a_proxy_port)
    rep, _, _ = socks5_connect(s, host, int(port))
    assert rep == 0, "tailscaled's SOCKS5 answered 0x%02x" % rep
    s.sendall(header)
    return s


def test_whois_failure_denies_with_the_reason(tailnet, pg_service):
    """A header naming an address no node has: whois answers 404 and the
    connection is refused with that reason. (It has to come through
    tailscaled's own process to pass the peer check: its SOCKS5 proxy.)"""
    tn = tailnet
    d = pg_service["d"]
    with through_tailscaled_proxy(tn, pg_service["listen"],
                                  proxy_v2("100.64.0.99", 5555, tn.a_ips[0], 1)) as s:
        assert wait_closed(s)
    rec = refused_record(d, service="pg", guard="whois")
    assert rec["reason"] == "who is 100.64.0.99:5555? tailscaled knows no tailnet node at " \
                            "100.64.0.99", rec


def test_limit_a_header_sent_through_tailscaleds_own_proxy_is_believed(tailnet, pg_service):
    """What the peer check does not cover (docs/config.md says so): tailscaled
    dials loopback for any local client of its SOCKS5 proxy, so a header a
    local process sends that way comes from tailscaled's own socket and is
    believed. A process that can do this could reach the service directly
    too; what it gains is a record naming someone else."""
    tn = tailnet
    d = pg_service["d"]
    with through_tailscaled_proxy(tn, pg_service["listen"],
                                  proxy_v2(tn.b_ips[0], 6666, tn.a_ips[0], 1)) as s:
        rec = d.wait_audit(type="decision", service="pg", tailnet_addr="%s:6666" % tn.b_ips[0])[0]
    assert rec["verdict"] == "allow" and rec["tailnet_user"] == "harness", rec


def test_reload_changes_the_rules_of_new_connections(tailnet, pg_service, tmp_path):
    """SIGHUP: new connections get the new identity rules; the listeners stay
    (they are bound at start)."""
    tn = tailnet
    d = pg_service["d"]
    header = proxy_v2(tn.b_ips[0], 7001, tn.a_ips[0], 1)
    with through_tailscaled_proxy(tn, pg_service["listen"], header):
        assert d.wait_audit(type="decision", tailnet_addr="%s:7001" % tn.b_ips[0])[0]["verdict"] \
            == "allow"
    cfg = tmp_path / "inbound.json"
    conf = json.loads(cfg.read_text())
    conf["inbound"][0]["rules"] = [{"action": "deny", "from": ["user:harness"],
                                    "name": "not today"}]
    cfg.write_text(json.dumps(conf))
    d.proc.proc.send_signal(1)  # SIGHUP
    d.wait_audit(type="reload")
    header = proxy_v2(tn.b_ips[0], 7002, tn.a_ips[0], 1)
    with through_tailscaled_proxy(tn, pg_service["listen"], header) as s:
        assert wait_closed(s)
    rec = d.wait_audit(type="decision", tailnet_addr="%s:7002" % tn.b_ips[0])[0]
    assert rec["verdict"] == "deny" and rec["rule"] == "not today", rec


@pytest.mark.parametrize("entry, want", [
    ({"listen": "127.0.0.1:15432", "target": "db.example:5432"},
     "inbound[0].listen: \"127.0.0.1:15432\" is 127.0.0.1, where tailscaled hands connections"),
    ({"listen": "192.0.2.1:15432", "target": "db.example:5432"},
     "inbound[0].listen: \"192.0.2.1:15432\" is not a loopback address"),
    ({"listen": "127.0.0.2:15432"}, "inbound[0].target: is missing"),
    ({"listen": "127.0.0.2:15432", "target": "db.example"},
     "inbound[0].target: \"db.example\" needs a port (HOST:PORT)"),
    ({"listen": "127.0.0.2:15432", "target": "db:5432", "proxy_protocol": 3},
     "inbound[0].proxy_protocol: 3; expected 1 or 2"),
    ({"listen": "127.0.0.2:15432", "target": "db:5432",
      "rules": [{"action": "accept", "from": ["group:eng"]}]},
     "inbound[0].rules[0].from[0]: \"group:eng\": tailscaled's whois does not say which groups"),
    ({"listen": "127.0.0.2:15432", "target": "db:5432",
      "rules": [{"action": "permit", "from": ["*"]}]},
     "inbound[0].rules[0].action: \"permit\" is not valid; expected accept or deny"),
    ({"listen": "127.0.0.2:15432", "target": "db:5432", "servce": "x"},
     "inbound[0]: unknown key \"servce\""),
])
def test_config_check_rejects_malformed_inbound_entries(tailfence_cli, tmp_path, entry, want):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"inbound": [entry]}))
    p = tailfence_cli("config", "check", str(cfg),
                      env={"TAILSCALE_SOCKET": "/run/tailscale/tailscaled.sock"})
    assert p.returncode == 1, p.stdout
    assert p.stderr.startswith("tailfence: %s: %s" % (cfg, want)), p.stderr


def test_config_check_rejects_malformed_environment(tailfence_cli, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text('{ "5433": [ { "action": "accept", "from": ["user:alice@example.com"] } ] }')
    env = {"TAILSCALE_SOCKET": "/run/tailscale/tailscaled.sock",
           "TAILFENCE_INBOUND": "5432=db.railway.internal:5432",
           "TAILFENCE_INBOUND_POLICY": str(policy)}
    p = tailfence_cli("config", "check", env=env)
    assert p.returncode == 1
    assert "%s: key \"5433\" names a port no inbound entry serves" % policy in p.stderr, p.stderr
    env["TAILFENCE_INBOUND"] = "5432=db.railway.internal"
    p = tailfence_cli("config", "check", env=env)
    assert "TAILFENCE_INBOUND: entry \"5432=db.railway.internal\": target: " \
           "\"db.railway.internal\" needs a port" in p.stderr, p.stderr


# -------------------------------------------------------------- entrypoint

def test_entrypoint_serves_inbound_services_by_identity(tailnet, node_c, postgres, tmp_path,
                                                       tailfence_bin):
    """contrib/railway/entrypoint with TAILFENCE_INBOUND and a policy file, as
    a fourth node (the container, in A's namespace) that advertises no
    route: it sets tailscaled's serve entry and tailfence's listener, B's
    user reaches the container's PostgreSQL through them, C's user does
    not, and the trail names both."""
    from helpers import PY, sanitizer_env
    from railway.support import APP_STANDIN, Entrypoint, tool
    tn = tailnet
    serve_port = free_port()
    policy = tmp_path / "inbound-policy.json"
    policy.write_text(json.dumps({
        str(serve_port): [{"action": "accept", "from": ["user:harness"]}],
        "*": [{"action": "deny", "from": ["*"], "name": "nobody else"}]}))
    state = tmp_path / "state"
    audit = tmp_path / "audit.jsonl"
    env = tn.node_env(str(tmp_path))
    env.update({
        "PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": str(tmp_path),
        "TAILSCALE_AUTH_KEY": tn.preauth_key(), "TAILSCALE_LOGIN_SERVER": tn.control_url,
        "TAILSCALE_HOSTNAME": "railway-inbound", "TAILSCALE_STATE_DIR": str(state),
        "TAILSCALE_SOCKET": str(state / "tailscaled.sock"),
        "TAILSCALED_LOG": str(tmp_path / "tailscaled.log"),
        "TAILSCALED_PROXY": "127.0.0.1:%d" % free_port(),
        "TAILSCALED_BIN": tool("tailscaled"), "TAILSCALE_BIN": tool("tailscale"),
        "TAILFENCE_BIN": tailfence_bin, "TAILFENCE_LISTEN": "127.0.0.1:%d" % free_port(),
        "TAILFENCE_AUDIT_FILE": str(audit), "APP_STOP_TIMEOUT": "10", "APP_URLS": "",
        "TAILFENCE_INBOUND": "%d=127.0.0.1:%d" % (serve_port, postgres.port),
        "TAILFENCE_INBOUND_POLICY": str(policy),
        "TAILFENCE_INBOUND_LISTEN": "127.0.0.2:%d" % free_port(),
    })
    ep = Entrypoint(sanitizer_env(env), [PY, str(APP_STANDIN)])
    bridges = []
    try:
        ep.wait_line(r"^APP READY$", timeout=120)
        assert "Serving to the tailnet through tailfence: %s" % env["TAILFENCE_INBOUND"] \
            in ep.out, ep.transcript()
        assert "Connecting to Tailscale with subnet routes: (none)" in ep.out
        st = json.loads(subprocess.run(
            [tool("tailscale"), "--socket=" + env["TAILSCALE_SOCKET"], "status", "--json"],
            capture_output=True, text=True, timeout=30, env=clean_env()).stdout)
        ip = st["Self"]["TailscaleIPs"][0]
        wait_reaches(tn, tn.b_socket, ip, "B to reach the container")
        wait_reaches(tn, node_c.socket, ip, "C to reach the container")
        via_b = Bridge(tn, tn.b_socket, serve_port, str(tmp_path), "ep-bridge-b", to_ip=ip)
        via_c = Bridge(tn, node_c.socket, serve_port, str(tmp_path), "ep-bridge-c", to_ip=ip)
        bridges += [via_b, via_c]
        r = psql_in_b(tn, via_b.port, "select name from items where id = 1")
        assert r.returncode == 0 and r.stdout.strip() == "alpha", r.stdout + r.stderr + \
            ep.transcript()
        r = psql_in_b(tn, via_c.port, "select 1")
        assert r.returncode != 0

        def decisions():
            recs = [json.loads(line) for line in audit.read_text().splitlines() if line]
            return [r for r in recs if r.get("type") == "decision"
                    and r.get("direction") == "inbound"]
        got = wait_for(lambda: len(decisions()) >= 2 and decisions(), 15, "inbound records")
        by_user = {r["tailnet_user"]: r for r in got}
        assert by_user["harness"]["verdict"] == "allow"
        assert by_user["harness"]["service"] == str(serve_port)
        assert by_user[OTHER_EMAIL]["verdict"] == "deny"
        assert by_user[OTHER_EMAIL]["rule"] == "nobody else"
        ep.signal()
        assert ep.wait(60) == 0, ep.transcript()
    finally:
        for b in bridges:
            b.close()
        ep.kill_all()
        node = tn.node("railway-inbound")
        if node:
            tn.headscale("nodes", "delete", "--identifier", str(node["id"]), "--force",
                         json_output=False)
