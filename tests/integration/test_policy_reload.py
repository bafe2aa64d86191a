"""
Issue 3: SIGHUP reloads the config file. What an operator notices: new
connections get the new policy at once, a relay that was already open keeps
working under the policy it was admitted by, and an invalid file is rejected
with a log line naming the error while the running policy stays in force.
Each reload, accepted or rejected, leaves a `reload` record in the audit
trail.
"""

import json
import signal
import subprocess

import pytest

from helpers import clean_env, recv_exact, socks5_connect, socks5_greet

A_HOST = "127.0.0.1"
B_HOST = "127.0.0.2"


def write_config(path, rules, **extra):
    cfg = {"lift_guards": ["loopback"], "rules": rules}
    cfg.update(extra)
    path.write_text(json.dumps(cfg, indent=2))


def accept(name, host, port, **kw):
    r = {"name": name, "action": "accept", "dst": ["%s:%d" % (host, port)]}
    r.update(kw)
    return r


def reload(d, n):
    """Sends SIGHUP and waits for the n-th reload record; returns it."""
    d.proc.proc.send_signal(signal.SIGHUP)
    return d.wait_audit(type="reload", n=n)[n - 1]


def socks5_rep(d, host, port):
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, host, port)
        return rep


def echo_through(d, host, port, payload):
    s = d.connect()
    rep, _, _ = socks5_connect(s, host, port)
    assert rep == 0, "SOCKS5 reply 0x%02x for %s:%d" % (rep, host, port)
    s.sendall(payload)
    assert recv_exact(s, len(payload)) == payload
    return s


@pytest.fixture
def policy_file(tmp_path):
    return tmp_path / "policy.json"


def test_reload_new_policy_for_new_connections_open_relay_continues(tailfence, origins, policy_file):
    a = origins.echo(A_HOST)
    b = origins.echo(B_HOST)
    write_config(policy_file, [accept("v1-A", A_HOST, a.port)])
    d = tailfence("--config", policy_file, allow=(), lift_guards=())

    assert socks5_rep(d, B_HOST, b.port) == 0x02
    old = echo_through(d, A_HOST, a.port, b"before reload")
    try:
        write_config(policy_file, [accept("v2-B", B_HOST, b.port)])
        rec = reload(d, 1)
        assert rec["detail"] == str(policy_file), rec

        # new connections: A is no longer allowed, B now is
        assert socks5_rep(d, A_HOST, a.port) == 0x02
        new = echo_through(d, B_HOST, b.port, b"after reload")
        new.close()
        # the relay admitted under v1 still carries bytes both ways
        old.sendall(b"still open")
        assert recv_exact(old, 10) == b"still open"
    finally:
        old.close()

    assert a.count == 1, "A saw %d connections; only the relay opened before the reload" % a.count
    assert b.count == 1
    decs = d.wait_audit(type="decision", port=a.port, n=2)
    assert [x["verdict"] for x in decs] == ["allow", "deny"], decs
    assert decs[0]["rule"] == "v1-A"
    d.wait_audit(type="decision", verdict="allow", port=b.port, rule="v2-B")
    assert "reloaded" in d.log(), d.log()


@pytest.mark.parametrize("broken, names", [
    # prefix with host bits: the key path, the value and the fix
    ('{"lift_guards": ["loopback"], "rules": [{"action": "accept", "dst": ["127.0.0.1/24:*"]}]}',
     ["rules[0].dst[0]", "127.0.0.1/24", "127.0.0.0/24"]),
    # not JSON at all (truncated while being edited)
    ('{"lift_guards": ["loopback"], "rules": [{"action": "accept", ', ["line"]),
    # unknown key
    ('{"lift_guards": ["loopback"], "rulez": []}', ["rulez"]),
    # an action that does not exist
    ('{"lift_guards": ["loopback"], "rules": [{"action": "allow", "dst": ["127.0.0.2:*"]}]}',
     ["rules[0].action", "allow"]),
])
def test_invalid_file_is_rejected_old_policy_stays(broken, names, tailfence, origins, policy_file):
    a = origins.echo(A_HOST)
    b = origins.echo(B_HOST)
    write_config(policy_file, [accept("v1-A", A_HOST, a.port)])
    d = tailfence("--config", policy_file, allow=(), lift_guards=())
    echo_through(d, A_HOST, a.port, b"v1").close()

    policy_file.write_text(broken)
    rec = reload(d, 1)
    assert d.alive(), "tailfence exited on an invalid reload:\n" + d.log()
    for n in names:
        assert n in rec["detail"], "reload record %r does not name %r" % (rec, n)
    log = d.log()
    assert "reload rejected" in log, log
    for n in names:
        assert n in log, "stderr does not name %r:\n%s" % (n, log)

    # the old policy is still in force: A allowed, B denied
    echo_through(d, A_HOST, a.port, b"still v1").close()
    assert socks5_rep(d, B_HOST, b.port) == 0x02
    assert b.count == 0
    assert a.count == 2
    decs = d.wait_audit(type="decision", port=a.port, verdict="allow", n=2)
    assert [x["rule"] for x in decs] == ["v1-A", "v1-A"], decs

    # fixing the file and reloading again works
    write_config(policy_file, [accept("v3-B", B_HOST, b.port)])
    rec = reload(d, 2)
    assert rec["detail"] == str(policy_file), rec
    echo_through(d, B_HOST, b.port, b"v3").close()
    assert socks5_rep(d, A_HOST, a.port) == 0x02
    assert a.count == 2


def test_reload_with_a_deleted_file_keeps_policy(tailfence, origins, policy_file):
    a = origins.echo(A_HOST)
    write_config(policy_file, [accept("v1-A", A_HOST, a.port)])
    d = tailfence("--config", policy_file, allow=(), lift_guards=())
    policy_file.unlink()
    rec = reload(d, 1)
    assert str(policy_file) in rec["detail"], rec
    assert d.alive()
    echo_through(d, A_HOST, a.port, b"kept").close()
    assert d.wait_audit(type="decision", port=a.port)[0]["rule"] == "v1-A"
    assert "reload rejected" in d.log() and "cannot open" in d.log(), d.log()


def test_reload_adding_users_requires_login_for_new_connections(tailfence, tailfence_bin, origins,
                                                                policy_file):
    a = origins.echo(A_HOST)
    write_config(policy_file, [accept("open", A_HOST, a.port)])
    d = tailfence("--config", policy_file, allow=(), lift_guards=())
    old = echo_through(d, A_HOST, a.port, b"no login yet")
    try:
        h = subprocess.run([tailfence_bin, "passwd"], input="reload-pw-93c1\n", capture_output=True,
                           text=True, env=clean_env(), timeout=60)
        assert h.returncode == 0, h.stderr
        write_config(policy_file, [accept("open", A_HOST, a.port)], users={"carol": h.stdout.strip()})
        rec = reload(d, 1)
        assert rec["detail"] == str(policy_file), rec
        with d.connect() as s:
            assert socks5_greet(s, (0x00,)) == 0xFF, "no-auth accepted after users were added"
        old.sendall(b"open relay")
        assert recv_exact(old, 10) == b"open relay"
    finally:
        old.close()
    assert a.count == 1

