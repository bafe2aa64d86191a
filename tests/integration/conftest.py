"""
conftest: fixtures for the tailfence integration suite.

The suite drives real processes on loopback inside a private network namespace
(scripts/test runs pytest under `unshare --net`; only `lo` is up). Each test
gets fresh ports from helpers.free_port().

Which daemon: $TAILFENCE_BIN (scripts/test sets it to build/tailfence and then
to build-asan/tailfence), else <repo>/build/tailfence. With any build, a
daemon whose output holds an AddressSanitizer/LeakSanitizer/UBSan report, or
that does not exit 0 after SIGTERM, fails the test that started it.

Fixtures (function scope unless noted)

  tailfence(*args, upstream="direct", allow=("127.0.0.0/24",),
            lift_guards=("loopback",), audit=True, dns=True, env=None, wait=True)
      Starts the daemon: `tailfence --listen 127.0.0.1:<free> --upstream ...
      --allow ... --lift-guard ... --dns-server 127.0.0.1:<dead port>
      --audit-log <tmp>/audit-N.jsonl *args` and waits until it listens.
      Defaults are only added for flags that args do not already carry (pass
      "--listen", "--upstream", "--allow", "--lift-guard", "--dns-server" or
      "--audit-log" in args to take over; allow=() and lift_guards=() add
      none, dns=False leaves the system resolver, audit=False no audit file).
      The environment has no TAILFENCE_* or TAILSCALE_ADVERTISE_ROUTES
      variables unless env= sets them, but TAILFENCE_THREADS when
      $TAILFENCE_TEST_THREADS is set (env={"TAILFENCE_THREADS": None}
      leaves it out). Returns a Tailfence (see below). At teardown
      every daemon still running gets SIGTERM and must exit 0.
  tailfence_cli(*args, input=None, env=None) -> CompletedProcess
      Runs a subcommand to completion (`tailfence check ...`, `audit verify`).
  origins            factory for origins, all closed at teardown:
                     origins.echo(host, port=0), .sink(host, framed=False), .source(size, host),
                     .http(host, label=None), .https(host, label=None)
  echo_origin, http_origin, https_origin
                     one of each on 127.0.0.1
  tls_cert   (session) (cert_path, key_path): self-signed for localhost,
                     127.0.0.1, 127.0.1.1, ::1; the cert is also the CA file
  tailscaled (session) a real tailscaled (not logged in) with SOCKS5 and HTTP
                     proxy on one port: .port, .socks5_url, .http_url
  microsocks (session) microsocks on loopback: .port, .url
  postgres   (session) PostgreSQL on 127.0.0.1: .port, .dsn(host=..., port=...)
  tailnet    (session) a real tailnet (tailnet/ package): tailscaled A here, Headscale
                     with embedded DERP in namespace H, tailscaled B in namespace B as
                     subnet router for 192.0.2.0/24 and 2001:db8:99::/64 with a web
                     server, a DNS server and PostgreSQL behind it. API: see
                     tailnet/__init__.py. Skipped (reason shown) outside a private
                     network namespace or without the pinned binaries. After any test
                     that used it, A runs again and both routes are approved again.
  upstream_url(kind) returns the --upstream value for "direct",
                     "tailscaled-socks5", "tailscaled-http" or "microsocks"
                     (starting that upstream on first use)
  hosts_file(mapping) writes a hosts file ({"name.test": "127.0.0.1"}) for
                     --hosts-file and returns its path

Tailfence object
  .port, .host, .addr ("127.0.0.1:P"), .url(scheme) ("socks5h://127.0.0.1:P")
  .connect() -> socket to the daemon
  .audit() -> all records (dicts); .decisions(**match), .closes(**match)
  .wait_audit(type=..., n=1, timeout=10, **match) -> matching records
  .wait_close(conn_id) -> the close record of that connection
  .log() -> the daemon's stdout+stderr so far
  .stop(sig=SIGTERM, expect=0) -> exit status; asserts expect and no
        sanitizer report
  .wait_exit(expect=0) the same without sending a signal (after the test
        signalled d.proc.proc itself, or for a daemon expected to quit)
  .assert_serves(echo_origin) checks a SOCKS5 CONNECT still works
Audit records are matched on their JSON keys, e.g.
  d.wait_audit(type="decision", verdict="deny", addr="127.0.1.1")
(schema: docs/audit.md; type, conn, verdict, proto, host, port, addr, reason,
bytes_up, bytes_down, end, ...).

Markers: `slow` (big transfers; run in CI, deselect with -m "not slow").
Register new markers in pytest.ini (the suite runs with --strict-markers).
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile

import pytest

from tailnet import HarnessError as _HarnessError
from tailnet import Tailnet as _Tailnet
from tailnet import missing_requirements as _tailnet_missing
from helpers import (REPO, SANITIZER_EXIT_CODES, UPSTREAM_KINDS, EchoOrigin, HTTPOrigin, Proc,
                     SinkOrigin, SourceOrigin, TinyDNS, clean_env, connect, free_port,
                     read_audit, recv_exact, sanitizer_env, sanitizer_report, socks5_connect,
                     wait_listening, wait_until, read_http_response, _as_user)

TAILSCALED = "/opt/tfgo/bin/tailscaled"
TAILSCALE = "/opt/tfgo/bin/tailscale"

# Proxy variables from the caller's environment must not leak into clients.
for _k in list(os.environ):
    if _k.lower().endswith("_proxy"):
        del os.environ[_k]


# ----------------------------------------------------------------- the daemon

@pytest.fixture(scope="session")
def tailfence_bin():
    """Path of the tailfence under test: $TAILFENCE_BIN (scripts/test sets
    it to each build's binary), else <repo>/build/tailfence. Fails, saying
    so, when that is not an executable file."""
    path = os.environ.get("TAILFENCE_BIN") or str(REPO / "build" / "tailfence")
    if not os.access(path, os.X_OK):
        pytest.fail("tailfence binary %s does not exist or is not executable "
                    "(set TAILFENCE_BIN or build with meson into build/)" % path)
    return path


def _match(rec, kv):
    return all(rec.get(k) == v for k, v in kv.items())


class Tailfence:
    """A running tailfence daemon started by the `tailfence` fixture."""

    def __init__(self, bin_path, argv, ports, audit_path, log_path, env):
        self.argv = argv
        self.ports = ports
        self.port = ports[0]
        self.host = "127.0.0.1"
        self.addr = "%s:%d" % (self.host, self.port)
        self.audit_path = audit_path
        self.proc = Proc(argv, log_path, env=env)
        self.stopped = False  # stop() was called: the test checked the exit

    # -- addresses
    def url(self, scheme="socks5h"):
        return "%s://%s" % (scheme, self.addr)

    def connect(self, timeout=10.0):
        return connect(self.port, self.host, timeout)

    # -- state
    def alive(self):
        return self.proc.poll() is None

    def log(self):
        return self.proc.log()

    def wait_ready(self, timeout=15.0):
        for p in self.ports:
            try:
                wait_listening(p, timeout, self.proc.proc, "tailfence")
            except (RuntimeError, TimeoutError) as e:
                raise AssertionError("%s\ncommand: %s\noutput:\n%s"
                                     % (e, " ".join(self.argv), self.log()[-4000:]))

    # -- audit
    def audit(self):
        return read_audit(self.audit_path) if self.audit_path else []

    def decisions(self, **match):
        return [r for r in self.audit() if r.get("type") == "decision" and _match(r, match)]

    def closes(self, **match):
        return [r for r in self.audit() if r.get("type") == "close" and _match(r, match)]

    def wait_audit(self, n=1, timeout=10.0, **match):
        """Waits until at least n records match (the trail is flushed within
        flush_ms, 200 ms by default); returns them. Fails with the whole trail
        when they do not appear."""
        def enough():
            got = [r for r in self.audit() if _match(r, match)]
            return (got,) if len(got) >= n else None

        def trail():
            recs = self.audit()
            return "found %d; trail:\n%s" % (sum(1 for r in recs if _match(r, match)),
                                             "\n".join(map(str, recs[-30:])))
        return wait_until(enough, timeout, "%d audit record(s) matching %r" % (n, match),
                          interval=0.05, detail=trail)[0]

    def wait_close(self, conn_id, timeout=10.0):
        return self.wait_audit(type="close", conn=conn_id, timeout=timeout)[0]

    # -- checks
    def assert_serves(self, echo_origin, payload=b"still serving"):
        """A SOCKS5 CONNECT to echo_origin through the daemon works."""
        assert self.alive(), "tailfence died:\n" + self.log()[-4000:]
        with self.connect() as s:
            rep, _, _ = socks5_connect(s, echo_origin.host, echo_origin.port)
            assert rep == 0, "SOCKS5 reply 0x%02x for an allowed echo origin" % rep
            s.sendall(payload)
            assert recv_exact(s, len(payload)) == payload

    def stop(self, sig=signal.SIGTERM, expect=0, timeout=30.0):
        """Sends sig and waits. Asserts the exit status is expect (None: any)
        and that there is no sanitizer report. Returns the exit status."""
        rc = self.proc.stop(sig, timeout)
        self.stopped = True
        self.check(rc, expect)
        return rc

    def wait_exit(self, expect=0, timeout=30.0):
        """Waits (sending nothing) until the daemon exits, e.g. after the
        test signalled it itself; asserts like stop(). Returns the status."""
        try:
            self.proc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        alive = self.proc.poll() is None
        rc = self.proc.stop(signal.SIGKILL)
        self.stopped = True
        assert not alive, "tailfence did not exit within %.0fs\noutput:\n%s" % (timeout, self.log()[-4000:])
        self.check(rc, expect)
        return rc

    def check(self, rc, expect):
        out = self.log()
        report = sanitizer_report(out)
        assert report is None, "sanitizer report from tailfence:\n" + report
        assert rc not in SANITIZER_EXIT_CODES, "tailfence exited with sanitizer status %d:\n%s" % (
            rc, out[-4000:])
        if expect is not None:
            assert rc == expect, "tailfence exited with %s (expected %s)\ncommand: %s\noutput:\n%s" % (
                rc, expect, " ".join(self.argv), out[-4000:])
        self.audit()  # every line must parse


def _listen_ports(args):
    ports = []
    for i, a in enumerate(args):
        value = None
        if a == "--listen" and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith("--listen="):
            value = a.split("=", 1)[1]
        if value:
            ports.append(int(value.rsplit(":", 1)[1]))
    return ports


def _has_flag(args, flag):
    return any(a == flag or a.startswith(flag + "=") for a in args)


@pytest.fixture
def tailfence(tailfence_bin, tmp_path):
    """Factory: tailfence(*args, upstream="direct", allow=("127.0.0.0/24",),
    lift_guards=("loopback",), audit=True, env=None, wait=True) -> Tailfence.
    See the module docstring."""
    started = []

    def start(*args, upstream="direct", allow=("127.0.0.0/24",), lift_guards=("loopback",),
              audit=True, dns=True, env=None, wait=True):
        args = [str(a) for a in args]
        n = len(started)
        argv = [tailfence_bin]
        if not _has_flag(args, "--listen"):
            argv += ["--listen", "127.0.0.1:%d" % free_port()]
        if not _has_flag(args, "--upstream") and upstream is not None:
            argv += ["--upstream", upstream]
        if not _has_flag(args, "--tailscaled-socket") and "TAILSCALE_SOCKET" not in (env or {}):
            # no tailnet view unless a test asks for one: the static rules decide
            argv += ["--tailscaled-socket", "none"]
        if not _has_flag(args, "--allow"):
            for a in allow:
                argv += ["--allow", a]
        if not _has_flag(args, "--lift-guard"):
            for g in lift_guards:
                argv += ["--lift-guard", g]
        if dns and not _has_flag(args, "--dns-server"):
            # a resolver address where nothing answers: names outside the
            # hosts file fail fast and no query leaves loopback
            argv += ["--dns-server", "127.0.0.1:%d" % free_port()]
        audit_path = None
        if not _has_flag(args, "--audit-log") and audit:
            audit_path = str(tmp_path / ("audit-%d.jsonl" % n))
            argv += ["--audit-log", audit_path]
        elif _has_flag(args, "--audit-log"):
            for i, a in enumerate(args):
                if a == "--audit-log" and args[i + 1] != "-":
                    audit_path = args[i + 1]
                    break
        argv += args
        ports = _listen_ports(argv)
        daemon_env = sanitizer_env(clean_env())
        daemon_env.pop("TAILSCALE_ADVERTISE_ROUTES", None)
        for k in list(daemon_env):
            if k.startswith("TAILFENCE_"):
                del daemon_env[k]
        if os.environ.get("TAILFENCE_TEST_THREADS"):
            daemon_env["TAILFENCE_THREADS"] = os.environ["TAILFENCE_TEST_THREADS"]
        daemon_env.update(env or {})
        for k in [k for k, v in daemon_env.items() if v is None]:
            del daemon_env[k]  # env={"NAME": None}: not set at all
        d = Tailfence(tailfence_bin, argv, ports, audit_path,
                      tmp_path / ("tailfence-%d.log" % n), daemon_env)
        started.append(d)
        if wait:
            d.wait_ready()
        return d

    yield start

    problems = []
    for d in started:
        try:
            if d.stopped:
                continue  # stopped and checked by the test
            if d.alive():
                d.stop()
            else:
                problems.append("tailfence exited by itself with status %s\ncommand: %s\noutput:\n%s"
                                % (d.proc.returncode, " ".join(d.argv), d.log()[-4000:]))
        except AssertionError as e:
            problems.append(str(e))
        finally:
            print("---- tailfence output (%s) ----\n%s" % (" ".join(d.argv), d.log()[-8000:]))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def tailfence_cli(tailfence_bin):
    """Runs `tailfence ARGS...` to completion; returns the CompletedProcess
    (text). Fails the test on a sanitizer report. Without TAILSCALE_SOCKET in
    env there is no tailnet view (TAILSCALE_SOCKET=none): the static routes
    decide."""
    def run(*args, input=None, env=None, timeout=60):
        e = sanitizer_env(clean_env())
        e["TAILSCALE_SOCKET"] = "none"
        e.update(env or {})
        p = subprocess.run([tailfence_bin] + [str(a) for a in args], input=input,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           capture_output=True, text=True, env=e, timeout=timeout)
        report = sanitizer_report(p.stdout + p.stderr)
        assert report is None, "sanitizer report from tailfence %s:\n%s" % (" ".join(args), report)
        return p
    return run


# -------------------------------------------------------------------- origins

class Origins:
    """Factory for origin servers; every one is closed at teardown."""

    def __init__(self, tls_cert_getter):
        self._all = []
        self._tls = tls_cert_getter

    def _keep(self, o):
        self._all.append(o)
        return o

    def echo(self, host="127.0.0.1", port=0):
        return self._keep(EchoOrigin(host, port))

    def sink(self, host="127.0.0.1", framed=False):
        return self._keep(SinkOrigin(host, framed=framed))

    def source(self, size, host="127.0.0.1", seed=1):
        return self._keep(SourceOrigin(size, host, seed=seed))

    def http(self, host="127.0.0.1", label=None):
        return self._keep(HTTPOrigin(host, label=label))

    def https(self, host="127.0.0.1", label=None):
        return self._keep(HTTPOrigin(host, tls=self._tls(), label=label))

    def close(self):
        for o in self._all:
            o.close()


@pytest.fixture
def origins(request):
    o = Origins(lambda: request.getfixturevalue("tls_cert"))
    yield o
    o.close()


@pytest.fixture
def echo_origin(origins):
    return origins.echo()


@pytest.fixture
def http_origin(origins):
    return origins.http()


@pytest.fixture
def https_origin(origins):
    return origins.https()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,DNS:origin.test,IP:127.0.0.1,IP:127.0.0.2,"
         "IP:127.0.1.1,IP:127.0.1.2,IP:::1"],
        check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return str(cert), str(key)


@pytest.fixture
def dns():
    made = []

    def start(records, silent=()):
        s = TinyDNS(records, silent)
        made.append(s)
        return s
    yield start
    for s in made:
        s.close()


@pytest.fixture
def hosts_file(tmp_path):
    """hosts_file({"origin.test": "127.0.0.1"}) -> path of a hosts file."""
    def write(mapping):
        path = tmp_path / "hosts"
        path.write_text("".join("%s %s\n" % (ip, name) for name, ip in mapping.items()))
        return str(path)
    return write


# ------------------------------------------------------------------ upstreams

class _Upstream:
    def __init__(self, proc, port, socks5_url, http_url=None):
        self.proc = proc
        self.port = port
        self.socks5_url = socks5_url
        self.http_url = http_url
        self.url = socks5_url


def _check_socks5_reaches_loopback(port, what):
    """A SOCKS5 CONNECT through the proxy on port reaches an echo origin on
    127.0.0.1: the upstream dials loopback through the host stack."""
    origin = EchoOrigin("127.0.0.1")
    try:
        with connect(port) as s:
            rep, _, _ = socks5_connect(s, "127.0.0.1", origin.port)
            assert rep == 0, "%s answered SOCKS5 reply 0x%02x for 127.0.0.1:%d" % (what, rep, origin.port)
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
    finally:
        origin.close()


def _check_http_connect_reaches_loopback(port, what):
    origin = EchoOrigin("127.0.0.1")
    try:
        with connect(port) as s:
            target = "127.0.0.1:%d" % origin.port
            s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
            status, _, _, rest = read_http_response(s, body=False)
            assert status == 200, "%s answered CONNECT with %d" % (what, status)
            s.sendall(b"ping")
            got = rest + recv_exact(s, 4 - len(rest))
            assert got == b"ping"
    finally:
        origin.close()


@pytest.fixture(scope="session")
def tailscaled(tmp_path_factory):
    """A real tailscaled, not logged in, userspace networking, SOCKS5 and HTTP
    proxy on one loopback port. Not logged in it still dials loopback through
    the host stack; the fixture checks that before handing it out."""
    if not os.access(TAILSCALED, os.X_OK):
        pytest.fail("%s missing: run scripts/install-deps" % TAILSCALED)
    d = tmp_path_factory.mktemp("tailscaled")
    port = free_port()
    proc = Proc([TAILSCALED, "--tun=userspace-networking", "--state=mem:", "--no-logs-no-support",
                 "--socket=%s" % (d / "ts.sock"), "--statedir=%s" % d, "--port=0",
                 "--socks5-server=127.0.0.1:%d" % port,
                 "--outbound-http-proxy-listen=127.0.0.1:%d" % port],
                d / "tailscaled.log", env=clean_env(HOME=str(d)))
    try:
        wait_listening(port, 60, proc.proc, "tailscaled")
        _check_socks5_reaches_loopback(port, "tailscaled")
        _check_http_connect_reaches_loopback(port, "tailscaled")
    except BaseException:
        proc.stop(signal.SIGKILL)
        pytest.fail("tailscaled is not usable as an upstream:\n" + proc.log()[-4000:])
    up = _Upstream(proc, port, "socks5://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % port)
    yield up
    proc.stop()


@pytest.fixture(scope="session")
def microsocks(tmp_path_factory):
    d = tmp_path_factory.mktemp("microsocks")
    port = free_port()
    proc = Proc(["microsocks", "-i", "127.0.0.1", "-p", str(port)], d / "microsocks.log")
    wait_listening(port, 15, proc.proc, "microsocks")
    _check_socks5_reaches_loopback(port, "microsocks")
    yield _Upstream(proc, port, "socks5://127.0.0.1:%d" % port)
    proc.stop()


@pytest.fixture
def upstream_url(request):
    """upstream_url(kind) -> the --upstream value; kinds: UPSTREAM_KINDS."""
    def get(kind):
        if kind == "direct":
            return "direct"
        if kind == "tailscaled-socks5":
            return request.getfixturevalue("tailscaled").socks5_url
        if kind == "tailscaled-http":
            return request.getfixturevalue("tailscaled").http_url
        if kind == "microsocks":
            return request.getfixturevalue("microsocks").url
        raise ValueError("unknown upstream kind %r" % kind)
    return get


# ------------------------------------------------------------------- postgres

class _Postgres:
    def __init__(self, port, base):
        self.host = "127.0.0.1"
        self.port = port
        self.base = base

    def dsn(self, host=None, port=None, db="tfdb"):
        return "postgresql://postgres@%s:%d/%s?sslmode=disable&connect_timeout=10" % (
            host or self.host, port or self.port, db)


def _pg_bin(name):
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name))
    if not found:
        pytest.fail("PostgreSQL's %s not found under /usr/lib/postgresql: run scripts/install-deps" % name)
    return found[-1]


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster on 127.0.0.1:<free> (trust auth, user
    postgres, database tfdb with table items(id, name)). Runs as the postgres
    user, since PostgreSQL refuses to run as root."""
    pw = pwd.getpwnam("postgres")
    base = tempfile.mkdtemp(prefix="tf-pg-", dir="/tmp")
    os.chmod(base, 0o755)
    os.chown(base, pw.pw_uid, pw.pw_gid)
    data = os.path.join(base, "data")
    sockdir = os.path.join(base, "sock")
    os.mkdir(sockdir)
    os.chown(sockdir, pw.pw_uid, pw.pw_gid)
    init = subprocess.run([_pg_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                           "--no-sync", "-E", "UTF8", "--locale=C"],
                          preexec_fn=_as_user("postgres"), cwd=base, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if init.returncode != 0:
        pytest.fail("initdb failed:\n" + init.stdout + init.stderr)
    port = free_port()
    proc = Proc([_pg_bin("postgres"), "-D", data, "-h", "127.0.0.1", "-p", port, "-k", sockdir,
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                os.path.join(base, "postgres.log"), user="postgres", cwd=base)
    try:
        wait_listening(port, 60, proc.proc, "postgres")
        psql = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        env = clean_env(PGCONNECT_TIMEOUT="10")
        wait_until(lambda: subprocess.run(psql + ["-d", "postgres", "-c", "select 1"],
                                          capture_output=True, env=env,
                                          stdin=subprocess.DEVNULL).returncode == 0,
                   15, "psql to get an answer from PostgreSQL")
        subprocess.run(psql + ["-d", "postgres", "-c", "create database tfdb"], check=True,
                       capture_output=True, env=env, stdin=subprocess.DEVNULL)
        subprocess.run(psql + ["-d", "tfdb", "-c",
                               "create table items(id int primary key, name text);"
                               "insert into items values (1, 'alpha'), (2, 'beta'), (3, 'gamma');"],
                       check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    except BaseException as e:
        proc.stop(signal.SIGKILL)
        pytest.fail("PostgreSQL did not start (%s):\n%s" % (e, proc.log()[-4000:]))
    yield _Postgres(port, base)
    proc.stop(signal.SIGINT)
    shutil.rmtree(base, ignore_errors=True)


# -------------------------------------------------------------------- tailnet

_tailnets = []  # the session's Tailnet, once started


@pytest.fixture(scope="session")
def tailnet(request, tmp_path_factory):
    """A running tailnet.Tailnet (see tailnet/__init__.py), shared by the
    session. Skips, saying why, when it cannot run here."""
    why = _tailnet_missing()
    if why:
        pytest.skip("tailnet harness: " + "; ".join(why))
    tn = _Tailnet(tmp_path_factory.mktemp("tailnet"), free_port=free_port)
    try:
        tn.start()
    except _HarnessError as e:
        pytest.fail("the tailnet did not come up: %s" % e, pytrace=False)
    line = "tailnet harness up in %.1fs (cumulative: %s); logs in %s" % (
        tn.startup_seconds, ", ".join("%s %.1fs" % kv for kv in tn.timings.items()), tn.logdir)
    print(line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capman is not None:
        with capman.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    _tailnets.append(tn)
    yield tn
    _tailnets.remove(tn)
    tn.close()


@pytest.fixture(autouse=True)
def _tailnet_restore(request):
    """After a test that used the tailnet: tailscaled A running and both of
    B's routes approved again (nothing to do when the test left them so)."""
    yield
    if _tailnets and "tailnet" in request.fixturenames:
        try:
            _tailnets[0].restore()
        except _HarnessError as e:
            pytest.fail("could not restore the tailnet after the test: %s\n%s"
                        % (e, _tailnets[0].logs()), pytrace=False)
