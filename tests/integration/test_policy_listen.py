"""
Issue 3: authentication is required for a listener that is not on
loopback. Inside the test's private network namespace 0.0.0.0 and [::]
reach nothing but the namespace's own loopback, and these tests only bind:
no traffic goes to the wildcard listeners. Without users the daemon refuses
to start and says which listener and how to fix it; --force-public-listen
(or "force_public_listen": true) overrides that; with users it starts.
"""

import json
import subprocess

import pytest

from helpers import clean_env, free_port, wait_until


@pytest.fixture(scope="module")
def user_hash(tailfence_bin):
    p = subprocess.run([tailfence_bin, "passwd"], input="listen-pw-5c1e\n", capture_output=True,
                       text=True, env=clean_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def wildcard(kind):
    if kind == "v4":
        return "0.0.0.0:%d" % free_port()
    return "[::]:%d" % free_port("::1")


def refused(d, *names):
    """The daemon exits non-zero without listening; its message names each
    of names."""
    wait_until(lambda: not d.alive(), 15,
               "tailfence to refuse to start with a public listener and no users",
               interval=0.05, detail=d.log)
    rc = d.wait_exit(expect=None)
    assert rc is not None and rc > 0, rc
    out = d.log()
    for n in names:
        assert n in out, "the refusal does not name %r:\n%s" % (n, out)
    return out


@pytest.mark.parametrize("kind", ["v4", "v6"])
def test_public_listener_without_users_refuses_to_start(kind, tailfence):
    addr = wildcard(kind)
    d = tailfence("--listen", addr, wait=False)
    refused(d, addr, "--force-public-listen", "users")


def test_one_public_listener_among_loopback_ones_is_enough_to_refuse(tailfence):
    lo = "127.0.0.1:%d" % free_port()
    pub = wildcard("v4")
    d = tailfence("--listen", lo, "--listen", pub, wait=False)
    refused(d, pub)


def test_public_listener_from_the_environment_is_refused(tailfence_cli):
    addr = wildcard("v4")
    p = tailfence_cli("--upstream", "direct", "--audit-log", "-", env={"TAILFENCE_LISTEN": addr},
                      timeout=15)
    assert p.returncode > 0, p.stdout + p.stderr
    assert "TAILFENCE_LISTEN" in p.stderr and addr in p.stderr, p.stderr


def test_public_listener_in_the_config_file_is_refused(tailfence, tmp_path):
    addr = wildcard("v4")
    path = tmp_path / "public.json"
    path.write_text(json.dumps({"listen": ["127.0.0.1:%d" % free_port(), addr]}))
    d = tailfence("--config", path, "--listen", "127.0.0.1:%d" % free_port(), wait=False)
    # --listen replaces the file's list: the loopback flag wins, it starts
    d.wait_ready()
    d.stop()
    p = subprocess.run([d.argv[0], "config", "check", str(path)], capture_output=True, text=True,
                       env=clean_env(), stdin=subprocess.DEVNULL, timeout=30)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "listen[1]" in p.stderr and addr in p.stderr and "force_public_listen" in p.stderr, p.stderr


@pytest.mark.parametrize("kind", ["v4", "v6"])
def test_force_public_listen_starts(kind, tailfence):
    addr = wildcard(kind)
    d = tailfence("--listen", addr, "--force-public-listen")
    assert ("listening on %s" % addr) in d.log(), d.log()
    assert d.stop() == 0


def test_force_public_listen_in_the_file_starts(tailfence, tmp_path):
    addr = wildcard("v4")
    path = tmp_path / "forced.json"
    path.write_text(json.dumps({"force_public_listen": True}))
    d = tailfence("--config", path, "--listen", addr)
    assert ("listening on %s" % addr) in d.log(), d.log()
    assert d.stop() == 0


@pytest.mark.parametrize("kind", ["v4", "v6"])
def test_public_listener_with_users_starts(kind, tailfence, tmp_path, user_hash):
    addr = wildcard(kind)
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {"alice": user_hash}}))
    d = tailfence("--config", path, "--listen", addr)
    assert ("listening on %s" % addr) in d.log(), d.log()
    assert d.stop() == 0
