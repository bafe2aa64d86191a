"""SOCKS5 UDP ASSOCIATE under the same fence as TCP.

A DNS server on loopback (tailnet/dnsserver.py, UDP and TCP) is the
destination: a query goes through tailfence directly, through the real
tailscaled's own SOCKS5 UDP ASSOCIATE, and over the tailnet harness to B's
192.0.2.53. Denied destinations, datagrams from other sources, fragments and
the limits are dropped and counted; the association ends with its TCP
control connection.
"""
import json
import os
import socket
import struct
import subprocess

import pytest

from helpers import PY, Proc, free_port, recv_exact, socks5_greet, socks5_read_reply
from helpers import metrics, wait_closed, wait_listening, wait_until
from tailnet import dnsserver

HERE = os.path.dirname(os.path.abspath(__file__))
DNSSERVER = os.path.join(HERE, "tailnet", "dnsserver.py")


def free_udp_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class DNSServer:
    """tailnet/dnsserver.py on host:port (UDP and TCP), answering A records."""

    def __init__(self, tmp_path, host="127.0.0.1", records=(("name.test", "A", "127.0.0.9"),)):
        self.host = host
        self.port = free_port(host)
        self.queries_path = str(tmp_path / ("dns-%s-%d.jsonl" % (host, self.port)))
        argv = [PY, DNSSERVER, "--queries", self.queries_path]
        for r in records:
            argv += ["--record"] + list(r)
        argv.append("%s:%d" % (host, self.port))
        self.proc = Proc(argv, tmp_path / ("dns-%s-%d.log" % (host, self.port)))

        def ready():
            log = self.proc.log()
            if "ready" in log:
                return True
            assert self.proc.poll() is None, "DNS server died:\n" + log
            return False
        wait_until(ready, 20, "the DNS server to start", interval=0.05, detail=self.proc.log)

    def queries(self):
        try:
            with open(self.queries_path) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def close(self):
        self.proc.stop()


@pytest.fixture
def dns_server(tmp_path):
    servers = []

    def start(host="127.0.0.1", **kw):
        s = DNSServer(tmp_path, host, **kw)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.close()


def udp_header(host, port, frag=0):
    try:
        addr = b"\x01" + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        try:
            addr = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            addr = b"\x03" + bytes([len(host)]) + host.encode()
    return b"\x00\x00" + bytes([frag]) + addr + struct.pack("!H", port)


def parse_udp_reply(data):
    """(host, port, payload) of a SOCKS5 UDP datagram (IP address types)."""
    assert data[:3] == b"\x00\x00\x00", data[:10]
    if data[3] == 1:
        return socket.inet_ntop(socket.AF_INET, data[4:8]), struct.unpack("!H", data[8:10])[0], data[10:]
    assert data[3] == 4, data[:10]
    return socket.inet_ntop(socket.AF_INET6, data[4:20]), struct.unpack("!H", data[20:22])[0], data[22:]


class Association:
    """A SOCKS5 UDP association through tailfence: the TCP control
    connection, the relay address it named, and a UDP socket to use."""

    def __init__(self, d, src_port=0, timeout=10):
        self.ctl = d.connect(timeout=timeout)
        assert socks5_greet(self.ctl) == 0
        self.ctl.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00" + struct.pack("!H", src_port))
        self.rep, self.relay_host, self.relay_port = socks5_read_reply(self.ctl)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", src_port))
        self.udp.settimeout(timeout)

    @property
    def relay(self):
        return (self.relay_host, self.relay_port)

    def send(self, host, port, payload, frag=0, sock=None):
        (sock or self.udp).sendto(udp_header(host, port, frag) + payload, self.relay)

    def recv(self, timeout=10):
        self.udp.settimeout(timeout)
        data, src = self.udp.recvfrom(65535)
        assert src == self.relay, "a datagram from %r, not the relay %r" % (src, self.relay)
        return parse_udp_reply(data)

    def query(self, host, port, name, qid=0x4242, timeout=10):
        """One DNS query through the association; the parsed answer."""
        self.send(host, port, dnsserver.build_query(name, "A", qid=qid))
        rhost, rport, payload = self.recv(timeout)
        assert (rhost, rport) == (host, port) or rport == port, (rhost, rport)
        msg = dnsserver.parse_message(payload)
        assert msg["id"] == qid
        return msg

    def nothing_comes(self, wait=1.0):
        """True when no datagram arrives within wait seconds."""
        self.udp.settimeout(wait)
        try:
            self.udp.recvfrom(65535)
        except socket.timeout:
            return True
        return False

    def close(self):
        self.ctl.close()
        self.udp.close()


@pytest.fixture
def associate():
    made = []

    def open_(d, **kw):
        a = Association(d, **kw)
        made.append(a)
        return a
    yield open_
    for a in made:
        a.close()


def dropped(m, reason):
    return m['tailfence_udp_datagrams_dropped_total{reason="%s"}' % reason]


def answers(msg):
    return [a["data"] for a in msg["answers"]]


# ----------------------------------------------------------------- tests

def test_dns_query_direct(tailfence, dns_server, associate):
    dns = dns_server()
    d = tailfence()
    a = associate(d)
    assert a.rep == 0 and a.relay_host == "127.0.0.1"
    msg = a.query("127.0.0.1", dns.port, "name.test")
    assert answers(msg) == ["127.0.0.9"] and msg["rcode"] == "NOERROR"
    assert a.query("127.0.0.1", dns.port, "name.test", qid=7)["id"] == 7
    assert [q["transport"] for q in dns.queries()] == ["udp", "udp"]
    rec = d.wait_audit(type="decision", proto="socks5-udp")
    assert len(rec) == 1, "one decision per destination, not per datagram"
    rec = rec[0]
    assert rec["verdict"] == "allow" and rec["host"] == "127.0.0.1" and rec["port"] == dns.port
    assert rec["addr"] == "127.0.0.1" and rec["upstream"] == "direct"
    a.ctl.close()
    close = d.wait_audit(type="close", proto="socks5-udp")[0]
    assert close["conn"] == rec["conn"] and close["end"] == "client_eof"
    assert close["datagrams_up"] == 2 and close["datagrams_down"] == 2
    assert close["bytes_up"] == 2 * len(dnsserver.build_query("name.test"))
    assert close["bytes_down"] > 0 and close["dropped"] == 0
    print("audit lines of a UDP DNS query (direct):")
    for r in d.audit():
        if r.get("proto") == "socks5-udp":
            print(json.dumps(r))


def test_dns_query_through_tailscaleds_udp_associate(tailfence, tailscaled, dns_server, associate):
    """The upstream is tailscaled's own SOCKS5: tailfence opens its own UDP
    association there and sends the decided address, never a name."""
    dns = dns_server()
    d = tailfence(upstream=tailscaled.socks5_url)
    a = associate(d)
    assert a.rep == 0
    msg = a.query("127.0.0.1", dns.port, "name.test")
    assert answers(msg) == ["127.0.0.9"]
    rec = d.wait_audit(type="decision", proto="socks5-udp", verdict="allow")[0]
    assert rec["upstream"] == tailscaled.socks5_url and rec["addr"] == "127.0.0.1"
    a.ctl.close()
    close = d.wait_audit(type="close", proto="socks5-udp")[0]
    assert close["datagrams_up"] == 1 and close["datagrams_down"] == 1
    print("audit lines of a UDP DNS query through tailscaled:")
    for r in d.audit():
        if r.get("proto") == "socks5-udp":
            print(json.dumps(r))


def test_name_destination_is_pinned(tailfence, dns_server, associate, hosts_file):
    """A destination given as a name is resolved once by tailfence and
    decided on its address; the datagram goes to that address."""
    dns = dns_server()
    d = tailfence("--hosts-file", hosts_file({"dns.test": "127.0.0.1", "evil.test": "127.0.1.1"}))
    a = associate(d)
    msg = a.query("dns.test", dns.port, "name.test")
    assert answers(msg) == ["127.0.0.9"]
    rec = d.wait_audit(type="decision", proto="socks5-udp", host="dns.test")[0]
    assert rec["verdict"] == "allow" and rec["addr"] == "127.0.0.1"
    a.send("evil.test", dns.port, dnsserver.build_query("name.test"))
    rec = d.wait_audit(type="decision", proto="socks5-udp", host="evil.test")[0]
    assert rec["verdict"] == "deny" and rec["addr"] == "127.0.1.1"


def test_denied_destination_is_dropped_and_counted(tailfence, dns_server, associate):
    ok = dns_server()
    fenced = dns_server("127.0.1.1")
    port = free_port()
    d = tailfence("--admin", "127.0.0.1:%d" % port)
    wait_listening(port, 15, d.proc.proc, "admin")
    a = associate(d)
    for qid in (1, 2, 3):
        a.send("127.0.1.1", fenced.port, dnsserver.build_query("name.test", qid=qid))
    assert a.nothing_comes(1.0)
    assert answers(a.query("127.0.0.1", ok.port, "name.test")) == ["127.0.0.9"]
    assert fenced.queries() == [], "a denied destination got a datagram"
    recs = d.wait_audit(type="decision", proto="socks5-udp", verdict="deny")
    assert len(recs) == 1 and recs[0]["addr"] == "127.0.1.1"
    assert "no rule accepts" in recs[0]["reason"]
    m = metrics(port)
    assert dropped(m, "denied") == 3
    assert m['tailfence_connections_total{proto="socks5-udp",verdict="deny"}'] == 1
    assert m['tailfence_connections_total{proto="socks5-udp",verdict="allow"}'] == 1
    assert m['tailfence_udp_datagrams_total{direction="up"}'] == 1
    assert m["tailfence_udp_associations_open"] == 1
    a.ctl.close()
    close = d.wait_audit(type="close", proto="socks5-udp")[0]
    assert close["dropped"] == 3


def test_spoofed_sources_are_dropped(tailfence, dns_server, associate):
    dns = dns_server()
    port = free_port()
    d = tailfence("--admin", "127.0.0.1:%d" % port)
    wait_listening(port, 15, d.proc.proc, "admin")
    a = associate(d)
    assert answers(a.query("127.0.0.1", dns.port, "name.test")) == ["127.0.0.9"]
    # another port of the same address, then another address
    other_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other_port.bind(("127.0.0.1", 0))
    other_addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other_addr.bind(("127.0.0.2", 0))
    for s in (other_port, other_addr):
        a.send("127.0.0.1", dns.port, dnsserver.build_query("name.test", qid=99), sock=s)
        s.close()
    wait_until(lambda: dropped(metrics(port), "spoofed") >= 2, 10,
               "both spoofed datagrams to be counted as dropped", interval=0.05)
    assert dropped(metrics(port), "spoofed") == 2
    assert len(dns.queries()) == 1, "a spoofed datagram reached the destination"


def test_source_port_named_in_the_request(tailfence, dns_server, associate):
    """A client that names its source port in the request is held to it."""
    dns = dns_server()
    d = tailfence()
    src = free_udp_port()
    a = associate(d, src_port=src)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    a.send("127.0.0.1", dns.port, dnsserver.build_query("name.test", qid=1), sock=other)
    other.close()
    assert answers(a.query("127.0.0.1", dns.port, "name.test", qid=2)) == ["127.0.0.9"]
    assert len(dns.queries()) == 1, "a datagram from another port was relayed"


def test_association_ends_with_its_tcp_connection(tailfence, dns_server, associate):
    dns = dns_server()
    d = tailfence()
    a = associate(d)
    assert answers(a.query("127.0.0.1", dns.port, "name.test")) == ["127.0.0.9"]
    relay = a.relay
    a.ctl.close()
    d.wait_audit(type="close", proto="socks5-udp", end="client_eof")

    def bound():
        with open("/proc/net/udp") as f:
            return any(line.split()[1].endswith(":%04X" % relay[1]) for line in f.readlines()[1:])
    wait_until(lambda: not bound(), 10, "the relay socket to close with its control connection",
               interval=0.05)
    n = len(dns.queries())
    try:
        a.send("127.0.0.1", dns.port, dnsserver.build_query("name.test"))
        assert a.nothing_comes(1.0)
    except ConnectionRefusedError:
        pass
    assert len(dns.queries()) == n


def test_idle_association_is_closed(tailfence, associate):
    d = tailfence("--udp-idle-timeout", "500ms")
    a = associate(d)
    assert a.rep == 0
    assert wait_closed(a.ctl, 15), "the daemon did not end the idle association"
    assert d.wait_audit(type="close", proto="socks5-udp")[0]["end"] == "idle_timeout"


def test_limits_and_fragments(tailfence, dns_server, associate):
    """Every datagram is either relayed or dropped under exactly one reason:
    a second destination (limit 1), a fragment, a malformed header, or the
    rate (2 per second)."""
    dns = dns_server()
    port = free_port()
    d = tailfence("--admin", "127.0.0.1:%d" % port, "--udp-destinations", "1", "--udp-rate", "2")
    wait_listening(port, 15, d.proc.proc, "admin")
    a = associate(d)
    assert answers(a.query("127.0.0.1", dns.port, "name.test")) == ["127.0.0.9"]
    a.send("127.0.0.2", dns.port, b"second destination")
    a.send("127.0.0.1", dns.port, b"a fragment", frag=1)
    a.udp.sendto(b"\x00\x01\x00\x01garbage", a.relay)
    for _ in range(20):
        a.send("127.0.0.1", dns.port, dnsserver.build_query("name.test", qid=5))
    reasons = ("rate_limit", "fragment", "malformed", "destinations_limit")

    def accounted():
        m = metrics(port)
        return sum(dropped(m, r) for r in reasons) + m['tailfence_udp_datagrams_total{direction="up"}']
    wait_until(lambda: accounted() >= 24, 10, "all 24 datagrams to be relayed or dropped",
               interval=0.05, detail=lambda: str(metrics(port)))
    m = metrics(port)
    assert accounted() == 24, m
    assert dropped(m, "rate_limit") >= 1
    assert not d.decisions(proto="socks5-udp", host="127.0.0.2"), \
        "a destination past the limit was decided"


def test_udp_can_be_turned_off(tailfence):
    d = tailfence("--no-udp")
    with d.connect() as s:
        assert socks5_greet(s) == 0
        s.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
        assert recv_exact(s, 2) == b"\x05\x07"
    d.wait_audit(type="close", end="protocol_error")


def test_http_upstream_cannot_carry_udp(tailfence, tailscaled):
    d = tailfence(upstream=tailscaled.http_url)
    with d.connect() as s:
        assert socks5_greet(s) == 0
        s.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
        assert socks5_read_reply(s)[0] == 0x07
    rec = d.wait_audit(type="close", proto="socks5-udp")[0]
    assert "needs a socks5 or direct upstream" in rec["error"]


def test_dns_over_the_tailnet(tailfence, tailnet, associate):
    """Over the real tailnet: a UDP DNS query to B's resolver at 192.0.2.53
    travels through tailscaled A's UDP ASSOCIATE and WireGuard; the decision
    names the path and the peer that carries it."""
    tn = tailnet
    d = tailfence("--tailscaled-socket", tn.a_socket, upstream="socks5://" + tn.a_proxy,
                  allow=(), lift_guards=())
    d.wait_audit(type="tailnet", state="running", timeout=30)
    host, port = tn.dns_v4
    n = len([q for q in tn.dns_queries() if q["transport"] == "udp"])
    a = associate(d, timeout=30)
    assert a.rep == 0
    msg = None
    for attempt in range(5):  # UDP: the first datagram may race the path
        try:
            msg = a.query(host, port, tn.db_name, qid=100 + attempt, timeout=5)
            break
        except socket.timeout:
            continue
    assert msg is not None, "no answer from B's resolver over the tailnet\n" + d.log()
    assert answers(msg) == ["192.0.2.10"]
    assert len([q for q in tn.dns_queries() if q["transport"] == "udp"]) > n
    rec = d.wait_audit(type="decision", proto="socks5-udp", addr=host)[0]
    assert rec["verdict"] == "allow" and rec["path"] == "tailnet"
    assert rec["peer"]["name"] == tn.b_dnsname.rstrip(".")
    assert rec["peer"]["route"] == tn.route_v4
    # an address no peer carries is denied (tailscaled would send it through
    # the host), as for TCP
    a.send(tn.unrouted_v4, 53, dnsserver.build_query(tn.db_name))
    deny = d.wait_audit(type="decision", proto="socks5-udp", addr=tn.unrouted_v4)[0]
    assert deny["verdict"] == "deny" and deny["path"] == "host", deny
    a.ctl.close()
    d.wait_audit(type="close", proto="socks5-udp")
    print("audit lines of a UDP DNS query over the tailnet:")
    for r in d.audit():
        if r.get("proto") == "socks5-udp":
            print(json.dumps(r))


def test_a_revoke_stops_an_open_association(tailfence, tailnet, associate):
    """The tailnet stops carrying B's route while an association is open:
    its destination behind B is decided again, denied with a record, and
    its datagrams are dropped (each datagram is new traffic, whatever
    --close-revoked says); after re-approval a new association works."""
    tn = tailnet
    d = tailfence("--tailscaled-socket", tn.a_socket, upstream="socks5://" + tn.a_proxy,
                  allow=(), lift_guards=())
    d.wait_audit(type="tailnet", state="running", timeout=30)
    host, port = tn.dns_v4
    a = associate(d, timeout=30)
    msg = None
    for attempt in range(5):  # UDP: the first datagram may race the path
        try:
            msg = a.query(host, port, tn.db_name, qid=200 + attempt, timeout=5)
            break
        except socket.timeout:
            continue
    assert msg is not None, "no answer from B's resolver over the tailnet\n" + d.log()
    tn.revoke_routes()
    rec = d.wait_audit(type="decision", proto="socks5-udp", verdict="deny", timeout=30)[0]
    assert rec["reason"].startswith("no longer allowed: "), rec
    assert "%s:%d" % (host, port) in rec["reason"], rec
    assert "UDP destination(s) no longer carried" in d.log()
    before = len([q for q in tn.dns_queries() if q["transport"] == "udp"])
    a.send(host, port, dnsserver.build_query(tn.db_name, qid=299))
    assert a.nothing_comes(2.0), "an answer came after the revoke"
    assert len([q for q in tn.dns_queries() if q["transport"] == "udp"]) == before
    tn.approve_routes()
    d.wait_audit(type="tailnet", state="running", timeout=30)
    wait_until(lambda: _carried(d, tn.route_v4), 30, "the route carried again")
    b = associate(d, timeout=30)
    msg = None
    for attempt in range(5):
        try:
            msg = b.query(host, port, tn.db_name, qid=300 + attempt, timeout=5)
            break
        except socket.timeout:
            continue
    assert msg is not None and answers(msg) == ["192.0.2.10"]


def _carried(d, prefix):
    """Has the last tailnet record added prefix (or does it stand carried)?"""
    recs = d.audit()
    for r in reversed(recs):
        if r.get("type") != "tailnet":
            continue
        if any(x.get("prefix") == prefix for x in r.get("added") or []):
            return True
        if any(x.get("prefix") == prefix for x in r.get("removed") or []):
            return False
    return False
