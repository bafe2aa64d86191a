"""
Issue 2: curl through tailfence over every proxy protocol it speaks, with
every kind of upstream (a real tailscaled's SOCKS5 and HTTP listener,
microsocks, direct). What a user notices: the page arrives, the origin saw a
normal request, and the audit trail has an allow decision and a close record.
"""

import hashlib

import pytest

from helpers import UPSTREAM_KINDS, curl


def check_trail(d, proto, addr, port, body_len):
    """One allow decision for (proto, addr, port) and its close record with
    bytes both ways; returns the close record."""
    dec = d.wait_audit(type="decision", verdict="allow", proto=proto, addr=addr, port=port)
    assert len(dec) == 1, dec
    close = d.wait_close(dec[0]["conn"])
    assert close["bytes_up"] > 0, close
    assert close["bytes_down"] >= body_len, close
    return close


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
class TestCurlThroughTailfence:

    def test_socks5h_hostname(self, kind, tailfence, upstream_url, http_origin):
        d = tailfence(upstream=upstream_url(kind))
        r = curl("http://localhost:%d/socks5h?x=1" % http_origin.port, proxy=d.url("socks5h"))
        assert r.returncode == 0 and r.http_code == 200, r
        req = r.json()
        assert req["origin"] == "http-origin" and req["path"] == "/socks5h?x=1"
        dec = d.wait_audit(type="decision", verdict="allow", proto="socks5", port=http_origin.port)[0]
        assert dec["host"] == "localhost" and dec["addr"] == "127.0.0.1", dec
        check_trail(d, "socks5", "127.0.0.1", http_origin.port, len(r.body))

    def test_socks5_ip(self, kind, tailfence, upstream_url, http_origin):
        d = tailfence(upstream=upstream_url(kind))
        r = curl(http_origin.url + "socks5", proxy=d.url("socks5"))
        assert r.returncode == 0 and r.http_code == 200, r
        assert r.json()["path"] == "/socks5"
        check_trail(d, "socks5", "127.0.0.1", http_origin.port, len(r.body))

    def test_socks4a_hostname(self, kind, tailfence, upstream_url, http_origin):
        d = tailfence(upstream=upstream_url(kind))
        r = curl("http://localhost:%d/socks4a" % http_origin.port, proxy=d.url("socks4a"))
        assert r.returncode == 0 and r.http_code == 200, r
        assert r.json()["path"] == "/socks4a"
        check_trail(d, "socks4a", "127.0.0.1", http_origin.port, len(r.body))

    def test_socks4_ip(self, kind, tailfence, upstream_url, http_origin):
        d = tailfence(upstream=upstream_url(kind))
        r = curl(http_origin.url + "socks4", proxy=d.url("socks4"))
        assert r.returncode == 0 and r.http_code == 200, r
        check_trail(d, "socks4", "127.0.0.1", http_origin.port, len(r.body))

    def test_http_connect_to_https_origin(self, kind, tailfence, upstream_url, https_origin, tls_cert):
        d = tailfence(upstream=upstream_url(kind))
        r = curl(https_origin.url + "tls", proxy=d.url("http"), cacert=tls_cert[0])
        assert r.returncode == 0 and r.http_code == 200, r
        assert r.connect_code == 200, r
        req = r.json()
        assert req["tls"] is True and req["path"] == "/tls"
        check_trail(d, "http-connect", "127.0.0.1", https_origin.port, len(r.body))

    def test_http_proxytunnel_to_http_origin(self, kind, tailfence, upstream_url, http_origin):
        d = tailfence(upstream=upstream_url(kind))
        r = curl(http_origin.url + "tunnel", "--proxytunnel", proxy=d.url("http"))
        assert r.returncode == 0 and r.http_code == 200 and r.connect_code == 200, r
        assert r.json()["path"] == "/tunnel"
        check_trail(d, "http-connect", "127.0.0.1", http_origin.port, len(r.body))

    def test_http_absolute_form_get(self, kind, tailfence, upstream_url, http_origin):
        d = tailfence(upstream=upstream_url(kind))
        r = curl(http_origin.url + "abs/path?q=1", "-H", "X-Test: kept", proxy=d.url("http"))
        assert r.returncode == 0 and r.http_code == 200, r
        req = r.json()
        # forwarded in origin-form, end-to-end headers kept, hop-by-hop gone
        assert req["path"] == "/abs/path?q=1", req
        names = {k.lower(): v for k, v in req["headers"]}
        assert names.get("x-test") == "kept", req
        assert "proxy-connection" not in names, req
        assert names.get("host") == "127.0.0.1:%d" % http_origin.port, req
        check_trail(d, "http", "127.0.0.1", http_origin.port, len(r.body))

    def test_http_absolute_form_post_body(self, kind, tailfence, upstream_url, http_origin, tmp_path):
        d = tailfence(upstream=upstream_url(kind))
        body = bytes(range(256)) * 1024
        (tmp_path / "body.bin").write_bytes(body)
        r = curl(http_origin.url + "upload", "--data-binary", "@%s" % (tmp_path / "body.bin"),
                 "-H", "Content-Type: application/octet-stream", proxy=d.url("http"))
        assert r.returncode == 0 and r.http_code == 200, r
        req = r.json()
        assert req["method"] == "POST" and req["body_len"] == len(body)
        assert req["body_sha256"] == hashlib.sha256(body).hexdigest()
        close = check_trail(d, "http", "127.0.0.1", http_origin.port, len(r.body))
        assert close["bytes_up"] >= len(body), close
