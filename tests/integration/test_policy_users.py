"""
Issue 3: per-user rules. A config file with two users (hashes made by
`tailfence passwd` from stdin) and one rule each: alice may reach origin A
(127.0.0.1), bob origin B (127.0.0.2), nobody else anything. Driven with
real clients the way users would: curl with SOCKS5 credentials in the proxy
URL, curl with HTTP proxy credentials (-x http://user:pw@ and --proxy-user,
plain requests and CONNECT tunnels), proxychains4 with the credentials on
its socks5/http line. A wrong password is refused (SOCKS5 auth failure,
HTTP 407); the audit trail carries the user name and never a password, nor
does the daemon's own log.

Also the login handshake itself: 407 with Proxy-Authenticate when a request
has no Proxy-Authorization (and curl's --proxy-anyauth doing the 407 dance),
SOCKS5 method 0xFF for a client offering only no-auth, SOCKS4 refused
because it cannot carry a password.
"""

import base64
import json
import subprocess

import pytest

from helpers import (clean_env, curl, read_http_response, recv_exact,
                     socks5_greet, socks5_read_reply, socks5_request_bytes, wait_closed)

A_HOST = "127.0.0.1"
B_HOST = "127.0.0.2"

PASSWORDS = {"alice": "alice-Pw-7f3a9c", "bob": "bob-Pw-2e81d0"}
WRONG = "alice-WRONG-55b1"


@pytest.fixture(scope="module")
def user_hashes(tailfence_bin):
    """{user: hash} made with `tailfence passwd` reading the password from
    stdin, once per module (scrypt is slow on purpose)."""
    out = {}
    for user, pw in PASSWORDS.items():
        p = subprocess.run([tailfence_bin, "passwd"], input=pw + "\n", capture_output=True,
                           text=True, env=clean_env(), timeout=60)
        assert p.returncode == 0, p.stderr
        h = p.stdout.strip()
        assert h.startswith("$scrypt$") and pw not in h, h
        out[user] = h
    return out


@pytest.fixture
def two_users(tailfence, origins, user_hashes, tmp_path):
    """A daemon whose only rules are: alice -> A (HTTP origin on
    127.0.0.1), bob -> B (HTTP origin on 127.0.0.2). Returns (d, A, B)."""
    a = origins.http(A_HOST, label="origin-A")
    b = origins.http(B_HOST, label="origin-B")
    cfg = {
        "users": user_hashes,
        "lift_guards": ["loopback"],
        "rules": [
            {"name": "alice-to-A", "action": "accept", "dst": ["%s:%d" % (A_HOST, a.port)],
             "users": ["alice"]},
            {"name": "bob-to-B", "action": "accept", "dst": ["%s:%d" % (B_HOST, b.port)],
             "users": ["bob"]},
        ],
    }
    path = tmp_path / "users.json"
    path.write_text(json.dumps(cfg, indent=2))
    d = tailfence("--config", path, "--log-level", "debug", allow=(), lift_guards=())
    return d, a, b


def cred(user, pw=None):
    return "%s:%s" % (user, PASSWORDS[user] if pw is None else pw)


def proxy_url(d, scheme, user, pw=None):
    return "%s://%s@%s" % (scheme, cred(user, pw), d.addr)


def assert_no_secret(d):
    """Neither the audit file nor the daemon's output holds any password
    (correct or wrong), nor a Basic credential built from one."""
    trail = open(d.audit_path, encoding="utf-8").read() if d.audit_path else ""
    log = d.log()
    secrets = list(PASSWORDS.values()) + [WRONG]
    for user, pw in list(PASSWORDS.items()) + [("alice", WRONG)]:
        secrets.append(base64.b64encode(("%s:%s" % (user, pw)).encode()).decode())
    for s in secrets:
        assert s not in trail, "audit trail contains a credential %r" % s
        assert s not in log, "daemon output contains a credential %r:\n%s" % (s, log[-3000:])


def origin_saw(origin):
    return [r["path"] for r in origin.requests]


# ----------------------------------------------------------------- SOCKS5

@pytest.mark.parametrize("scheme", ["socks5h", "socks5"])
def test_curl_socks5_credentials_per_user(scheme, two_users):
    d, a, b = two_users
    r = curl(a.url + "alice-a", proxy=proxy_url(d, scheme, "alice"))
    assert r.returncode == 0 and r.http_code == 200, r
    assert r.json()["origin"] == "origin-A"
    r = curl(b.url + "alice-b", proxy=proxy_url(d, scheme, "alice"))
    assert r.returncode != 0 and r.http_code == 0, r
    r = curl(b.url + "bob-b", proxy=proxy_url(d, scheme, "bob"))
    assert r.returncode == 0 and r.http_code == 200, r
    assert r.json()["origin"] == "origin-B"
    r = curl(a.url + "bob-a", proxy=proxy_url(d, scheme, "bob"))
    assert r.returncode != 0 and r.http_code == 0, r

    assert origin_saw(a) == ["/alice-a"] and a.count == 1
    assert origin_saw(b) == ["/bob-b"] and b.count == 1

    allow_a = d.wait_audit(type="decision", verdict="allow", user="alice", port=a.port)[0]
    assert allow_a["proto"] == "socks5" and allow_a["rule"] == "alice-to-A", allow_a
    deny_b = d.wait_audit(type="decision", verdict="deny", user="alice", port=b.port)[0]
    assert deny_b["addr"] == B_HOST and deny_b["guard"] is None, deny_b
    d.wait_audit(type="decision", verdict="allow", user="bob", port=b.port, rule="bob-to-B")
    d.wait_audit(type="decision", verdict="deny", user="bob", port=a.port)
    assert_no_secret(d)


def test_curl_socks5_wrong_password_refused(two_users):
    d, a, _ = two_users
    r = curl(a.url + "wrong", proxy=proxy_url(d, "socks5h", "alice", WRONG))
    assert r.returncode != 0 and r.http_code == 0, r
    # an unknown user is refused the same way
    r = curl(a.url + "nobody", proxy="socks5h://mallory:%s@%s" % (PASSWORDS["alice"], d.addr))
    assert r.returncode != 0 and r.http_code == 0, r
    assert a.count == 0, "origin A was reached without a valid login"
    closes = d.wait_audit(type="close", end="auth_failed", n=2)
    assert not d.decisions(verdict="allow"), d.decisions()
    # each refusal is a decision that names who tried (never the password)
    tried = d.wait_audit(type="decision", verdict="deny", guard="auth", n=2)
    assert sorted(t["user"] for t in tried) == ["alice", "mallory"], tried
    assert all("login failed" in t["reason"] for t in tried), tried
    assert all(c["bytes_up"] == 0 and c["bytes_down"] == 0 for c in closes), closes
    # the right password still works afterwards (after the throttle's delay)
    r = curl(a.url + "right", proxy=proxy_url(d, "socks5h", "alice"))
    assert r.returncode == 0 and r.http_code == 200, r
    assert origin_saw(a) == ["/right"]
    assert_no_secret(d)


def test_raw_socks5_login_replies(two_users):
    # What a SOCKS5 client sees byte for byte (RFC 1928 / RFC 1929).
    d, a, _ = two_users
    with d.connect() as s:
        assert socks5_greet(s, (0x00, 0x02)) == 0x02, "username/password not chosen"
        user, pw = b"alice", PASSWORDS["alice"].encode()
        s.sendall(bytes([1, len(user)]) + user + bytes([len(pw)]) + pw)
        assert recv_exact(s, 2) == b"\x01\x00", "RFC 1929 success expected"
        s.sendall(socks5_request_bytes(A_HOST, a.port))
        rep, _, _ = socks5_read_reply(s)
        assert rep == 0, "SOCKS5 reply 0x%02x after a good login" % rep
        s.sendall(b"GET /raw HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, _, body, _ = read_http_response(s)
        assert status == 200 and json.loads(body)["path"] == "/raw"
    with d.connect() as s:
        assert socks5_greet(s, (0x02,)) == 0x02
        user, pw = b"alice", WRONG.encode()
        s.sendall(bytes([1, len(user)]) + user + bytes([len(pw)]) + pw)
        ver, status = recv_exact(s, 2)
        assert ver == 1 and status != 0, "RFC 1929 status %d for a wrong password" % status
        assert wait_closed(s), "connection left open after a failed login"
    assert a.count == 1


def test_socks5_no_auth_only_gets_0xff(two_users):
    d, a, _ = two_users
    with d.connect() as s:
        assert socks5_greet(s, (0x00,)) == 0xFF, "no-auth accepted although users exist"
        assert wait_closed(s)
    # curl without credentials: refused, origin untouched
    r = curl(a.url, proxy=d.url("socks5h"))
    assert r.returncode != 0 and r.http_code == 0, r
    assert a.count == 0
    assert not d.decisions(verdict="allow")


def test_socks4_refused_when_users_exist(two_users):
    # SOCKS4's user id is not a password: with users configured it is
    # refused rather than trusted.
    d, a, _ = two_users
    r = curl(a.url, proxy="socks4://alice@%s" % d.addr)
    assert r.returncode != 0 and r.http_code == 0, r
    r = curl(a.url, proxy="socks4a://alice@%s" % d.addr)
    assert r.returncode != 0 and r.http_code == 0, r
    assert a.count == 0
    assert not d.decisions(verdict="allow")


# ------------------------------------------------------------- HTTP proxy

@pytest.mark.parametrize("how", ["url", "proxy-user"])
def test_curl_http_proxy_credentials_per_user(how, two_users):
    d, a, b = two_users

    def get(origin, path, user):
        if how == "url":
            return curl(origin.url + path, proxy=proxy_url(d, "http", user))
        return curl(origin.url + path, "--proxy-user", cred(user), proxy=d.url("http"))

    r = get(a, "alice-a", "alice")
    assert r.http_code == 200 and r.json()["origin"] == "origin-A", r
    r = get(b, "alice-b", "alice")
    assert r.http_code == 403, r
    r = get(b, "bob-b", "bob")
    assert r.http_code == 200 and r.json()["origin"] == "origin-B", r
    r = get(a, "bob-a", "bob")
    assert r.http_code == 403, r
    assert origin_saw(a) == ["/alice-a"] and origin_saw(b) == ["/bob-b"]
    # the credential is for the proxy: it is not forwarded to the origin
    for req in a.requests + b.requests:
        names = [k.lower() for k, _ in req["headers"]]
        assert "proxy-authorization" not in names, req
    dec = d.wait_audit(type="decision", verdict="allow", user="alice", port=a.port)[0]
    assert dec["proto"] == "http" and dec["rule"] == "alice-to-A", dec
    d.wait_audit(type="decision", verdict="deny", user="alice", port=b.port)
    d.wait_audit(type="decision", verdict="deny", user="bob", port=a.port)
    assert_no_secret(d)


def test_curl_connect_tunnel_with_credentials(tailfence, origins, user_hashes, tmp_path, tls_cert):
    a = origins.https(A_HOST, label="tls-A")
    b = origins.https(B_HOST, label="tls-B")
    cfg = {"users": user_hashes, "lift_guards": ["loopback"],
           "rules": [{"action": "accept", "dst": ["%s:%d" % (A_HOST, a.port)], "users": ["alice"]},
                     {"action": "accept", "dst": ["%s:%d" % (B_HOST, b.port)], "users": ["bob"]}]}
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(cfg))
    d = tailfence("--config", path, allow=(), lift_guards=())
    r = curl(a.url + "tls", "--proxy-user", cred("alice"), proxy=d.url("http"), cacert=tls_cert[0])
    assert r.returncode == 0 and r.connect_code == 200 and r.http_code == 200, r
    assert r.json()["origin"] == "tls-A" and r.json()["tls"] is True
    r = curl(b.url + "tls", "--proxy-user", cred("alice"), proxy=d.url("http"), cacert=tls_cert[0])
    assert r.returncode != 0 and r.connect_code == 403, r
    r = curl(b.url + "tls", "--proxy-user", cred("alice", WRONG), proxy=d.url("http"),
             cacert=tls_cert[0])
    assert r.returncode != 0 and r.connect_code == 407, r
    assert b.count == 0
    dec = d.wait_audit(type="decision", verdict="allow", user="alice", proto="http-connect")[0]
    assert dec["port"] == a.port
    assert_no_secret(d)


def test_curl_http_wrong_password_407(two_users):
    d, a, _ = two_users
    r = curl(a.url + "wrong", proxy=proxy_url(d, "http", "alice", WRONG))
    assert r.http_code == 407, r
    r = curl(a.url + "unknown", "--proxy-user", "mallory:" + PASSWORDS["alice"], proxy=d.url("http"))
    assert r.http_code == 407, r
    assert a.count == 0
    d.wait_audit(type="close", end="auth_failed", n=2)
    assert not d.decisions(verdict="allow")
    tried = d.wait_audit(type="decision", verdict="deny", guard="auth", n=2)
    assert sorted(t["user"] for t in tried) == ["alice", "mallory"], tried
    assert all(t["port"] == a.port for t in tried), "HTTP knows the target before the login"
    assert_no_secret(d)


# --------------------------------------------------------------- 407 flow

def test_407_without_proxy_authorization(two_users):
    d, a, _ = two_users
    for raw in (("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (a.url + "noauth", a.hostport)).encode(),
                ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (a.hostport, a.hostport)).encode()):
        with d.connect() as s:
            s.sendall(raw)
            status, headers, _, _ = read_http_response(s)
            assert status == 407, "%d for %r" % (status, raw)
            assert headers.get("proxy-authenticate") == 'Basic realm="tailfence"', headers
    assert a.count == 0
    assert not d.decisions(verdict="allow")


def test_407_then_basic_on_the_next_request(two_users):
    # The two steps of a Basic login as a client library does them: a
    # request without credentials gets 407, the same request with
    # Proxy-Authorization goes through.
    d, a, _ = two_users
    target = a.url + "dance"
    status, headers, _ = http_exchange_raw(d, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, a.hostport))
    assert status == 407 and "basic" in headers.get("proxy-authenticate", "").lower()
    token = base64.b64encode(cred("alice").encode()).decode()
    status, _, body = http_exchange_raw(
        d, "GET %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n"
        % (target, a.hostport, token))
    assert status == 200 and json.loads(body)["path"] == "/dance"
    d.wait_audit(type="decision", verdict="allow", user="alice", port=a.port)
    assert_no_secret(d)


def http_exchange_raw(d, text):
    with d.connect() as s:
        s.sendall(text.encode())
        status, headers, body, _ = read_http_response(s)
        return status, headers, body


@pytest.mark.parametrize("tunnel", [False, True])
def test_curl_proxy_anyauth_does_the_407_dance(tunnel, two_users):
    d, a, _ = two_users
    extra = ["--proxy-anyauth", "--proxy-user", cred("alice")]
    if tunnel:
        extra.append("--proxytunnel")
    r = curl(a.url + "anyauth", *extra, proxy=d.url("http"))
    assert r.returncode == 0 and r.http_code == 200, r
    assert r.json()["path"] == "/anyauth"
    assert a.count == 1
    d.wait_audit(type="decision", verdict="allow", user="alice", port=a.port)
    assert_no_secret(d)


# ------------------------------------------------------------- proxychains

def proxychains_conf(tmp_path, kind, port, user, pw):
    path = tmp_path / ("proxychains-%s-%s-%s.conf" % (kind, user, pw))
    path.write_text("strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n"
                    "\n[ProxyList]\n%s 127.0.0.1 %d %s %s\n" % (kind, port, user, pw))
    return str(path)


def curl_via_proxychains(conf, url):
    p = subprocess.run(["proxychains4", "-q", "-f", conf, "curl", "-sS", "--noproxy", "*",
                        "--max-time", "20", "-w", "\n%{http_code}", url],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                       env=clean_env())
    body, _, code = p.stdout.rpartition("\n")
    return p.returncode, int(code or 0), body, p.stderr


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_proxychains_credentials_per_user(kind, two_users, tmp_path):
    d, a, b = two_users
    alice = proxychains_conf(tmp_path, kind, d.port, "alice", PASSWORDS["alice"])
    bob = proxychains_conf(tmp_path, kind, d.port, "bob", PASSWORDS["bob"])
    wrong = proxychains_conf(tmp_path, kind, d.port, "alice", WRONG)

    rc, code, body, err = curl_via_proxychains(alice, a.url + "pc-alice")
    assert rc == 0 and code == 200, (rc, code, err)
    assert json.loads(body)["origin"] == "origin-A"
    rc, code, _, err = curl_via_proxychains(alice, b.url + "pc-alice-b")
    assert rc != 0 and code == 0, (rc, code, err)
    rc, code, body, err = curl_via_proxychains(bob, b.url + "pc-bob")
    assert rc == 0 and code == 200, (rc, code, err)
    assert json.loads(body)["origin"] == "origin-B"
    rc, code, _, err = curl_via_proxychains(bob, a.url + "pc-bob-a")
    assert rc != 0 and code == 0, (rc, code, err)
    rc, code, _, err = curl_via_proxychains(wrong, a.url + "pc-wrong")
    assert rc != 0 and code == 0, (rc, code, err)

    assert origin_saw(a) == ["/pc-alice"] and origin_saw(b) == ["/pc-bob"]
    proto = "socks5" if kind == "socks5" else "http-connect"
    d.wait_audit(type="decision", verdict="allow", user="alice", proto=proto, port=a.port)
    d.wait_audit(type="decision", verdict="deny", user="alice", proto=proto, port=b.port)
    d.wait_audit(type="decision", verdict="allow", user="bob", proto=proto, port=b.port)
    d.wait_audit(type="close", end="auth_failed")
    assert_no_secret(d)


def test_passwords_with_colons_spaces_and_utf8(tailfence, origins, tailfence_bin, tmp_path):
    # Basic splits user:password at the first colon; SOCKS5 carries them
    # separately (up to 255 bytes each). Both must reach the same verdict.
    a = origins.http(A_HOST, label="origin-A")
    pw = "c:ol@ pw:\u00fc" + "x" * 200  # (curl URL-decodes %XX in --proxy-user)
    long_pw = "L" * 255
    hashes = {}
    for user, p in (("carol", pw), ("dave", long_pw)):
        h = subprocess.run([tailfence_bin, "passwd"], input=p + "\n", capture_output=True, text=True,
                           env=clean_env(), timeout=60)
        assert h.returncode == 0, h.stderr
        hashes[user] = h.stdout.strip()
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"users": hashes, "lift_guards": ["loopback"],
                                "rules": [{"action": "accept", "dst": ["%s:%d" % (A_HOST, a.port)]}]}))
    d = tailfence("--config", path, allow=(), lift_guards=())

    r = curl(a.url + "carol", "--proxy-user", "carol:" + pw, proxy=d.url("http"))
    assert r.http_code == 200, r
    r = curl(a.url + "carol-bad", "--proxy-user", "carol:" + pw[:-1], proxy=d.url("http"))
    assert r.http_code == 407, r
    for user, p, ok in (("carol", pw, True), ("dave", long_pw, True), ("dave", long_pw[:-1], False)):
        with d.connect() as s:
            assert socks5_greet(s, (0x02,)) == 0x02
            u, b = user.encode(), p.encode()
            s.sendall(bytes([1, len(u)]) + u + bytes([len(b)]) + b)
            ver, status = recv_exact(s, 2)
            assert (status == 0) == ok, "RFC 1929 status %d for %s" % (status, user)
    assert origin_saw(a) == ["/carol"]
    dec = d.wait_audit(type="decision", verdict="allow", user="carol")[0]
    assert dec["proto"] == "http"
    trail = open(d.audit_path, encoding="utf-8").read() + d.log()
    assert pw not in trail and long_pw not in trail and pw[:40] not in trail
