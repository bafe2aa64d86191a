"""contrib/railway/entrypoint end to end, as a node of a real tailnet.

The container joins the harness's tailnet (tests/integration/tailnet/) from
namespace A as a third node: Headscale with its embedded DERP in namespace
H, and subnet router B, whose 192.0.2.0/24 exists only in namespace B. The
entrypoint starts the real tailscaled and tailscale, the tailfence under
test and app_standin.py in LiteLLM's place. The container advertises a
range of its own (203.0.113.0/24, as a Railway service would advertise its
private network): tailscaled would dial that through the host, so tailfence
must not allow it; what it allows is what the tailnet carries for it, B's
subnet, reached over WireGuard. Nothing leaves the namespaces.
"""
import json
import os
import signal
import subprocess
import uuid

import pytest

from helpers import (PY, REPO, audit_records, free_port, sanitizer_env, sanitizer_report,
                     wait_until)
from railway.support import APP_STANDIN, Entrypoint, tool

HEALTHCHECK = REPO / "contrib" / "railway" / "healthcheck"

OWN_ROUTE = "203.0.113.0/24"      # this container's own range: advertised, never carried for it
OWN_HOST = "203.0.113.5"


@pytest.fixture
def app_health(origins):
    """What the health check probes as the app (LiteLLM's liveness URL)."""
    return origins.http(label="app-health")


@pytest.fixture
def nodes(tailnet):
    """Host names of containers a test started; removed from headscale
    afterwards so the tailnet keeps only A and B."""
    names = []
    yield names
    for name in names:
        node = tailnet.node(name)
        if node:
            tailnet.headscale("nodes", "delete", "--identifier", str(node["id"]), "--force",
                              json_output=False)


def b_url(tn, tag):
    """A URL on B's web server (behind B's subnet route) unique to one test."""
    return "http://%s/railway/%s/%s" % (tn.web_v4[0], tag, uuid.uuid4().hex[:10])


def container_env(tmp_path, tailfence_bin, tn, nodes, hostname, **extra):
    """The environment a Railway service would have, plus what a node of
    the harness's tailnet needs, and the test's program paths, ports and
    directories."""
    nodes.append(hostname)
    state = tmp_path / "state"
    env = tn.node_env(str(tmp_path))
    env.update({
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "TAILSCALE_AUTH_KEY": tn.preauth_key(),
        "TAILSCALE_LOGIN_SERVER": tn.control_url,
        "TAILSCALE_ADVERTISE_ROUTES": OWN_ROUTE,
        "TAILSCALE_HOSTNAME": hostname,
        "TAILSCALE_STATE_DIR": str(state),
        "TAILSCALE_SOCKET": str(state / "tailscaled.sock"),
        "TAILSCALED_LOG": str(tmp_path / "tailscaled.log"),
        "TAILSCALED_PROXY": "127.0.0.1:%d" % free_port(),
        "TAILSCALED_BIN": tool("tailscaled"),
        "TAILSCALE_BIN": tool("tailscale"),
        "TAILFENCE_BIN": tailfence_bin,
        "TAILFENCE_LISTEN": "127.0.0.1:%d" % free_port(),
        "TAILFENCE_ADMIN": "127.0.0.1:%d" % free_port(),
        "TAILFENCE_AUDIT_FILE": str(tmp_path / "audit" / "audit.jsonl"),
        "NO_PROXY": ".railway.internal",
        "APP_STOP_TIMEOUT": "10",
    })
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
    henv = {k: env[k] for k in ("PATH", "TAILSCALE_BIN", "TAILSCALE_SOCKET", "TAILFENCE_LISTEN",
                                "TAILFENCE_ADMIN")}
    henv["HEALTHCHECK_APP_URL"] = app_url
    r = subprocess.run([str(HEALTHCHECK)], env=henv, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout.strip()


def app_lines(ep, kind, url):
    prefix = "APP %s %s " % (kind, url)
    return [line[len(prefix):] for line in ep.out if line.startswith(prefix)]


def test_entrypoint_joins_tailnet_fences_traffic_and_stops_cleanly(tmp_path, tailfence_bin, tailnet,
                                                                  nodes, app_health):
    tn = tailnet
    allowed = b_url(tn, "allowed")
    denied = "http://%s/" % OWN_HOST
    env = container_env(tmp_path, tailfence_bin, tn, nodes, "railway-e2e",
                        APP_URLS="%s %s" % (allowed, denied))
    ep = Entrypoint(env, [PY, str(APP_STANDIN)])
    try:
        ep.wait_line(r"^APP READY$", timeout=120)

        # The entrypoint's three progress lines, in order, then `tailscale status`
        # listing this node.
        out = ep.out
        i1 = out.index("Starting Tailscale daemon...")
        i2 = out.index("Connecting to Tailscale with subnet routes: " + OWN_ROUTE)
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

        # B's subnet, carried for this node by B: through tailfence, the
        # container's tailscaled and WireGuard, over the HTTP proxy and over
        # SOCKS5. B's web server saw both.
        http_ok, socks_ok = app_lines(ep, "http", allowed), app_lines(ep, "socks", allowed)
        assert len(http_ok) == 1 and http_ok[0].startswith("200 "), ep.transcript()
        assert len(socks_ok) == 1 and socks_ok[0].startswith("0 "), ep.transcript()
        assert '"server": "tailnet-b-web"' in http_ok[0]
        path = allowed.split("/", 3)[3]
        assert len([h for h in tn.web_hits() if h["path"] == "/" + path]) == 2
        # The container's own advertised range is not carried for it:
        # refused, with the reason.
        http_denied, socks_denied = app_lines(ep, "http", denied), app_lines(ep, "socks", denied)
        assert http_denied == ["403 "], ep.transcript()
        assert len(socks_denied) == 1 and not socks_denied[0].startswith("0 "), ep.transcript()
        assert any("route %s (TAILSCALE_ADVERTISE_ROUTES or routes) is not carried by any peer"
                   % OWN_ROUTE in line for line in ep.err), ep.transcript()

        # Audit records (docs/audit.md) on stdout, Railway's log view, and
        # in TAILFENCE_AUDIT_FILE; the writer flushes within flush_ms.
        def decided(lines):
            recs = [r for r in audit_records(lines) if r.get("type") == "decision"]
            return ({(r.get("verdict"), r.get("path")) for r in recs if r.get("addr") == tn.web_v4[0]},
                    {(r.get("verdict"), r.get("path")) for r in recs if r.get("addr") == OWN_HOST})

        want = ({("allow", "tailnet")}, {("deny", "host")})
        audit_file = tmp_path / "audit" / "audit.jsonl"
        wait_until(lambda: decided(ep.out) == want, 10,
                   "allow and deny records on stdout:\n" + ep.transcript())
        wait_until(lambda: audit_file.exists() and
                   decided(audit_file.read_text().splitlines()) == want,
                   10, "allow and deny records in " + str(audit_file))

        # The node registered with its own route, pending approval.
        node = wait_until(lambda: tn.node("railway-e2e"), 30, "the node in headscale")
        available, approved, serving = tn.node_routes(node["id"])
        assert available == [OWN_ROUTE]
        assert approved == [] and serving == []
        # Approving it works and the route is then served by this node.
        tn.headscale("nodes", "approve-routes", "--identifier", str(node["id"]),
                     "--routes", OWN_ROUTE)
        assert tn.node_routes(node["id"])[1] == [OWN_ROUTE]
        wait_until(lambda: tn.node_routes(node["id"])[2] == [OWN_ROUTE], 30,
                   "the approved route to be served")

        # The health check: healthy while everything runs; unhealthy when
        # the app does not answer.
        rc, msg = healthcheck(env, app_health.url)
        assert (rc, msg.split(":")[0]) == (0, "healthy"), msg
        rc, msg = healthcheck(env, "http://127.0.0.1:%d/health/liveliness" % free_port())
        assert rc == 1 and "app does not answer" in msg, msg

        # SIGTERM: app first (it exits 0 on SIGTERM), then tailfence and
        # tailscaled; the entrypoint exits with the app's status and leaves
        # no process behind.
        kids = descendants(ep.proc.pid)
        exes = {os.path.basename(exe_of(p)) for p in kids}
        assert {"tailscaled", os.path.basename(tailfence_bin)} <= exes, exes
        ep.signal(signal.SIGTERM)
        assert ep.wait(60) == 0, ep.transcript()
        assert "APP TERM" in ep.out
        wait_until(lambda: not [p for p in kids if alive(p)], 10, "every process to be gone")
        rc, msg = healthcheck(env, "")
        assert rc == 1 and "tailscaled does not answer" in msg, msg
        assert sanitizer_report(ep.stderr()) is None, ep.stderr()
    finally:
        ep.kill_all()


@pytest.mark.parametrize("victim", ["tailfence", "tailscaled"])
def test_dead_daemon_stops_the_container(tmp_path, tailfence_bin, tailnet, nodes, victim):
    env = container_env(tmp_path, tailfence_bin, tailnet, nodes, "railway-" + victim, APP_URLS="")
    ep = Entrypoint(env, [PY, str(APP_STANDIN)])
    try:
        ep.wait_line(r"^APP READY$", timeout=120)
        name = os.path.basename(tailfence_bin) if victim == "tailfence" else "tailscaled"
        kids = descendants(ep.proc.pid)
        pids = [p for p in kids if os.path.basename(exe_of(p)) == name]
        assert len(pids) == 1, (name, kids)
        os.kill(pids[0], signal.SIGKILL)
        rc = ep.wait(60)
        assert rc != 0, ep.transcript()
        assert "%s exited unexpectedly" % victim in ep.stderr(), ep.transcript()
        assert "APP TERM" in ep.out, ep.transcript()
        wait_until(lambda: not [p for p in kids if alive(p)], 10, "every process to be gone")
    finally:
        ep.kill_all()


def test_app_exit_status_is_the_container_status(tmp_path, tailfence_bin, tailnet, nodes):
    allowed = b_url(tailnet, "exit")
    # Also: ALL_PROXY switched off for apps whose client cannot use
    # socks5h:// (httpx without socksio); the HTTP proxy still works.
    env = container_env(tmp_path, tailfence_bin, tailnet, nodes, "railway-exit",
                        APP_URLS=allowed, APP_EXIT_NOW="3",
                        TAILFENCE_EXPORT_ALL_PROXY="false")
    ep = Entrypoint(env, [PY, str(APP_STANDIN)])
    try:
        assert ep.wait(120) == 3, ep.transcript()
        appenv = json.loads(ep.wait_line(r"^APPENV ").split(" ", 1)[1])
        assert appenv["ALL_PROXY"] is None and appenv["all_proxy"] is None
        assert appenv["HTTPS_PROXY"] == "http://" + env["TAILFENCE_LISTEN"]
        lines = app_lines(ep, "http", allowed)
        assert len(lines) == 1 and lines[0].startswith("200 "), ep.transcript()
        assert "app exited with status 3" in ep.stdout()
    finally:
        ep.kill_all()
