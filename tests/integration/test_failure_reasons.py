"""
Every refusal and failure names its reason in three places: the reply the
client gets (an HTTP body; SOCKS has only a code), the close record's
"error", and the operator log at info or warn. The most common production
failure, tailscaled not running, is also warned about at start.

One test per failure kind: the upstream port closed, the destination
refusing (directly and through a SOCKS5 upstream that only answers
"general failure", as tailscaled does), an upstream that never answers
(504), a wrong password (407), a denied destination (403).
"""

import socket
import threading

import pytest

from helpers import (connect, free_port, read_http_response, socks5_connect, socks5_greet,
                     wait_until)


def http_connect(d, authority, auth=None):
    """(status, body text, conn id of the last decision/close) for one CONNECT."""
    head = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (authority, authority)
    if auth:
        head += "Proxy-Authorization: Basic %s\r\n" % auth
    with d.connect() as s:
        s.sendall((head + "\r\n").encode())
        status, headers, body, _ = read_http_response(s)
    return status, body.decode().strip(), headers


def close_of_last(d, timeout=10):
    """The close record of the last connection the daemon handled."""
    def last():
        closes = d.closes()
        return closes[-1] if closes else None
    return wait_until(last, timeout, "a close record")


def assert_reason_everywhere(d, body, close, what):
    """The body's reason is the close record's error and is in the log."""
    assert body, "%s: the reply has no reason" % what
    assert close["error"] == body, (what, close)
    wait_until(lambda: body in d.log(), 10, "the reason in the operator log")
    line = [l for l in d.log().splitlines() if body in l][0]
    assert ": info: " in line or ": warn: " in line, line


def test_upstream_not_running(tailfence, echo_origin):
    dead = free_port()
    d = tailfence(upstream="socks5://127.0.0.1:%d" % dead)
    # warned at start, before any client
    wait_until(lambda: "does not answer" in d.log(), 10, "the start warning")
    assert ("upstream socks5://127.0.0.1:%d does not answer (Connection refused)" % dead) \
        in d.log()
    assert "--socks5-server=127.0.0.1:%d" % dead in d.log()
    status, body, _ = http_connect(d, echo_origin.hostport)
    assert status == 502
    assert "Connection refused" in body or "refused" in body, body
    close = close_of_last(d)
    assert close["end"] == "dial_failed"
    assert_reason_everywhere(d, body, close, "upstream down")
    # SOCKS5: a reply code, and the same reason in the record and the log
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, "127.0.0.1", echo_origin.port)
    assert rep == 0x01  # general failure: the proxy, not the destination, refused
    wait_until(lambda: len(d.closes()) == 2, 10, "the second close")
    assert d.closes()[-1]["error"] == body


def test_destination_refuses_direct(tailfence):
    closed = free_port()
    d = tailfence()
    status, body, _ = http_connect(d, "127.0.0.1:%d" % closed)
    assert status == 502
    assert "refused" in body.lower(), body
    assert_reason_everywhere(d, body, close_of_last(d), "destination refuses")
    assert "does not answer" not in d.log(), "a direct upstream was probed"


def test_destination_refuses_through_tailscaled(tailfence, upstream_url):
    # tailscaled's SOCKS5 answers 1 (general failure) for every failure:
    # the reason says what the upstream said.
    d = tailfence(upstream=upstream_url("tailscaled-socks5"))
    status, body, _ = http_connect(d, "127.0.0.1:%d" % free_port())
    assert status == 502
    assert "upstream" in body.lower(), body
    assert_reason_everywhere(d, body, close_of_last(d), "refused through tailscaled")


@pytest.fixture
def silent_upstream():
    """A TCP listener that accepts and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", free_port()))
    srv.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for s in held:
        s.close()
    srv.close()


def test_upstream_never_answers(tailfence, echo_origin, silent_upstream):
    d = tailfence("--connect-timeout", "1s", upstream="socks5://127.0.0.1:%d" % silent_upstream)
    status, body, _ = http_connect(d, echo_origin.hostport)
    assert status == 504
    assert body, "no reason"
    assert_reason_everywhere(d, body, close_of_last(d), "upstream silent")


def test_wrong_password(tailfence, tailfence_cli, tmp_path, echo_origin):
    import base64
    import json
    hashed = tailfence_cli("passwd", input="right-pw-3321\n").stdout.strip()
    cfg = tmp_path / "users.json"
    cfg.write_text(json.dumps({"users": {"alice": hashed}}))
    d = tailfence("--config", cfg)
    auth = base64.b64encode(b"alice:wrong-pw").decode()
    status, body, headers = http_connect(d, echo_origin.hostport, auth=auth)
    assert status == 407
    assert body == 'login failed for user "alice"', body
    assert headers.get("proxy-authenticate", "").startswith("Basic")
    close = close_of_last(d)
    assert close["end"] == "auth_failed"
    assert_reason_everywhere(d, body, close, "wrong password")
    # no credentials at all: 407 with its own reason
    status, body, _ = http_connect(d, echo_origin.hostport)
    assert status == 407 and body == "proxy authentication required"
    wait_until(lambda: d.closes()[-1]["error"] == body, 10, "the second close")


def test_denied(tailfence):
    d = tailfence(allow=("127.0.0.0/24:80",))
    status, body, _ = http_connect(d, "127.0.0.1:81")
    assert status == 403
    assert "127.0.0.1:81" in body, body
    close = close_of_last(d)
    assert close["end"] == "denied"
    assert_reason_everywhere(d, body, close, "denied")
