"""Helpers for the Railway deployment tests (tests/integration/test_railway_*.py).

A runner for contrib/railway/entrypoint that collects its output, and the
paths those tests share. Everything else (the tailfence under test, free
ports, origins, waiting, audit records, sanitizer options) comes from
helpers.py and conftest.py like in every other test. The tailnet a container
joins is the harness's (tests/integration/tailnet/, the `tailnet` fixture).
"""
import os
import pathlib
import re
import signal
import subprocess
import threading

from helpers import REPO, wait_until

ENTRYPOINT = REPO / "contrib" / "railway" / "entrypoint"
APP_STANDIN = pathlib.Path(__file__).resolve().parent / "app_standin.py"
GOBIN = pathlib.Path(os.environ.get("TFGO_BIN", "/opt/tfgo/bin"))


def tool(name):
    """Path of a pinned Go tool (tailscaled, tailscale, headscale) or None."""
    p = GOBIN / name
    return str(p) if os.access(p, os.X_OK) else None


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
                # Let the pumps read what is left: they end at EOF, or
                # not at all while a child of the entrypoint still holds
                # the pipes, hence the bound.
                for t in self._threads:
                    t.join(2)
                for line in list(self.out):
                    if rx.search(line):
                        return line
                raise AssertionError(
                    "entrypoint exited %s before printing /%s/\n%s"
                    % (self.proc.returncode, pattern, self.transcript()))
            return None

        return wait_until(found, timeout, "/%s/ on stdout" % pattern, detail=self.transcript)

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
