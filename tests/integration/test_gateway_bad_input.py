"""
Issue 2: bad input. Random bytes, truncated and stalled handshakes, heads that
are too large, clients that vanish mid-transfer, an upstream that is down,
ambiguous HTTP framing, unsupported SOCKS commands and address types. Each
case gets the right refusal (or a closed connection), and afterwards the same
daemon still serves a normal request.
"""

import os
import random
import socket
import struct
import time

import pytest

from helpers import (ATYP_DOMAIN, SOCKS5_BIND, Origin, abort,
                     free_port, http_exchange, read_http_response, recv_exact,
                     socks4_connect, socks5_connect, socks5_greet, socks5_read_reply,
                     socks5_request_bytes, wait_closed)


@pytest.fixture
def gw(tailfence):
    """A daemon with a short handshake timeout, so stalled clients end fast."""
    return tailfence("--handshake-timeout", "1s")


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(seed, gw, echo_origin):
    rnd = random.Random(seed)
    first = [0x05, 0x04, ord("G"), ord("C"), rnd.randrange(256)][seed % 5]
    junk = bytes([first]) + rnd.randbytes(rnd.choice([1, 7, 64, 512, 4096, 20000]))
    with gw.connect() as s:
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the daemon may already have refused and closed
        assert wait_closed(s, 15), "tailfence kept a connection open after random bytes and EOF"
    gw.assert_serves(echo_origin)


@pytest.mark.parametrize("prefix", [
    b"\x05", b"\x05\x02\x00", b"\x05\x01\x00\x05\x01\x00", b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00",
    b"\x05\x01\x00\x05\x01\x00\x03\x09local", b"\x04\x01\x00", b"\x04\x01\x00\x50\x7f\x00\x00\x01tf",
    b"\x04\x01\x00\x50\x00\x00\x00\x01\x00some.na", b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: x",
    b"GET http://127.0.0.1/ HTTP/1.1\r\n",
], ids=lambda p: p[:12].hex())
def test_truncated_handshake_then_eof(prefix, gw, echo_origin):
    with gw.connect() as s:
        s.sendall(prefix)
        s.shutdown(socket.SHUT_WR)
        assert wait_closed(s, 15), "connection left open after a truncated handshake and EOF"
    gw.assert_serves(echo_origin)
    assert echo_origin.count == 1  # only assert_serves reached it


@pytest.mark.parametrize("prefix", [b"", b"\x05", b"\x05\x01\x00\x05\x01", b"\x04\x01",
                                    b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n"], ids=["nothing", "s5-1", "s5-req", "s4", "http"])
def test_stalled_handshake_is_closed_after_timeout(prefix, gw, echo_origin):
    with gw.connect(timeout=30) as s:
        if prefix:
            s.sendall(prefix)
        # --handshake-timeout 1s: the daemon must close it; 20 s is only the
        # point where the test gives up.
        assert wait_closed(s, 20), "a stalled handshake was never closed"
    gw.assert_serves(echo_origin)


def test_byte_by_byte_handshake_works(gw, echo_origin):
    with gw.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = b"\x05\x01\x00"
        # A pause after each byte, so each one arrives in a read of its own.
        for b in msg:
            s.send(bytes([b]))
            time.sleep(0.01)
        assert recv_exact(s, 2) == b"\x05\x00"
        for b in socks5_request_bytes("127.0.0.1", echo_origin.port):
            s.send(bytes([b]))
            time.sleep(0.01)
        rep, _, _ = socks5_read_reply(s)
        assert rep == 0
        s.sendall(b"slow")
        assert recv_exact(s, 4) == b"slow"


def test_oversized_http_head_gets_431(tailfence, http_origin, echo_origin):
    d = tailfence("--max-head-bytes", "4096")
    raw = ("GET %s HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n"
           % (http_origin.url, http_origin.hostport, "a" * 8000)).encode()
    status, _, _ = http_exchange(d.port, raw)
    assert status == 431
    raw = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
           % (http_origin.hostport, http_origin.hostport,
              "".join("X-H%d: %s\r\n" % (i, "b" * 100) for i in range(60)))).encode()
    status, _, _ = http_exchange(d.port, raw)
    assert status == 431
    assert http_origin.count == 0
    d.assert_serves(echo_origin)


def test_oversized_socks5_hostname_handshake_is_refused(tailfence, echo_origin):
    # A 255-byte name is the protocol maximum and must simply be handled
    # (it does not resolve: the reply is a failure, not a hang or a crash).
    gw = tailfence("--dns-timeout", "1s")
    with gw.connect() as s:
        rep, _, _ = socks5_connect(s, "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".test", 80)
        assert rep != 0
    gw.assert_serves(echo_origin)


def test_client_abort_mid_transfer(tailfence, origins, echo_origin):
    src = origins.source(512 << 20)
    d = tailfence()
    s = d.connect()
    rep, _, _ = socks5_connect(s, "127.0.0.1", src.port)
    assert rep == 0
    recv_exact(s, 1 << 20)
    abort(s)  # reset in the middle of a 512 MiB download
    dec = d.wait_audit(type="decision", verdict="allow", port=src.port)[0]
    close = d.wait_close(dec["conn"], timeout=30)
    assert close["bytes_down"] >= 1 << 20, close
    d.assert_serves(echo_origin)


def test_client_abort_mid_upload(tailfence, origins, echo_origin):
    sink = origins.sink()
    d = tailfence()
    s = d.connect()
    assert socks5_connect(s, "127.0.0.1", sink.port)[0] == 0
    s.sendall(os.urandom(4 << 20))
    abort(s)
    dec = d.wait_audit(type="decision", verdict="allow", port=sink.port)[0]
    d.wait_close(dec["conn"], timeout=30)
    d.assert_serves(echo_origin)


def _dead_port():
    return free_port()  # handed out once, nobody listens on it


@pytest.mark.parametrize("scheme", ["socks5", "http"])
def test_upstream_down(scheme, tailfence, echo_origin):
    d = tailfence(upstream="%s://127.0.0.1:%d" % (scheme, _dead_port()))
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, "127.0.0.1", echo_origin.port)
        assert rep in (0x01, 0x03, 0x04, 0x05), "SOCKS5 reply 0x%02x with the upstream down" % rep
    with d.connect() as s:
        assert socks4_connect(s, "127.0.0.1", echo_origin.port) == 0x5B
    raw = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (echo_origin.hostport, echo_origin.hostport)).encode()
    status, _, _ = http_exchange(d.port, raw)
    assert status == 502
    raw = ("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (echo_origin.hostport, echo_origin.hostport)).encode()
    status, _, _ = http_exchange(d.port, raw)
    assert status == 502
    assert echo_origin.count == 0
    # the decision was allow; the close record says it failed
    dec = d.wait_audit(type="decision", verdict="allow", port=echo_origin.port, n=4)
    for rec in dec:
        close = d.wait_close(rec["conn"])
        assert close.get("end"), close
    assert d.alive()


def test_destination_refused_direct(tailfence, echo_origin):
    d = tailfence()
    port = _dead_port()
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, "127.0.0.1", port)
        assert rep == 0x05, "SOCKS5 reply 0x%02x for a refused destination, expected 0x05" % rep
    status, _, _ = http_exchange(d.port, ("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port).encode())
    assert status == 502
    d.assert_serves(echo_origin)


@pytest.mark.parametrize("framing", [
    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "Content-Length: 5\r\nContent-Length: 6\r\n",
], ids=["cl-te", "te-cl", "cl-cl"])
def test_ambiguous_framing_is_400_and_never_forwarded(framing, tailfence, http_origin, echo_origin):
    d = tailfence()
    raw = ("POST %spost HTTP/1.1\r\nHost: %s\r\n%s\r\n5\r\nhello\r\n0\r\n\r\n"
           % (http_origin.url, http_origin.hostport, framing)).encode()
    status, _, _ = http_exchange(d.port, raw)
    assert status == 400
    assert http_origin.count == 0, "the origin saw a connection for an ambiguous request"
    d.assert_serves(echo_origin)


def test_malformed_http_is_400(gw, http_origin, echo_origin):
    for raw in (b"GET\r\n\r\n", b"CONNECT nohostport HTTP/1.1\r\n\r\n",
                b"GET http://127.0.0.1:notaport/ HTTP/1.1\r\nHost: x\r\n\r\n"):
        status, _, _ = http_exchange(gw.port, raw)
        assert status == 400, "%r answered %d" % (raw, status)
    gw.assert_serves(echo_origin)


def test_non_proxy_request_is_405(gw, echo_origin):
    status, _, _ = http_exchange(gw.port, b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 405
    gw.assert_serves(echo_origin)


# UDP ASSOCIATE is served (test_udp.py); BIND is not.
@pytest.mark.parametrize("cmd", [SOCKS5_BIND, 0x09], ids=["bind", "unknown"])
def test_socks5_unsupported_command(cmd, gw, echo_origin):
    with gw.connect() as s:
        rep, _, _ = socks5_connect(s, "127.0.0.1", echo_origin.port, cmd=cmd)
        assert rep == 0x07, "SOCKS5 reply 0x%02x for command %d, expected 0x07" % (rep, cmd)
    assert echo_origin.count == 0
    gw.assert_serves(echo_origin)


def test_socks5_unknown_address_type(gw, echo_origin):
    with gw.connect() as s:
        assert socks5_greet(s) == 0
        s.sendall(b"\x05\x01\x00\x02" + b"\x7f\x00\x00\x01" + struct.pack("!H", echo_origin.port))
        rep, _, _ = socks5_read_reply(s)
        assert rep == 0x08
    gw.assert_serves(echo_origin)


def test_socks5_no_acceptable_method(gw, echo_origin):
    with gw.connect() as s:
        assert socks5_greet(s, methods=(0x80, 0x81)) == 0xFF
        assert wait_closed(s, 10)
    gw.assert_serves(echo_origin)


def test_socks5_empty_domain_name(gw, echo_origin):
    with gw.connect() as s:
        assert socks5_greet(s) == 0
        s.sendall(bytes([5, 1, 0, ATYP_DOMAIN, 0]) + struct.pack("!H", 80))
        try:
            rep, _, _ = socks5_read_reply(s)
            assert rep != 0
        except (EOFError, ConnectionResetError):
            pass
    gw.assert_serves(echo_origin)


def test_many_idle_half_open_clients_do_not_block_others(gw, echo_origin):
    idle = [gw.connect() for _ in range(50)]
    try:
        for s in idle[:25]:
            s.sendall(b"\x05\x01")
        gw.assert_serves(echo_origin)
    finally:
        for s in idle:
            s.close()


def test_http_connect_with_body_bytes_pipelined(gw, echo_origin):
    # Bytes sent right behind the CONNECT head belong to the tunnel.
    with gw.connect() as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nearly"
                   % (echo_origin.hostport, echo_origin.hostport)).encode())
        status, _, _, rest = read_http_response(s, body=False)
        assert status == 200
        assert rest + recv_exact(s, 5 - len(rest)) == b"early"


class SilentUpstream(Origin):
    """Accepts and reads, never answers: an upstream proxy that hangs."""

    name = "silent"

    def handle(self, conn):
        while conn.recv(4096):
            pass


@pytest.mark.parametrize("scheme", ["socks5", "http"])
def test_upstream_that_hangs_times_out(scheme, tailfence, origins, echo_origin):
    hang = origins._keep(SilentUpstream())
    d = tailfence("--connect-timeout", "1s", upstream="%s://%s" % (scheme, hang.hostport))
    with d.connect(timeout=30) as s:
        rep, _, _ = socks5_connect(s, "127.0.0.1", echo_origin.port)
        assert rep == 0x06, "SOCKS5 reply 0x%02x for an upstream timeout, expected 0x06" % rep
    raw = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (echo_origin.hostport, echo_origin.hostport)).encode()
    status, _, _ = http_exchange(d.port, raw, timeout=30)
    assert status == 504
    assert echo_origin.count == 0
    assert d.alive()
