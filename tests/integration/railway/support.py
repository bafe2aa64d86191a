"""Helpers for the Railway deployment tests (tests/integration/test_railway_*.py).

Origin HTTP servers on loopback addresses and a runner for
contrib/railway/entrypoint that collects its output. The tailnet a container
joins is the harness's (tests/integration/tailnet/, the `tailnet` fixture).
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

