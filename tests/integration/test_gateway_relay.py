"""
Issue 2: the relay. Half-close is propagated (a client that shuts its write
side still gets the origin's answer), many connections run side by side,
SIGTERM/SIGINT stop the daemon cleanly with a complete audit trail, and 1 GiB
each way through tailfence and a real tailscaled arrives intact.

Half-close is tested with the direct upstream: tailscaled's proxy (and
microsocks) close both directions at the first EOF, so through them an
answer sent after the client's EOF cannot arrive whatever tailfence does.
"""

import hashlib
import signal
import socket
import struct
import threading
import time

import pytest

from helpers import (Origin, random_chunks, read_http_response, read_until, recv_all,
                     recv_exact, socks4_connect, socks5_connect, wait_closed)

GiB = 1 << 30


def open_tunnel(d, proto, origin):
    """A socket through d to origin over proto (socks5|socks4|http-connect)."""
    s = d.connect(timeout=60)
    if proto == "socks5":
        rep, _, _ = socks5_connect(s, origin.host, origin.port)
        assert rep == 0, "SOCKS5 reply 0x%02x" % rep
        return s, b""
    if proto == "socks4":
        assert socks4_connect(s, origin.host, origin.port) == 0x5A
        return s, b""
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (origin.hostport, origin.hostport)).encode())
    status, _, _, rest = read_http_response(s, body=False)
    assert status == 200, "CONNECT answered %d" % status
    return s, rest


# 64 KB stays on the copy engine; 1.3 MB moves the relay to splice (after
# 64 KiB), so the half-close is checked on both engines.
@pytest.mark.parametrize("size", [5000, 100000], ids=["copy-engine", "splice-engine"])
@pytest.mark.parametrize("proto", ["socks5", "socks4", "http-connect"])
def test_half_close_client_still_gets_answer(proto, size, tailfence, origins):
    sink = origins.sink()
    d = tailfence()
    payload = b"request body " * size
    s, rest = open_tunnel(d, proto, sink)
    with s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)  # the origin answers only after this EOF
        answer = rest + recv_all(s)
    assert answer == b"%d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode()), answer
    dec = d.wait_audit(type="decision", verdict="allow", port=sink.port)[0]
    close = d.wait_close(dec["conn"])
    assert close["bytes_up"] == len(payload) and close["bytes_down"] == len(answer), close


class GreetThenSink(Origin):
    """Sends a greeting, shuts its write side, then counts what the client
    still sends until the client's EOF."""

    name = "greet-sink"

    def __init__(self, host="127.0.0.1"):
        self.received = []
        super().__init__(host)

    def handle(self, conn):
        conn.sendall(b"hello, then EOF\n")
        conn.shutdown(socket.SHUT_WR)
        data = recv_all(conn)
        with self._cond:
            self.received.append(data)
            self._cond.notify_all()


def test_half_close_from_origin_side(tailfence, origins):
    o = origins._keep(GreetThenSink())
    d = tailfence()
    s, _ = open_tunnel(d, "socks5", o)
    with s:
        assert read_until(s, b"\n") == b"hello, then EOF\n"
        assert s.recv(1) == b"", "the origin's EOF did not reach the client"
        s.sendall(b"the client keeps talking")  # its direction is still open
        s.shutdown(socket.SHUT_WR)
        assert wait_closed(s, 10)
    with o._cond:
        o._cond.wait_for(lambda: o.received, 10)
    assert o.received == [b"the client keeps talking"]


@pytest.mark.parametrize("kind", ["direct", "tailscaled-socks5", "tailscaled-http"])
def test_many_connections_side_by_side(kind, tailfence, upstream_url, echo_origin):
    d = tailfence(upstream=upstream_url(kind))
    n, size = 32, 256 << 10
    errors = []

    def one(i):
        try:
            payload = bytes([i]) * size
            s, rest = open_tunnel(d, "socks5" if i % 2 else "http-connect", echo_origin)
            with s:
                s.sendall(payload)
                got = rest + recv_exact(s, size - len(rest))
                if got != payload:
                    errors.append("connection %d got other bytes" % i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("connection %d: %r" % (i, e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    decs = d.wait_audit(type="decision", verdict="allow", port=echo_origin.port, n=n)
    assert len({r["conn"] for r in decs}) == n, "connection ids are not unique"
    for r in decs:
        c = d.wait_close(r["conn"])
        assert c["bytes_up"] == size and c["bytes_down"] == size, c


def _use(d, echo_origin, denied):
    for proto in ("socks5", "socks4", "http-connect"):
        s, rest = open_tunnel(d, proto, echo_origin)
        with s:
            s.sendall(b"ping")
            assert rest + recv_exact(s, 4 - len(rest)) == b"ping"
    with d.connect() as s:
        assert socks5_connect(s, denied.host, denied.port)[0] == 0x02


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_with_complete_trail(sig, tailfence, echo_origin, origins):
    denied = origins.echo("127.0.1.1")
    d = tailfence()
    _use(d, echo_origin, denied)
    d.wait_audit(type="decision", n=4)
    d.stop(sig, expect=0)
    trail = d.audit()
    decisions = [r for r in trail if r.get("type") == "decision"]
    closes = [r for r in trail if r.get("type") == "close"]
    assert len(decisions) == 4, trail
    assert sorted(r["conn"] for r in closes) == sorted(r["conn"] for r in decisions), trail
    types = [r.get("type") for r in trail]
    assert "shutdown" in types, "no shutdown record at the end of the trail: %r" % types
    assert types.index("shutdown") > max(i for i, t in enumerate(types) if t == "close"), types
    assert denied.count == 0


def test_sigterm_ends_open_relays_after_grace(tailfence, echo_origin):
    d = tailfence("--shutdown-grace", "1s")
    s, _ = open_tunnel(d, "socks5", echo_origin)
    with s:
        s.sendall(b"open")
        assert recv_exact(s, 4) == b"open"
        dec = d.wait_audit(type="decision", verdict="allow", port=echo_origin.port)[0]
        d.proc.proc.send_signal(signal.SIGTERM)
        # the idle relay is ended by the daemon once the grace period is over
        assert wait_closed(s, 30), "the open relay was not closed at shutdown"
    d.wait_exit(expect=0)
    close = [r for r in d.audit() if r.get("type") == "close" and r.get("conn") == dec["conn"]]
    assert len(close) == 1, d.audit()
    assert close[0]["end"] == "shutdown", close
    assert close[0]["bytes_up"] == 4 and close[0]["bytes_down"] == 4, close


def test_sigterm_lets_a_running_transfer_finish(tailfence, origins):
    src = origins.source(64 << 20)
    d = tailfence("--shutdown-grace", "20s")
    s, _ = open_tunnel(d, "socks5", src)
    with s:
        first = recv_exact(s, 1 << 20)
        d.proc.proc.send_signal(signal.SIGTERM)
        rest = recv_all(s, limit=65 << 20)
    data = first + rest
    with src._cond:
        src._cond.wait_for(lambda: src.sent, 10)
    assert (len(data), hashlib.sha256(data).hexdigest()) == src.sent[0]
    d.wait_exit(expect=0)


def _transfer_1gib(d, origins, seed):
    """Upload 1 GiB to a framed sink and download 1 GiB from a source through
    d, comparing sha256 end to end. Returns (up_conn, down_conn) ids."""
    sink = origins.sink(framed=True)
    src = origins.source(GiB, seed=seed + 1)

    # client -> origin
    s, _ = open_tunnel(d, "socks5", sink)
    with s:
        h = hashlib.sha256()
        s.sendall(struct.pack("!Q", GiB))
        for chunk in random_chunks(GiB, seed):
            h.update(chunk)
            s.sendall(chunk)
        answer = read_until(s, b"\n")
    assert answer == b"%d %s\n" % (GiB, h.hexdigest().encode()), "upload arrived damaged: %r" % answer

    # origin -> client
    s, _ = open_tunnel(d, "socks5", src)
    with s:
        h = hashlib.sha256()
        n = 0
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while True:
            got = s.recv_into(view)
            if not got:
                break
            h.update(view[:got])
            n += got
    with src._cond:
        src._cond.wait_for(lambda: src.sent, 30)
    assert (n, h.hexdigest()) == src.sent[0], "download arrived damaged"
    up = d.wait_audit(type="decision", verdict="allow", port=sink.port)[0]["conn"]
    down = d.wait_audit(type="decision", verdict="allow", port=src.port)[0]["conn"]
    return up, down


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_gib_each_way_through_tailscaled(tailfence, tailscaled, origins):
    d = tailfence(upstream=tailscaled.socks5_url)
    t0 = time.monotonic()
    up, down = _transfer_1gib(d, origins, seed=7)
    print("1 GiB each way through tailfence + tailscaled: %.1f s" % (time.monotonic() - t0))
    c_up, c_down = d.wait_close(up, timeout=30), d.wait_close(down, timeout=30)
    assert c_up["bytes_up"] == GiB + 8, c_up
    assert c_down["bytes_down"] == GiB, c_down


def test_idle_timeout_closes_a_quiet_relay(tailfence, echo_origin):
    d = tailfence("--idle-timeout", "1s")
    s, _ = open_tunnel(d, "socks5", echo_origin)
    with s:
        s.sendall(b"once")
        assert recv_exact(s, 4) == b"once"
        # nothing more in either direction: the daemon ends the relay
        assert wait_closed(s, 30), "a relay without traffic was never closed"
    dec = d.wait_audit(type="decision", verdict="allow", port=echo_origin.port)[0]
    close = d.wait_close(dec["conn"])
    assert close["end"] == "idle_timeout", close
    assert close["bytes_up"] == 4 and close["bytes_down"] == 4, close
