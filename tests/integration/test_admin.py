"""The admin endpoint: /metrics (Prometheus text), /healthz and /readyz.

The exposition is checked by promtool and scraped by a real Prometheus
server (Debian's `prometheus` package) started on loopback in the test's
namespace; its HTTP API must return the counts of a known sequence of
allowed and denied connections. Readiness follows the upstream proxy (a
microsocks the test starts and kills) and tailscaled's backend state.
"""
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from helpers import PROMETHEUS, Prometheus, Proc, connect, free_port, http_get, recv_exact
from helpers import parse_metrics, socks5_connect, wait_listening, wait_until

PROMTOOL = "/usr/bin/promtool"


def admin_daemon(tailfence, *args, **kw):
    port = free_port()
    d = tailfence("--admin", "127.0.0.1:%d" % port, *args, **kw)
    d.admin_port = port
    wait_listening(port, 15, d.proc.proc, "tailfence admin")
    return d


def socks5_try(d, host, port, payload=b"ping"):
    """One SOCKS5 CONNECT through d; returns the reply code (0: allowed and
    echoed payload)."""
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, host, port)
        if rep == 0:
            s.sendall(payload)
            assert recv_exact(s, len(payload)) == payload
        return rep


def known_sequence(d, origins, allowed=3, denied=2):
    echo = origins.echo("127.0.0.1")
    for _ in range(allowed):
        assert socks5_try(d, "127.0.0.1", echo.port) == 0
    for _ in range(denied):
        assert socks5_try(d, "127.0.1.1", echo.port) == 0x02
    d.wait_audit(type="close", n=allowed + denied)


# ------------------------------------------------------------------ endpoint

def test_healthz_readyz_and_methods(tailfence):
    d = admin_daemon(tailfence)
    p = d.admin_port
    assert http_get(p, "/healthz")[:2] == (200, "ok\n")
    status, body, _ = http_get(p, "/readyz")
    assert (status, body) == (200, "ready\n")
    status, body, headers = http_get(p, "/metrics", method="HEAD")
    assert status == 200 and body == ""
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        status, body, headers = http_get(p, "/metrics", method=method)
        assert status == 405, method
        assert headers.get("Allow") == "GET, HEAD"
    assert http_get(p, "/nope")[0] == 404
    # not a proxy: absolute-form and CONNECT go nowhere
    with connect(p) as s:
        s.sendall(b"GET http://127.0.0.1:%d/healthz HTTP/1.1\r\nHost: x\r\n\r\n" % d.port)
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with connect(p) as s:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % d.port)
        head = s.recv(100)
        assert head.startswith(b"HTTP/1.1 405") or head.startswith(b"HTTP/1.1 400"), head
    d.wait_audit(type="start")
    assert not d.decisions() and not d.closes(), "the admin port must not carry proxy traffic"


def test_admin_must_be_loopback_without_users(tailfence):
    d = tailfence("--admin", "0.0.0.0:%d" % free_port(), wait=False)
    d.wait_exit(expect=2)
    assert "is not a loopback address and no users are configured" in d.log()


def test_promtool_accepts_the_exposition(tailfence, origins):
    assert os.access(PROMTOOL, os.X_OK), "promtool missing: scripts/install-deps installs prometheus"
    d = admin_daemon(tailfence, "--allow", "127.0.0.0/24", allow=())
    known_sequence(d, origins)
    status, text, _ = http_get(d.admin_port, "/metrics")
    assert status == 200
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, "promtool check metrics:\n%s%s\n---\n%s" % (p.stdout, p.stderr, text)
    m = parse_metrics(text)
    assert m['tailfence_connections_total{proto="socks5",verdict="allow"}'] == 3
    assert m['tailfence_connections_total{proto="socks5",verdict="deny"}'] == 2
    assert m['tailfence_decisions_total{by="rule",name="--allow 127.0.0.0/24",verdict="allow"}'] == 3
    assert m['tailfence_decisions_total{by="implicit",name="",verdict="deny"}'] == 2
    assert m['tailfence_connections_closed_total{proto="socks5",end="denied"}'] == 2
    assert m['tailfence_bytes_total{direction="up"}'] == 3 * 4
    assert m['tailfence_connection_duration_seconds_count'] == 5
    assert m['tailfence_dial_duration_seconds_count'] == 3
    assert m['tailfence_audit_records_written_total'] >= 1
    assert m['tailfence_tailnet_state{state="off"}'] == 1
    # every metric is documented
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "metrics.md")).read()
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    missing = [n for n in sorted(names) if "`%s`" % n not in doc]
    assert not missing, "docs/metrics.md does not list %s" % missing


def test_guard_and_login_failures_counted(tailfence, origins, tmp_path, tailfence_cli):
    p = tailfence_cli("passwd", input="secret\n")
    assert p.returncode == 0, p.stderr
    h = p.stdout.strip()
    cfg = tmp_path / "users.json"
    cfg.write_text(json.dumps({"users": {"app": h}}))
    d = admin_daemon(tailfence, "--config", cfg, lift_guards=())
    echo = origins.echo("127.0.0.1")
    with d.connect() as s:
        s.sendall(b"\x05\x01\x02")
        assert recv_exact(s, 2) == b"\x05\x02"
        s.sendall(b"\x01\x03app\x05wrong")
        assert recv_exact(s, 2) == b"\x01\x01"
    with d.connect() as s:
        s.sendall(b"\x05\x01\x02")
        recv_exact(s, 2)
        s.sendall(b"\x01\x03app\x06secret")
        assert recv_exact(s, 2) == b"\x01\x00"
        s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + echo.port.to_bytes(2, "big"))
        assert recv_exact(s, 10)[1] == 0x02
    d.wait_audit(type="close", n=2)
    m = parse_metrics(http_get(d.admin_port, "/metrics")[1])
    assert m["tailfence_login_failures_total"] == 1
    assert m['tailfence_decisions_total{by="guard",name="auth",verdict="deny"}'] == 1
    assert m['tailfence_decisions_total{by="guard",name="loopback",verdict="deny"}'] == 1


def test_counters_survive_a_reload(tailfence, origins, tmp_path):
    cfg = tmp_path / "rules.json"
    cfg.write_text(json.dumps({"rules": [{"name": "echo", "action": "accept",
                                          "dst": ["127.0.0.0/24:*"]}]}))
    d = admin_daemon(tailfence, "--config", cfg, allow=())
    known_sequence(d, origins, allowed=2, denied=1)
    before = parse_metrics(http_get(d.admin_port, "/metrics")[1])
    assert before['tailfence_decisions_total{by="rule",name="echo",verdict="allow"}'] == 2
    cfg.write_text(json.dumps({"rules": [{"name": "echo2", "action": "accept",
                                          "dst": ["127.0.0.0/24:*"]}]}))
    d.proc.proc.send_signal(signal.SIGHUP)
    d.wait_audit(type="reload")
    known_sequence(d, origins, allowed=1, denied=0)
    after = parse_metrics(http_get(d.admin_port, "/metrics")[1])
    assert after["tailfence_reloads_total{result=\"ok\"}"] == 1
    assert after['tailfence_decisions_total{by="rule",name="echo",verdict="allow"}'] == 2
    assert after['tailfence_decisions_total{by="rule",name="echo2",verdict="allow"}'] == 1
    assert after['tailfence_connections_total{proto="socks5",verdict="allow"}'] == 3
    assert after['tailfence_connections_accepted_total'] == 4
    assert after["tailfence_config_age_seconds"] <= before["tailfence_config_age_seconds"] + 60
    cfg.write_text("{ not json")
    d.proc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: parse_metrics(http_get(d.admin_port, "/metrics")[1])
               .get('tailfence_reloads_total{result="failed"}') == 1, 15, "a failed reload counted")


# -------------------------------------------------------------- Prometheus

def test_prometheus_scrapes_the_known_sequence(tailfence, origins, tmp_path):
    assert os.access(PROMETHEUS, os.X_OK), "prometheus missing: scripts/install-deps"
    d = admin_daemon(tailfence, "--allow", "127.0.0.0/24", allow=())
    prom = Prometheus(str(tmp_path), "127.0.0.1:%d" % d.admin_port)
    try:
        prom.wait_value('up{job="tailfence"}', 1)
        known_sequence(d, origins, allowed=3, denied=2)
        allow = prom.wait_value('tailfence_connections_total{proto="socks5",verdict="allow"}', 3)
        deny = prom.wait_value('tailfence_connections_total{proto="socks5",verdict="deny"}', 2)
        by_rule = prom.wait_value('sum by (by, name, verdict) (tailfence_decisions_total'
                                  '{verdict="allow"}) > 0', 3)
        prom.wait_value('tailfence_decisions_total{by="implicit",verdict="deny"}', 2)
        prom.wait_value('tailfence_ready', 1)
        prom.wait_value('tailfence_bytes_total{direction="down"}', 12)
        print("Prometheus API, allowed: " + json.dumps(allow))
        print("Prometheus API, denied: " + json.dumps(deny))
        print("Prometheus API, by rule: " + json.dumps(by_rule))
        assert by_rule["data"]["result"][0]["metric"]["name"] == "--allow 127.0.0.0/24"
    finally:
        prom.close()


# --------------------------------------------------------------- readiness

def test_readiness_follows_the_upstream(tailfence, tmp_path):
    port = free_port()
    argv = ["microsocks", "-i", "127.0.0.1", "-p", str(port)]
    ms = Proc(argv, tmp_path / "microsocks.log")
    wait_listening(port, 15, ms.proc, "microsocks")
    d = admin_daemon(tailfence, upstream="socks5://127.0.0.1:%d" % port)
    p = d.admin_port
    up = wait_until(lambda: http_get(p, "/readyz")[0] == 200 and http_get(p, "/readyz"), 30,
                    "ready with microsocks up")
    print("readyz with the upstream up: %d %s" % up[:2])
    ms.stop()
    down = wait_until(lambda: (lambda r: r[0] == 503 and r)(http_get(p, "/readyz")), 30,
                      "503 once the upstream is gone")
    print("readyz with the upstream gone: %d %s" % down[:2])
    assert down[1].startswith("upstream socks5://127.0.0.1:%d unreachable: " % port), down
    assert down[1].count("\n") == 1, down
    m = parse_metrics(http_get(p, "/metrics")[1])
    assert m["tailfence_ready"] == 0 and m["tailfence_upstream_up"] == 0
    assert http_get(p, "/healthz")[0] == 200
    ms = Proc(argv, tmp_path / "microsocks.log")
    try:
        wait_listening(port, 15, ms.proc, "microsocks")
        back = wait_until(lambda: (lambda r: r[0] == 200 and r)(http_get(p, "/readyz")), 30,
                          "200 once the upstream is back")
        print("readyz with the upstream back: %d %s" % back[:2])
    finally:
        ms.stop()


def test_readiness_needs_tailscaled_running(tailfence, tailscaled):
    """A tailscaled that is not logged in answers its LocalAPI but is not
    Running: not ready, and the metrics say which backend state it is in."""
    sock = [a.split("=", 1)[1] for a in tailscaled.proc.argv if a.startswith("--socket=")][0]
    d = admin_daemon(tailfence, "--tailscaled-socket", sock, upstream=tailscaled.socks5_url,
                     lift_guards=("loopback",))
    p = d.admin_port
    status, body, _ = wait_until(
        lambda: (lambda r: "tailscaled is not running" in r[1] and r)(http_get(p, "/readyz")),
        30, "not ready while tailscaled is logged out")
    assert status == 503 and body.count("\n") == 1, body
    m = parse_metrics(http_get(p, "/metrics")[1])
    assert m['tailfence_tailnet_state{state="stopped"}'] == 1
    assert m['tailfence_tailscaled_backend_state{state="NeedsLogin"}'] == 1
    assert m['tailfence_tailscaled_backend_state{state="Running"}'] == 0


def test_readiness_over_the_tailnet(tailfence, tailnet):
    """Over the real tailnet: ready while A runs, 503 while it is stopped,
    ready again after; the tailnet gauges follow."""
    tn = tailnet
    d = admin_daemon(tailfence, "--tailscaled-socket", tn.a_socket,
                     upstream="socks5://" + tn.a_proxy, allow=(), lift_guards=())
    p = d.admin_port
    wait_until(lambda: http_get(p, "/readyz")[0] == 200, 60, "ready with the tailnet up")
    m = parse_metrics(http_get(p, "/metrics")[1])
    assert m['tailfence_tailscaled_backend_state{state="Running"}'] == 1
    assert m["tailfence_tailnet_peers"] == 1
    assert m["tailfence_tailnet_carried_prefixes"] >= 4  # B's two addresses and two routes
    assert m["tailfence_tailnet_last_change_timestamp_seconds"] > 0
    tn.stop_a()
    status, body, _ = wait_until(
        lambda: (lambda r: r[0] == 503 and r)(http_get(p, "/readyz")), 60, "503 with A stopped")
    print("readyz with tailscaled A stopped: %d %s" % (status, body))
    tn.start_a()
    wait_until(lambda: http_get(p, "/readyz")[0] == 200, 90, "ready again with A back")
