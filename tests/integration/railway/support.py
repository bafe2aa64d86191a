"""Helpers for the Railway deployment tests (tests/integration/test_railway_*.py).

A Headscale control server on loopback with no DERP relay, origin HTTP
servers on loopback addresses, and a runner for contrib/railway/entrypoint
that collects its output. Everything listens on 127.0.0.0/8 only; the tests
that start tailscaled or headscale refuse to run outside a private network
namespace (scripts/test provides one).
"""
import http.server
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[3]
ENTRYPOINT = REPO / "contrib" / "railway" / "entrypoint"
APP_STANDIN = pathlib.Path(__file__).resolve().parent / "app_standin.py"
GOBIN = pathlib.Path(os.environ.get("TFGO_BIN", "/opt/tfgo/bin"))
PYTHON = "/usr/bin/python3"


def tool(name):
    """Path of a pinned Go tool (tailscaled, tailscale, headscale) or None."""
    p = GOBIN / name
    return str(p) if os.access(p, os.X_OK) else None


def tailfence_bin():
    """The tailfence under test: $TAILFENCE_BIN (set by scripts/test), else
    build/tailfence; None when neither exists."""
    for p in (os.environ.get("TAILFENCE_BIN"), REPO / "build" / "tailfence"):
        if p and os.access(p, os.X_OK):
            return str(p)
    return None


def sanitizer_env(env):
    """With the sanitizer build under test (TAILFENCE_SANITIZED=1, set by
    scripts/test), the same sanitizer options conftest gives the daemon, so
    that a report makes tailfence exit non-zero and the entrypoint notice."""
    if os.environ.get("TAILFENCE_SANITIZED") == "1":
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:abort_on_error=0:"
                       "exitcode=86:detect_stack_use_after_return=1:strict_string_checks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")
        env.setdefault("LSAN_OPTIONS", "exitcode=88")
    return env


def in_private_netns():
    """True when this process runs in a network namespace of its own (not
    PID 1's) whose only interface is lo."""
    try:
        if os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net"):
            return False
    except OSError:
        pass  # PID 1 not inspectable here: the interface list decides
    names = [line.split(":")[0].strip()
             for line in open("/proc/net/dev").read().splitlines()[2:]]
    return names == ["lo"]


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class Origin:
    """An HTTP server on one loopback address that answers GET with a fixed
    body and records every request it sees."""

    def __init__(self, host, port, body):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.url = "http://%s:%d/" % (host, port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


DERP_PLACEHOLDER = """\
# Headscale refuses to start with an empty DERP map. This region has one
# node on a loopback port where nothing listens: no relay exists, and a
# single node needs none.
regions:
  900:
    regionid: 900
    regioncode: none
    regionname: no relay
    nodes:
      - name: 900a
        regionid: 900
        hostname: 127.0.0.1
        ipv4: 127.0.0.1
        ipv6: none
        stunport: -1
        derpport: {port}
"""

HEADSCALE_CONFIG = """\
server_url: http://127.0.0.1:{port}
listen_addr: 127.0.0.1:{port}
metrics_listen_addr: 127.0.0.1:{metrics_port}
grpc_listen_addr: 127.0.0.1:{grpc_port}
grpc_allow_insecure: false
noise:
  private_key_path: {dir}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: false
  urls: []
  paths: [{dir}/derp.yaml]
  auto_update_enabled: false
  update_frequency: 24h
disable_check_updates: true
database:
  type: sqlite
  sqlite:
    path: {dir}/db.sqlite
    write_ahead_log: true
log:
  level: info
  format: text
policy:
  mode: database
dns:
  magic_dns: false
  override_local_dns: false
unix_socket: {dir}/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
"""


class Headscale:
    """headscale serve on 127.0.0.1 with a throw-away sqlite database."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.dir / "derp.yaml").write_text(
            DERP_PLACEHOLDER.format(port=free_port()))
        self.config = self.dir / "config.yaml"
        self.config.write_text(HEADSCALE_CONFIG.format(
            port=self.port, metrics_port=free_port(), grpc_port=free_port(),
            dir=self.dir))
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = open(self.dir / "headscale.log", "wb")
        self.proc = subprocess.Popen(
            [tool("headscale"), "-c", str(self.config), "serve"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 30, "headscale to answer on " + self.url)

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("headscale exited: " + self.log_text())
        try:
            self.cli("users", "list")
            return True
        except subprocess.CalledProcessError:
            return False

    def log_text(self):
        self.log.flush()
        return (self.dir / "headscale.log").read_text(errors="replace")

    def cli(self, *args):
        """Runs a headscale subcommand with -o json and returns the parsed
        output (None for commands that print nothing useful)."""
        r = subprocess.run(
            [tool("headscale"), "-c", str(self.config), *args, "-o", "json"],
            capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise subprocess.CalledProcessError(
                r.returncode, r.args, r.stdout, r.stderr)
        out = r.stdout.strip()
        try:
            return json.loads(out) if out else None
        except ValueError:
            return out

    def create_user(self, name):
        return self.cli("users", "create", name)["id"]

    def preauth_key(self, user_id):
        return self.cli("preauthkeys", "create", "--user", str(user_id),
                        "--reusable", "--expiration", "1h")["key"]

    def nodes(self):
        return self.cli("nodes", "list") or []

    def node(self, hostname):
        for n in self.nodes():
            if n.get("given_name") == hostname or n.get("name") == hostname:
                return n
        return None

    def routes(self, node_id):
        """(available, approved, serving) route lists of one node, as
        `headscale nodes list-routes` reports them."""
        for n in self.cli("nodes", "list-routes", "--identifier", str(node_id)) or []:
            if n.get("id") == node_id:
                return (sorted(n.get("available_routes") or []),
                        sorted(n.get("approved_routes") or []),
                        sorted(n.get("subnet_routes") or []))
        return ([], [], [])

    def approve_routes(self, node_id, routes):
        self.cli("nodes", "approve-routes", "--identifier", str(node_id),
                 "--routes", ",".join(routes))

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Entrypoint:
    """contrib/railway/entrypoint running in the background; stdout and
    stderr are collected line by line."""

    def __init__(self, env, args=(), cwd=None):
        self.proc = subprocess.Popen(
            [str(ENTRYPOINT), *args], env=env, cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        self.out, self.err = [], []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink.append(line.rstrip("\n"))

    def stdout(self):
        return "\n".join(self.out)

    def stderr(self):
        return "\n".join(self.err)

    def transcript(self):
        return ("--- entrypoint stdout ---\n" + self.stdout() +
                "\n--- entrypoint stderr ---\n" + self.stderr())

    def wait_line(self, pattern, timeout=60):
        rx = re.compile(pattern)

        def found():
            for line in list(self.out):
                if rx.search(line):
                    return line
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the pumps drain
                for line in list(self.out):
                    if rx.search(line):
                        return line
                raise AssertionError(
                    "entrypoint exited %s before printing /%s/\n%s"
                    % (self.proc.returncode, pattern, self.transcript()))
            return None

        try:
            return wait_until(found, timeout, "/%s/ on stdout" % pattern)
        except AssertionError as e:
            if "timed out" in str(e):
                raise AssertionError(str(e) + "\n" + self.transcript())
            raise

    def wait(self, timeout=60):
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def kill_all(self):
        """Last-resort cleanup: every process of the session the entrypoint
        leads (its children have process groups of their own)."""
        for pid in session_members(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def session_members(sid):
    """PIDs of live processes in session sid."""
    pids = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(d.name))
    return pids


def audit_records(lines):
    """JSON objects among the lines (tailfence writes its audit trail to
    stdout, one object per line)."""
    recs = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    return recs

