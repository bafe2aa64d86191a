"""contrib/railway/entrypoint end to end against a real control server.

Headscale (pinned, /opt/tfgo/bin) runs on 127.0.0.1 with a pre-auth key and
no DERP relay; the entrypoint starts the real tailscaled and tailscale, the
tailfence under test, and app_standin.py in LiteLLM's place. The advertised
route is 127.0.0.0/24, where the allowed origin listens (127.0.0.20); the
denied origin listens on 127.0.1.20. Nothing leaves loopback, and the module
refuses to run outside a private network namespace.

tailscaled gets TS_ASSUME_NETWORK_UP_FOR_TEST=1: with only lo up it would
otherwise consider itself offline and never talk to the control server.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from helpers import sanitizer_report
from railway.support import (APP_STANDIN, PYTHON, REPO, Entrypoint, Headscale,
                             Origin, audit_records, free_port, in_private_netns,
                             sanitizer_env, tailfence_bin, tool, wait_until)

HEALTHCHECK = REPO / "contrib" / "railway" / "healthcheck"

ROUTE = "127.0.0.0/24"
ALLOWED_HOST = "127.0.0.20"
DENIED_HOST = "127.0.1.20"

pytestmark = [
    pytest.mark.skipif(not in_private_netns(),
                       reason="needs a private network namespace with only lo (run scripts/test)"),
    pytest.mark.skipif(not all(tool(t) for t in ("headscale", "tailscaled", "tailscale")),
                       reason="pinned headscale/tailscaled/tailscale missing in /opt/tfgo/bin "
                              "(scripts/install-deps)"),
    pytest.mark.skipif(tailfence_bin() is None, reason="tailfence is not built"),
]


@pytest.fixture(scope="module")
def headscale(tmp_path_factory):
    hs = Headscale(tmp_path_factory.mktemp("headscale"))
    try:
        hs.user_id = hs.create_user("railway")
        yield hs
    finally:
        hs.close()


@pytest.fixture
def origins():
    port = free_port(ALLOWED_HOST)
    allowed = Origin(ALLOWED_HOST, port, "allowed-origin")
    denied = Origin(DENIED_HOST, port, "denied-origin")
    yield allowed, denied
    allowed.close()
    denied.close()


def container_env(tmp_path, headscale, hostname, **extra):
    """The environment a Railway service would have, plus the test's
    program paths, ports and directories."""
    state = tmp_path / "state"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "TS_ASSUME_NETWORK_UP_FOR_TEST": "1",
        "TAILSCALE_AUTH_KEY": headscale.preauth_key(headscale.user_id),
        "TAILSCALE_LOGIN_SERVER": headscale.url,
        "TAILSCALE_ADVERTISE_ROUTES": ROUTE,
        "TAILSCALE_HOSTNAME": hostname,
        "TAILSCALE_STATE_DIR": str(state),
        "TAILSCALE_SOCKET": str(state / "tailscaled.sock"),
        "TAILSCALED_LOG": str(tmp_path / "tailscaled.log"),
        "TAILSCALED_PROXY": "127.0.0.1:%d" % free_port(),
        "TAILSCALED_BIN": tool("tailscaled"),
        "TAILSCALE_BIN": tool("tailscale"),
        "TAILFENCE_BIN": tailfence_bin(),
        "TAILFENCE_LISTEN": "127.0.0.1:%d" % free_port(),
        # The allowed origin is on loopback, which tailfence guards by
        # default; lift that guard by name (the route still decides).
        "TAILFENCE_LIFT_GUARDS": "loopback",
        "TAILFENCE_AUDIT_FILE": str(tmp_path / "audit" / "audit.jsonl"),
        "NO_PROXY": ".railway.internal",
        "APP_STOP_TIMEOUT": "10",
    }
    env.update(extra)
    return sanitizer_env(env)


def descendants(pid):
    """PIDs of every live process below pid."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        if rest[0] == "Z":
            continue
        children.setdefault(int(rest[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def exe_of(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return ""


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def healthcheck(env, app_url):
    """Runs contrib/railway/healthcheck as Docker would (same variables);
    app_url stands for the app's health endpoint."""
    henv = {k: env[k] for k in ("PATH", "TAILSCALE_BIN", "TAILSCALE_SOCKET", "TAILFENCE_LISTEN")}
    henv["HEALTHCHECK_APP_URL"] = app_url
    r = subprocess.run([str(HEALTHCHECK)], env=henv, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout.strip()


def app_lines(ep, kind, url):
    prefix = "APP %s %s " % (kind, url)
    return [line[len(prefix):] for line in ep.out if line.startswith(prefix)]


def test_entrypoint_joins_tailnet_fences_traffic_and_stops_cleanly(tmp_path, headscale, origins):
    allowed, denied = origins
    env = container_env(tmp_path, headscale, "railway-e2e",
                        APP_URLS="%s %s" % (allowed.url, denied.url))
    ep = Entrypoint(env, [PYTHON, str(APP_STANDIN)])
    try:
        ep.wait_line(r"^APP READY$", timeout=120)

        # The guide's three log lines, in order, then `tailscale status`
        # listing this node.
        out = ep.out
        i1 = out.index("Starting Tailscale daemon...")
        i2 = out.index("Connecting to Tailscale with subnet routes: " + ROUTE)
        i3 = out.index("Tailscale connected successfully!")
        assert i1 < i2 < i3, ep.transcript()
        assert any("railway-e2e" in line for line in out[i3 + 1:]), ep.transcript()

        # The app saw the proxy variables and not the auth key.
        appenv = json.loads(ep.wait_line(r"^APPENV ").split(" ", 1)[1])
        proxy = "http://" + env["TAILFENCE_LISTEN"]
        assert appenv["HTTPS_PROXY"] == appenv["https_proxy"] == proxy
        assert appenv["HTTP_PROXY"] == appenv["http_proxy"] == proxy
        assert appenv["ALL_PROXY"] == "socks5h://" + env["TAILFENCE_LISTEN"]
        no_proxy = appenv["NO_PROXY"].split(",")
        assert {"localhost", "127.0.0.1", "::1", ".railway.internal"} <= set(no_proxy)
        assert appenv["AIOHTTP_TRUST_ENV"] == "True"
        assert appenv["TAILSCALE_AUTH_KEY"] is None

        # Allowed origin (inside the advertised route): through tailfence and
        # tailscaled, over the HTTP proxy and over SOCKS5.
        assert app_lines(ep, "http", allowed.url) == ["200 allowed-origin"], ep.transcript()
        assert app_lines(ep, "socks", allowed.url) == ["0 allowed-origin"], ep.transcript()
        assert len(allowed.hits) == 2
        # Denied origin (outside it): refused, and it never saw a request.
        http_denied = app_lines(ep, "http", denied.url)
        socks_denied = app_lines(ep, "socks", denied.url)
        assert len(http_denied) == 1 and not http_denied[0].startswith("200"), ep.transcript()
        assert len(socks_denied) == 1 and not socks_denied[0].startswith("0 "), ep.transcript()
        assert denied.hits == []

        # Audit records (docs/audit.md) on stdout, Railway's log view, and
        # in TAILFENCE_AUDIT_FILE; the writer flushes within flush_ms.
        def decided(lines):
            recs = [r for r in audit_records(lines) if r.get("type") == "decision"]
            return ({r.get("verdict") for r in recs if r.get("addr") == ALLOWED_HOST},
                    {r.get("verdict") for r in recs if r.get("addr") == DENIED_HOST})

        audit_file = tmp_path / "audit" / "audit.jsonl"
        wait_until(lambda: decided(ep.out) == ({"allow"}, {"deny"}), 10,
                   "allow and deny records on stdout:\n" + ep.transcript())
        wait_until(lambda: audit_file.exists() and
                   decided(audit_file.read_text().splitlines()) == ({"allow"}, {"deny"}),
                   10, "allow and deny records in " + str(audit_file))

        # The node registered with the advertised route, pending approval.
        node = wait_until(lambda: headscale.node("railway-e2e"), 30, "the node in headscale")
        available, approved, serving = headscale.routes(node["id"])
        assert available == [ROUTE]
        assert approved == [] and serving == []
        # Approving it works and the route is then served by this node.
        headscale.approve_routes(node["id"], [ROUTE])
        assert headscale.routes(node["id"])[1] == [ROUTE]
        wait_until(lambda: headscale.routes(node["id"])[2] == [ROUTE], 30,
                   "the approved route to be served")

        # The health check: healthy while everything runs; unhealthy when
        # the app does not answer.
        rc, msg = healthcheck(env, allowed.url)
        assert (rc, msg.split(":")[0]) == (0, "healthy"), msg
        rc, msg = healthcheck(env, "http://127.0.0.1:%d/health/liveliness" % free_port())
        assert rc == 1 and "app does not answer" in msg, msg

        # SIGTERM: app first (it exits 0 on SIGTERM), then tailfence and
        # tailscaled; the entrypoint exits with the app's status and leaves
        # no process behind.
        kids = descendants(ep.proc.pid)
        exes = {os.path.basename(exe_of(p)) for p in kids}
        assert {"tailscaled", os.path.basename(tailfence_bin())} <= exes, exes
        ep.signal(signal.SIGTERM)
        assert ep.wait(60) == 0, ep.transcript()
        assert "APP TERM" in ep.out
        time.sleep(0.2)
        assert [p for p in kids if alive(p)] == [], ep.transcript()
        rc, msg = healthcheck(env, "")
        assert rc == 1 and "tailscaled does not answer" in msg, msg
        assert sanitizer_report(ep.stderr()) is None, ep.stderr()
    finally:
        ep.kill_all()


@pytest.mark.parametrize("victim", ["tailfence", "tailscaled"])
def test_dead_daemon_stops_the_container(tmp_path, headscale, origins, victim):
    env = container_env(tmp_path, headscale, "railway-" + victim, APP_URLS="")
    ep = Entrypoint(env, [PYTHON, str(APP_STANDIN)])
    try:
        ep.wait_line(r"^APP READY$", timeout=120)
        name = os.path.basename(tailfence_bin()) if victim == "tailfence" else "tailscaled"
        kids = descendants(ep.proc.pid)
        pids = [p for p in kids if os.path.basename(exe_of(p)) == name]
        assert len(pids) == 1, (name, kids)
        os.kill(pids[0], signal.SIGKILL)
        rc = ep.wait(60)
        assert rc != 0, ep.transcript()
        assert "%s exited unexpectedly" % victim in ep.stderr(), ep.transcript()
        assert "APP TERM" in ep.out, ep.transcript()
        time.sleep(0.2)
        assert [p for p in kids if alive(p)] == [], ep.transcript()
    finally:
        ep.kill_all()


def test_app_exit_status_is_the_container_status(tmp_path, headscale, origins):
    allowed, _ = origins
    # Also: ALL_PROXY switched off for apps whose client cannot use
    # socks5h:// (httpx without socksio); the HTTP proxy still works.
    env = container_env(tmp_path, headscale, "railway-exit",
                        APP_URLS=allowed.url, APP_EXIT_NOW="3",
                        TAILFENCE_EXPORT_ALL_PROXY="false")
    ep = Entrypoint(env, [PYTHON, str(APP_STANDIN)])
    try:
        assert ep.wait(120) == 3, ep.transcript()
        appenv = json.loads(ep.wait_line(r"^APPENV ").split(" ", 1)[1])
        assert appenv["ALL_PROXY"] is None and appenv["all_proxy"] is None
        assert appenv["HTTPS_PROXY"] == "http://" + env["TAILFENCE_LISTEN"]
        assert app_lines(ep, "http", allowed.url) == ["200 allowed-origin"], ep.transcript()
        assert "app exited with status 3" in ep.stdout()
    finally:
        ep.kill_all()
