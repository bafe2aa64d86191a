"""
Issue 2: the upstreams tailfence is tested against behave the way the design
relies on. A tailscaled that is not logged in still serves its SOCKS5 and HTTP
proxy and dials loopback through the host stack (which is also why tailfence
must exist: that proxy is open), and tailscaled is the pinned version.
"""

import subprocess

from conftest import TAILSCALED
from helpers import connect, free_port, read_http_response, recv_exact, socks5_connect


def test_tailscaled_is_the_pinned_version():
    out = subprocess.run(["/usr/local/go/bin/go", "version", "-m", TAILSCALED],
                         capture_output=True, text=True, check=True).stdout
    assert "\tmod\ttailscale.com\tv1.100.0\t" in out, out[:500]


def test_tailscaled_socks5_reaches_loopback_unfiltered(tailscaled, origins):
    # Both sub-ranges are reachable through tailscaled's own proxy: it has
    # no destination filter of its own.
    for host in ("127.0.0.1", "127.0.1.1"):
        origin = origins.echo(host)
        with connect(tailscaled.port) as s:
            rep, _, _ = socks5_connect(s, host, origin.port)
            assert rep == 0, "tailscaled SOCKS5 reply 0x%02x for %s" % (rep, origin.hostport)
            s.sendall(b"hello")
            assert recv_exact(s, 5) == b"hello"
        assert origin.count == 1


def test_tailscaled_http_proxy_connect(tailscaled, echo_origin):
    with connect(tailscaled.port) as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % (echo_origin.hostport, echo_origin.hostport)).encode())
        status, _, _, rest = read_http_response(s, body=False)
        assert status == 200
        s.sendall(b"abc")
        assert rest + recv_exact(s, 3 - len(rest)) == b"abc"


def test_microsocks_reaches_loopback(microsocks, echo_origin):
    with connect(microsocks.port) as s:
        rep, _, _ = socks5_connect(s, echo_origin.host, echo_origin.port)
        assert rep == 0
        s.sendall(b"xyz")
        assert recv_exact(s, 3) == b"xyz"


def test_postgres_answers_directly(postgres):
    p = subprocess.run(["psql", "-X", "-At", postgres.dsn(), "-c", "select name from items where id < 100 order by id"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["alpha", "beta", "gamma"]


def test_refused_destination_through_tailscaled_is_general_failure(tailfence, tailscaled):
    """README: SOCKS5 replies 3/4/5 never come back through tailscaled, whose
    proxy answers 1 for every dial that fails; a direct dial says 5."""
    port = free_port()  # nothing listens there: the dial is refused
    with connect(tailscaled.port) as s:
        rep, _, _ = socks5_connect(s, "127.0.0.1", port)
    assert rep == 0x01, "tailscaled itself answered 0x%02x for a refused dial" % rep
    for upstream, want in ((tailscaled.socks5_url, 0x01), ("direct", 0x05)):
        d = tailfence(upstream=upstream)
        with d.connect() as s:
            rep, _, _ = socks5_connect(s, "127.0.0.1", port)
        assert rep == want, "through %s: SOCKS5 reply 0x%02x for a refused destination, expected 0x%02x" % (
            upstream, rep, want)
