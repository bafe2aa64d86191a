"""harness: a real three-node tailnet on this machine, with no network link.

See the package docstring (tailnet/__init__.py) for the picture and the API.
This module owns: network namespaces (holder processes), processes started
inside them, the UNIX-socket bridge into Headscale's namespace, Headscale,
the two tailscaleds, the servers behind the subnet router, and teardown.
No pytest here: the same class drives tests, demo scripts and containers.
"""
import base64
import ctypes
import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from . import dnsserver

GOBIN = os.environ.get("TFGO_BIN", "/opt/tfgo/bin")
TAILSCALED = os.path.join(GOBIN, "tailscaled")
TAILSCALE = os.path.join(GOBIN, "tailscale")
HEADSCALE = os.path.join(GOBIN, "headscale")
PYTHON = "/usr/bin/python3"
SOCAT = "/usr/bin/socat"
HERE = os.path.dirname(os.path.abspath(__file__))

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class HarnessError(RuntimeError):
    """The tailnet could not be brought up (or torn down); the message says
    which step and carries the relevant log tail."""


class ProcessDied(HarnessError):
    """A process the harness needs exited; waiting any longer is pointless."""


# ------------------------------------------------------------------ checks

def missing_requirements():
    """Why the harness cannot run here, as a list of sentences (empty: it can).
    Checks root, a private network namespace with only lo, the pinned Go
    binaries, socat, PostgreSQL and psql."""
    why = []
    if os.geteuid() != 0:
        why.append("needs root (network namespaces, PostgreSQL as the postgres user)")
    if not in_private_netns():
        why.append("needs to run in a private network namespace whose only interface is lo "
                   "(e.g. unshare --net --mount, as scripts/test does)")
    for p in (TAILSCALED, TAILSCALE, HEADSCALE):
        if not os.access(p, os.X_OK):
            why.append("%s is missing (scripts/install-deps builds it)" % p)
    if not os.access(SOCAT, os.X_OK):
        why.append("%s is missing (apt-get install socat; scripts/install-deps)" % SOCAT)
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres") or not shutil.which("psql"):
        why.append("PostgreSQL server or psql is missing (scripts/install-deps)")
    return why


def in_private_netns():
    """True when this process runs in a network namespace other than PID 1's
    whose only interface is lo."""
    try:
        if os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net"):
            return False
    except OSError:
        pass  # PID 1 not inspectable here: the interface list decides
    with open("/proc/net/dev", encoding="ascii") as f:
        names = [line.split(":")[0].strip() for line in f.read().splitlines()[2:]]
    return names == ["lo"]


def pick_port(host="127.0.0.1"):
    """A TCP port nobody listens on in this network namespace."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def clean_env(**extra):
    """os.environ without *_proxy variables (tailscaled would send its control
    traffic to them) and without TS_* knobs from the caller, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith("TS_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_for(pred, timeout, what, interval=0.1):
    """Polls pred until it returns something true (returned) or timeout
    seconds pass (HarnessError naming what, with pred's last exception)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except ProcessDied:
            raise
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.0fs waiting for %s%s"
                               % (timeout, what, "" if last is None else " (last error: %r)" % last))
        time.sleep(interval)


def _listening(pid, port, udp=False):
    """True when something in pid's network namespace listens on port (TCP)
    or has it bound (UDP): /proc/PID/net/* shows that namespace's sockets."""
    kinds = ("udp", "udp6") if udp else ("tcp", "tcp6")
    for kind in kinds:
        try:
            with open("/proc/%d/net/%s" % (pid, kind), encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and (udp or fields[3] == "0A"):
                        return True
        except OSError:
            pass
    return False


def _netns_inode(pid):
    try:
        link = os.readlink("/proc/%d/ns/net" % pid)
    except OSError:
        return None
    return int(link[link.index("[") + 1:-1])


def _pids_in_netns(inode):
    """Live (non-zombie) processes whose network namespace is inode."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if _netns_inode(pid) != inode:
            continue
        try:
            with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        out.append(pid)
    return out


def _netns_holders(inode):
    """Processes holding the namespace by an open file descriptor."""
    target = "net:[%d]" % inode
    out = []
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == target:
                out.append(int(fd.split("/")[2]))
        except OSError:
            pass
    return out


# --------------------------------------------------------------- processes

def _preexec(netns_fd=None, new_netns=False, user=None):
    """The child side of every process the harness starts: its own process
    group (teardown kills forks too), optionally a new or another network
    namespace, optionally another user, and SIGKILL when the harness dies."""
    parent = os.getpid()
    ids = None
    if user:
        pw = pwd.getpwnam(user)
        ids = (pw.pw_uid, pw.pw_gid)

    def fn():
        os.setpgid(0, 0)
        if new_netns and _libc.unshare(_CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        if netns_fd is not None and _libc.setns(netns_fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET)")
        if ids:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
        # after setuid, which clears it
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)  # the harness died before prctl took effect
    return fn


class Proc:
    """A child process (own process group, dies with the harness) whose
    stdout+stderr go to log_path."""

    def __init__(self, argv, log_path, netns=None, env=None, user=None, cwd=None,
                 new_netns=False):
        self.argv = [str(a) for a in argv]
        self.log_path = str(log_path)
        self.netns = netns
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env if env is not None else clean_env(), cwd=cwd,
            preexec_fn=_preexec(netns.fd if netns else None, new_netns, user))
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self, tail=None):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return data if tail is None else data[-tail:]

    def check_alive(self, what):
        if not self.alive():
            raise ProcessDied("%s exited with status %s\ncommand: %s\nlog tail:\n%s"
                               % (what, self.proc.returncode, " ".join(self.argv), self.log(4000)))

    def stop(self, sig=signal.SIGTERM, timeout=15.0, group=False):
        """Sends sig (to the whole process group with group=True), waits up to
        timeout, then SIGKILLs the process group. Returns the exit status."""
        if self.proc.poll() is None:
            try:
                if group:
                    os.killpg(self.pid, sig)
                else:
                    self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftovers: forks, backends
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


class NetNS:
    """A network namespace of the harness's own: a holder process
    (`sleep infinity`, started in a fresh namespace by unshare(2) before exec)
    keeps it alive, and an open descriptor on /proc/HOLDER/ns/net lets
    children join it with setns(2). Only lo, brought up here."""

    def __init__(self, name, logdir):
        self.name = name
        self.holder = Proc(["/bin/sleep", "infinity"], os.path.join(logdir, "netns-%s.log" % name),
                           new_netns=True)
        self.path = "/proc/%d/ns/net" % self.holder.pid
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self.inode = os.fstat(self.fd).st_ino
        if self.inode == _netns_inode(os.getpid()):
            raise HarnessError("namespace %s is the caller's own" % name)
        self.run(["ip", "link", "set", "lo", "up"], check=True)

    def run(self, argv, **kw):
        """subprocess.run inside the namespace (text output captured unless
        told otherwise; 60 s timeout unless told otherwise)."""
        kw.setdefault("capture_output", "stdout" not in kw and "stderr" not in kw)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        kw.setdefault("env", clean_env())
        if "input" not in kw:
            kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([str(a) for a in argv], preexec_fn=_preexec(self.fd), **kw)

    def pids(self):
        return _pids_in_netns(self.inode)

    def listening(self, port, udp=False):
        return _listening(self.holder.pid, port, udp)

    def close(self):
        """Kills every process in the namespace, the holder last, and drops
        the descriptor: nothing keeps the namespace alive afterwards."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in self.pids() if p != self.holder.pid]
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            if pids:
                try:
                    wait_for(lambda: not [p for p in self.pids() if p != self.holder.pid], 5,
                             "processes in namespace %s to exit" % self.name)
                except HarnessError:
                    continue
        self.holder.stop(signal.SIGKILL)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remains(self):
        """Processes still in the namespace or holding it open (empty once
        the kernel can free it)."""
        return sorted(set(_pids_in_netns(self.inode)) | set(_netns_holders(self.inode)))


# ----------------------------------------------------------------- LocalAPI

class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("local-tailscaled.sock", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def localapi(sock_path, path, method="GET", body=None, timeout=30.0):
    """One request to a tailscaled LocalAPI on its UNIX socket (Host:
    local-tailscaled.sock). path is relative to /localapi/v0/ ("status",
    "dns-query?name=..."). Returns the parsed JSON (or text when the answer
    is not JSON); HarnessError on a non-2xx status."""
    conn = _UnixHTTPConnection(sock_path, timeout)
    try:
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        conn.request(method, "/localapi/v0/" + path.lstrip("/"), body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        raise HarnessError("LocalAPI %s %s: %d %s" % (method, path, resp.status,
                                                      raw.decode("utf-8", "replace").strip()))
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def write_proxychains_conf(path, proxy, kind="socks5"):
    """Writes a proxychains4 configuration that sends every TCP connection
    through one proxy ("127.0.0.1:PORT"), quietly and without the defaults'
    localnet exceptions. Returns path."""
    host, _, port = proxy.rpartition(":")
    with open(path, "w", encoding="ascii") as f:
        f.write("strict_chain\nquiet_mode\nproxy_dns\n"
                "tcp_read_time_out 15000\ntcp_connect_time_out 10000\n"
                "[ProxyList]\n%s %s %s\n" % (kind, host, port))
    return str(path)


# ----------------------------------------------------------------- Tailnet

HEADSCALE_CONFIG = """\
# Written by tests/integration/tailnet/harness.py; runs in namespace H.
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
    enabled: true
    region_id: 999
    region_code: harness
    region_name: Harness embedded DERP
    verify_clients: true
    stun_listen_addr: 127.0.0.1:{stun_port}
    private_key_path: {dir}/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: 127.0.0.1
    ipv6: none
  urls: []
  paths: []
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
  magic_dns: true
  base_domain: {base_domain}
  override_local_dns: false
  nameservers:
    global: []
    split:
      {split_domain}:
        - {split_resolver}
  search_domains: []
  extra_records: []
unix_socket: {socket}
unix_socket_permission: "0770"
logtail:
  enabled: false
"""


class Postgres:
    """Where B's PostgreSQL answers: host (IPv4), host_v6, port, user,
    password, dbname, socket_dir (its UNIX socket directory, usable from any
    namespace; trust auth for the postgres superuser)."""

    def __init__(self, host, host_v6, port, user, password, dbname, socket_dir):
        self.host, self.host_v6, self.port = host, host_v6, port
        self.user, self.password, self.dbname = user, password, dbname
        self.socket_dir = socket_dir

    def dsn(self, host=None, port=None, dbname=None, user=None, password=None, **params):
        """A libpq URI: postgresql://user:password@host:port/dbname?sslmode=disable&...
        (an IPv6 host is bracketed)."""
        host = host or self.host
        if ":" in host:
            host = "[%s]" % host
        q = {"sslmode": "disable", "gssencmode": "disable", "connect_timeout": "10"}
        q.update({k: str(v) for k, v in params.items()})
        return "postgresql://%s:%s@%s:%d/%s?%s" % (
            urllib.parse.quote(user or self.user, safe=""),
            urllib.parse.quote(password or self.password, safe=""),
            host, port or self.port, dbname or self.dbname, urllib.parse.urlencode(q))

    def __repr__(self):
        return "Postgres(%s:%d user=%s db=%s)" % (self.host, self.port, self.user, self.dbname)


class Tailnet:
    """A tailnet of two nodes and a control server in three network
    namespaces; see the package docstring. Use as a context manager, or
    call start() and close()."""

    # The subnet behind B (documentation prefixes only).
    route_v4 = "192.0.2.0/24"
    route_v6 = "2001:db8:99::/64"
    routes = (route_v4, route_v6)
    web_v4 = ("192.0.2.10", 80)
    web_v6 = ("2001:db8:99::10", 80)
    # B's own tailnet addresses: tailscaled B hands a connection to one of
    # them to B's loopback, where the web server listens too.
    web_self_port = 80
    dns_v4 = ("192.0.2.53", 53)
    unrouted_v4 = "198.51.100.7"  # an address nobody carries
    split_domain = "corp.example"
    db_name = "db.corp.example"
    magicdns_base = "tailnet.test"
    hostname_a = "tailnet-a"
    hostname_b = "tailnet-b"
    user = "harness"
    pg_user, pg_password, pg_dbname = "tfuser", "tailnet-secret", "tfdb"

    def __init__(self, workdir, free_port=pick_port, verbose_a=1, verbose_b=2,
                 timeout=120.0, log=None):
        self.workdir = os.path.abspath(str(workdir))
        self._free_port = free_port
        self.verbose_a = verbose_a
        self.verbose_b = verbose_b
        self.timeout = timeout
        self._say = log or (lambda msg: None)
        self.timings = {}
        self.startup_seconds = None
        self._procs = []          # everything started, for teardown
        self._namespaces = []
        self._tmp = None
        self._approved = ()
        self.started = False
        self.closed = False

    # -------------------------------------------------------------- start
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _mark(self, phase, t0):
        self.timings[phase] = round(time.monotonic() - t0, 2)

    def start(self):
        """Brings everything up; returns self. On failure everything started
        so far is torn down and HarnessError is raised."""
        if self.started or self.closed:
            raise HarnessError("a Tailnet starts once; make a new one")
        why = missing_requirements()
        if why:
            raise HarnessError("cannot run the tailnet harness: " + "; ".join(why))
        t0 = time.monotonic()
        try:
            self._start(t0)
        except BaseException:
            try:
                self.close()
            except Exception as e:  # noqa: BLE001 - the first error matters more
                self._say("teardown after a failed start: %s" % e)
            raise
        self.startup_seconds = round(time.monotonic() - t0, 2)
        self.started = True
        self._say("tailnet up in %.1fs (%s)" % (
            self.startup_seconds, ", ".join("%s %.1fs" % kv for kv in self.timings.items())))
        return self

    def _start(self, t0):
        os.makedirs(self.workdir, exist_ok=True)
        # UNIX socket paths must stay under 108 bytes: sockets (and
        # PostgreSQL, which needs directories the postgres user can reach)
        # live in a short directory of their own.
        self._tmp = tempfile.mkdtemp(prefix="tailnet-", dir="/tmp")
        os.chmod(self._tmp, 0o755)
        self.logdir = os.path.join(self.workdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)

        # The control port: free in A; H and B are fresh, so free there too.
        self.hs_port = self._free_port()
        self.a_proxy_port = self._free_port()
        self.a_proxy = "127.0.0.1:%d" % self.a_proxy_port
        self.control_url = "http://127.0.0.1:%d" % self.hs_port
        self.a_socket = os.path.join(self._tmp, "a.sock")
        self.b_socket = os.path.join(self._tmp, "b.sock")
        self.bridge_socket = os.path.join(self._tmp, "headscale-bridge.sock")

        self.ns_h = NetNS("H", self.logdir)
        self._namespaces.append(self.ns_h)
        self.ns_b = NetNS("B", self.logdir)
        self._namespaces.append(self.ns_b)
        for addr in ("192.0.2.10/32", "192.0.2.53/32"):
            self.ns_b.run(["ip", "addr", "add", addr, "dev", "lo"], check=True)
        self.ns_b.run(["ip", "-6", "addr", "add", "2001:db8:99::10/128", "dev", "lo", "nodad"],
                      check=True)
        self._mark("namespaces", t0)

        self._start_headscale()
        self._start_bridge()
        self._mark("headscale", t0)

        # B's servers and PostgreSQL come up while the tailscaleds log in.
        self._start_servers()
        pg_init = self._pg_initdb()
        self._start_tailscaled_b()
        self._start_tailscaled_a()
        key = self.headscale("preauthkeys", "create", "--user", str(self._user_id),
                             "--reusable", "--expiration", "2h")["key"]
        up_b = self._tailscale_up(self.ns_b, self.b_socket, key, [
            "--hostname=" + self.hostname_b, "--advertise-routes=" + ",".join(self.routes),
            "--accept-routes=false"])
        up_a = self._tailscale_up(None, self.a_socket, key, [
            "--hostname=" + self.hostname_a, "--accept-routes=true"])
        self._finish_postgres(pg_init)
        self._mark("postgres", t0)
        for name, p in (("b", up_b), ("a", up_a)):
            try:
                out, _ = p.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            if p.returncode != 0:
                raise HarnessError("tailscale up on %s exited %s:\n%s\ntailscaled log tail:\n%s" % (
                    name, p.returncode, out, (self.a_log if name == "a" else self.b_log)()[-4000:]))
        self._mark("tailscale up", t0)

        st_b = self.localapi_b("status")
        self.b_ips = tuple(st_b["Self"]["TailscaleIPs"])
        self.b_dnsname = st_b["Self"]["DNSName"]
        st_a = self.localapi_a("status")
        self.a_ips = tuple(st_a["Self"]["TailscaleIPs"])
        self.a_dnsname = st_a["Self"]["DNSName"]
        self.magicdns_suffix = (st_a.get("CurrentTailnet") or {}).get("MagicDNSSuffix") \
            or st_a.get("MagicDNSSuffix")
        self.b_node_id = wait_for(self._b_node_with_routes, self.timeout,
                                  "headscale to list %s with its advertised routes" % self.hostname_b)
        self.approve_routes()
        self._mark("routes", t0)
        self.wait_path()
        self._mark("path over DERP", t0)

    def _start_headscale(self):
        d = os.path.join(self.workdir, "headscale")
        os.makedirs(d, exist_ok=True)
        # H holds nothing but headscale: any port other than its main one
        # is free there.
        metrics_port, grpc_port = [p for p in (9090, 9091, 50443) if p != self.hs_port][:2]
        self.hs_config = os.path.join(d, "config.yaml")
        self.hs_socket = os.path.join(self._tmp, "headscale.sock")
        with open(self.hs_config, "w", encoding="utf-8") as f:
            f.write(HEADSCALE_CONFIG.format(
                port=self.hs_port, metrics_port=metrics_port, grpc_port=grpc_port,
                stun_port=3478, dir=d, socket=self.hs_socket, base_domain=self.magicdns_base,
                split_domain=self.split_domain, split_resolver=self.dns_v4[0]))
        self.hs = self._proc("headscale", [HEADSCALE, "-c", self.hs_config, "serve"], self.ns_h)
        wait_for(lambda: self.hs.check_alive("headscale") or self.ns_h.listening(self.hs_port),
                 self.timeout, "headscale to listen on 127.0.0.1:%d in H" % self.hs_port)
        wait_for(lambda: self.hs.check_alive("headscale") or self._hs_cli_ok(), self.timeout,
                 "headscale's CLI socket")
        self._user_id = self.headscale("users", "create", self.user)["id"]

    def _hs_cli_ok(self):
        try:
            self.headscale("users", "list")
            return True
        except HarnessError:
            return False

    def _start_bridge(self):
        """Headscale's port, reachable as 127.0.0.1:PORT in A and in B: a
        socat in H accepts on a path-bound UNIX socket and connects to
        headscale; one in A and one in B accept on loopback and connect to
        that UNIX socket. The only way anything crosses namespaces."""
        self.bridge_h = self._proc("bridge-h", [
            SOCAT, "UNIX-LISTEN:%s,fork,unlink-early,mode=600" % self.bridge_socket,
            "TCP4:127.0.0.1:%d" % self.hs_port], self.ns_h)
        wait_for(lambda: self.bridge_h.check_alive("socat in H") or os.path.exists(self.bridge_socket),
                 30, "the bridge socket " + self.bridge_socket)
        listen = "TCP4-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % self.hs_port
        target = "UNIX-CONNECT:" + self.bridge_socket
        self.bridge_a = self._proc("bridge-a", [SOCAT, listen, target], None)
        self.bridge_b = self._proc("bridge-b", [SOCAT, listen, target], self.ns_b)
        wait_for(lambda: self.bridge_a.check_alive("socat in A") or _listening(os.getpid(), self.hs_port),
                 30, "the bridge in A")
        wait_for(lambda: self.bridge_b.check_alive("socat in B") or self.ns_b.listening(self.hs_port),
                 30, "the bridge in B")

    def _start_servers(self):
        self.web_hits_path = os.path.join(self.workdir, "web-hits.jsonl")
        self.dns_queries_path = os.path.join(self.workdir, "dns-queries.jsonl")
        for p in (self.web_hits_path, self.dns_queries_path):
            open(p, "w").close()
        self.web = self._proc("web", [
            PYTHON, os.path.join(HERE, "webserver.py"), "--label", "tailnet-b-web",
            "--hits", self.web_hits_path, "%s:%d" % self.web_v4, "[%s]:%d" % self.web_v6,
            "127.0.0.1:%d" % self.web_self_port], self.ns_b)
        self.dns = self._proc("dns", [
            PYTHON, os.path.join(HERE, "dnsserver.py"), "--queries", self.dns_queries_path,
            "--record", self.db_name, "A", self.web_v4[0],
            "--record", self.db_name, "AAAA", self.web_v6[0],
            "%s:%d" % self.dns_v4], self.ns_b)

    def _tailscaled_env(self, home, extra=()):
        env = clean_env(
            HOME=home,
            # Plain-HTTP DERP: headscale's embedded DERP answers on its
            # http:// server_url port (the DERP map says so).
            TS_DEBUG_USE_DERP_HTTP=1,
            # Only lo is up: without this the control client thinks the
            # machine is offline and never dials.
            TS_ASSUME_NETWORK_UP_FOR_TEST=1,
            TS_DISABLE_PORTMAPPER=1,
            # No UDP socket at all: namespaces share no UDP path, and the
            # only local endpoints would be 127.0.0.1/::1, where a disco
            # ping reaches the sender's own namespace. WireGuard goes in
            # DERP frames, which is what the bridge carries.
            TS_DEBUG_ALWAYS_USE_DERP=1,
            # Belt and braces: never talk to Tailscale's own control plane.
            TS_PANIC_IF_HIT_MAIN_CONTROL=1,
            TS_NO_LOGS_NO_SUPPORT=1,
            # No rate limit on log lines: tests look for one line per
            # forwarded connection, and the default limiter drops repeats.
            TS_DEBUG_LOG_RATE="all",
        )
        env.update(dict(extra))
        return env

    def _tailscaled_argv(self, state, sock, verbose, proxy=None):
        argv = [TAILSCALED, "--tun=userspace-networking", "--no-logs-no-support",
                "--socket=" + sock, "--statedir=" + state,
                "--state=" + os.path.join(state, "tailscaled.state"), "--port=0",
                "--verbose=%d" % verbose]
        if proxy:
            argv += ["--socks5-server=" + proxy, "--outbound-http-proxy-listen=" + proxy]
        return argv

    def _start_tailscaled_b(self):
        state = os.path.join(self.workdir, "tailscaled-b")
        os.makedirs(state, exist_ok=True)
        # TS_DEBUG_NETSTACK with --verbose=2 makes netstack log each
        # forwarded connection: "netstack: forwarding incoming connection to IP:PORT".
        env = self._tailscaled_env(state, {"TS_DEBUG_NETSTACK": "1"})
        self.tsd_b = self._proc("tailscaled-b", self._tailscaled_argv(
            state, self.b_socket, self.verbose_b), self.ns_b, env=env)
        self._wait_localapi(self.tsd_b, self.b_socket, "tailscaled B")

    def _start_tailscaled_a(self):
        state = os.path.join(self.workdir, "tailscaled-a")
        os.makedirs(state, exist_ok=True)
        env = self._tailscaled_env(state)
        self.tsd_a = self._proc("tailscaled-a", self._tailscaled_argv(
            state, self.a_socket, self.verbose_a, self.a_proxy), None, env=env)
        self._wait_localapi(self.tsd_a, self.a_socket, "tailscaled A")
        wait_for(lambda: self.tsd_a.check_alive("tailscaled A") or _listening(os.getpid(), self.a_proxy_port),
                 self.timeout, "tailscaled A's proxy on " + self.a_proxy)

    def _wait_localapi(self, proc, sock, what):
        def ok():
            proc.check_alive(what)
            return os.path.exists(sock) and localapi(sock, "status", timeout=5) is not None
        wait_for(ok, self.timeout, what + "'s LocalAPI on " + sock)

    def _tailscale_up(self, ns, sock, key, extra):
        argv = [TAILSCALE, "--socket=" + sock, "up", "--login-server=" + self.control_url,
                "--auth-key=" + key, "--timeout=%ds" % int(self.timeout)] + extra
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=clean_env(),
                                preexec_fn=_preexec(ns.fd if ns else None))

    # ----------------------------------------------------------- PostgreSQL
    def _pg_bin(self, name):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name))
        if not found:
            raise HarnessError("PostgreSQL's %s not found under /usr/lib/postgresql" % name)
        return found[-1]

    def _pg_initdb(self):
        pw = pwd.getpwnam("postgres")
        self.pg_base = os.path.join(self._tmp, "pg")
        os.mkdir(self.pg_base)
        self.pg_sockdir = os.path.join(self.pg_base, "sock")
        os.mkdir(self.pg_sockdir)
        for d in (self.pg_base, self.pg_sockdir):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        self.pg_data = os.path.join(self.pg_base, "data")
        return subprocess.Popen(
            [self._pg_bin("initdb"), "-D", self.pg_data, "-U", "postgres", "--auth-local=trust",
             "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"],
            cwd=self.pg_base, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=clean_env(),
            preexec_fn=_preexec(None, user="postgres"))

    def _finish_postgres(self, init):
        out, _ = init.communicate(timeout=self.timeout)
        if init.returncode != 0:
            raise HarnessError("initdb failed:\n" + out)
        with open(os.path.join(self.pg_data, "pg_hba.conf"), "w", encoding="ascii") as f:
            f.write("local all all trust\n"
                    "host all all %s scram-sha-256\n"
                    "host all all %s scram-sha-256\n" % (self.route_v4, self.route_v6))
        port = 5432
        self.pg_proc = self._proc("postgres", [
            self._pg_bin("postgres"), "-D", self.pg_data, "-p", port, "-k", self.pg_sockdir,
            "-c", "listen_addresses=%s,%s" % (self.web_v4[0], self.web_v6[0]),
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "log_connections=on"], self.ns_b, user="postgres", cwd=self.pg_base)
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.pg_sockdir, "-p", str(port)]

        def ready():
            self.pg_proc.check_alive("postgres")
            return subprocess.run(psql + ["-U", "postgres", "-d", "postgres", "-c", "select 1"], capture_output=True,
                                  stdin=subprocess.DEVNULL, env=clean_env(), timeout=30).returncode == 0
        wait_for(ready, self.timeout, "PostgreSQL in B")
        # Separate -c options: CREATE DATABASE refuses a transaction block.
        setup = subprocess.run(psql + ["-U", "postgres", "-d", "postgres",
                                       "-c", "create role %s login password '%s'"
                                       % (self.pg_user, self.pg_password),
                                       "-c", "create database %s owner %s"
                                       % (self.pg_dbname, self.pg_user)],
                               capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, env=clean_env(), timeout=60)
        if setup.returncode == 0:
            setup = subprocess.run(psql + ["-U", self.pg_user, "-d", self.pg_dbname, "-c",
                                           "create table items(id int primary key, name text);"
                                           "insert into items values (1, 'alpha'), (2, 'beta'),"
                                           " (3, 'gamma');"],
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                   env=clean_env(), timeout=60)
        if setup.returncode != 0:
            raise HarnessError("PostgreSQL set-up failed:\n" + setup.stdout + setup.stderr)
        self.pg = Postgres(self.web_v4[0], self.web_v6[0], port, self.pg_user, self.pg_password,
                           self.pg_dbname, self.pg_sockdir)

    @property
    def sock_dir(self):
        """The short /tmp/tailnet-* directory with the UNIX sockets and
        PostgreSQL's data (removed by close())."""
        return self._tmp

    def pids(self):
        """PIDs of every process the harness started and still tracks,
        namespace holders included."""
        return [p.pid for p in self._procs] + [ns.holder.pid for ns in self._namespaces]

    def pg_dsn(self, host=None, **kw):
        """B's PostgreSQL as a libpq URI (see Postgres.dsn)."""
        return self.pg.dsn(host=host, **kw)

    # ------------------------------------------------------------- helpers
    def _proc(self, name, argv, netns, env=None, user=None, cwd=None):
        p = Proc(argv, os.path.join(self.logdir, name + ".log"), netns=netns, env=env,
                 user=user, cwd=cwd)
        p.name = name
        self._procs.append(p)
        return p

    def headscale(self, *args, json_output=True):
        """Runs a headscale CLI subcommand against the harness's headscale
        (over its UNIX socket). With json_output, adds -o json and returns
        the parsed output; otherwise the text. HarnessError on failure."""
        argv = [HEADSCALE, "-c", self.hs_config] + [str(a) for a in args]
        if json_output:
            argv += ["-o", "json"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, env=clean_env())
        if r.returncode != 0:
            raise HarnessError("headscale %s exited %d: %s%s" % (
                " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        if not json_output:
            return r.stdout
        out = r.stdout.strip()
        try:
            return json.loads(out) if out else None
        except ValueError:
            return out

    def preauth_key(self, ephemeral=False):
        """A reusable pre-auth key of the harness's user, for another node
        joining the tailnet from A's namespace (a Railway container, a
        demo)."""
        args = ["preauthkeys", "create", "--user", str(self._user_id), "--reusable",
                "--expiration", "2h"]
        if ephemeral:
            args.append("--ephemeral")
        return self.headscale(*args)["key"]

    def node_env(self, home):
        """The environment a tailscaled joining this tailnet from A's
        namespace needs (plain-HTTP DERP over the bridge, no UDP, never a
        real control server); add --tun=userspace-networking and
        --no-logs-no-support to its flags."""
        return self._tailscaled_env(home)

    def node(self, hostname):
        """Headscale's record of the node with that host name, or None."""
        for n in self.headscale("nodes", "list") or []:
            if hostname in (n.get("given_name"), n.get("name")):
                return n
        return None

    def node_routes(self, node_id):
        """(available, approved, serving) routes of one node, as headscale
        lists them."""
        for n in self.headscale("nodes", "list-routes", "--identifier", str(node_id)) or []:
            if n.get("id") == node_id:
                return (sorted(n.get("available_routes") or []),
                        sorted(n.get("approved_routes") or []),
                        sorted(n.get("subnet_routes") or []))
        return ([], [], [])

    def localapi_a(self, path, method="GET", body=None, timeout=30.0):
        """A request to tailscaled A's LocalAPI (path relative to
        /localapi/v0/); returns parsed JSON."""
        return localapi(self.a_socket, path, method, body, timeout)

    def localapi_b(self, path, method="GET", body=None, timeout=30.0):
        return localapi(self.b_socket, path, method, body, timeout)

    def status_a(self):
        return self.localapi_a("status")

    def peer_b(self, status=None):
        """B's PeerStatus in A's status (None when A does not list B)."""
        st = status or self.status_a()
        for peer in (st.get("Peer") or {}).values():
            if peer.get("HostName") == self.hostname_b or \
                    (peer.get("DNSName") or "").split(".")[0] == self.hostname_b:
                return peer
        return None

    def b_routes_seen_by_a(self):
        """B's PrimaryRoutes as A's LocalAPI status reports them (sorted)."""
        peer = self.peer_b()
        return sorted((peer or {}).get("PrimaryRoutes") or [])

    def tailscale_a(self, *args, timeout=60):
        """`tailscale --socket=A ARGS` -> CompletedProcess (text)."""
        return subprocess.run([TAILSCALE, "--socket=" + self.a_socket] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=clean_env())

    def tailscale_b(self, *args, timeout=60):
        return self.ns_b.run([TAILSCALE, "--socket=" + self.b_socket] + [str(a) for a in args],
                             timeout=timeout)

    def in_b(self, argv, **kw):
        """subprocess.run inside namespace B (captured text output, 60 s
        timeout unless told otherwise)."""
        return self.ns_b.run(argv, **kw)

    def in_h(self, argv, **kw):
        return self.ns_h.run(argv, **kw)

    def dns_query_a(self, name, qtype="A"):
        """Asks tailscaled A's own resolver (LocalAPI dns-query: MagicDNS and
        split DNS, what 100.100.100.100 would answer). Returns the decoded
        message (dnsserver.parse_message) plus "resolvers" (the upstreams
        tailscaled chose) and "addresses" (A/AAAA answer data)."""
        res = self.localapi_a("dns-query?" + urllib.parse.urlencode({"name": name, "type": qtype}))
        msg = dnsserver.parse_message(base64.b64decode(res.get("Bytes") or ""))
        msg["resolvers"] = res.get("Resolvers") or []
        msg["addresses"] = [a["data"] for a in msg["answers"] if a["type"] in ("A", "AAAA")]
        return msg

    @staticmethod
    def _jsonl(path):
        out = []
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.endswith("\n") and line.strip():
                        out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return out

    def web_hits(self):
        """Requests B's web server answered, oldest first: dicts with client,
        client_port, local, local_port, method, path, host."""
        return self._jsonl(self.web_hits_path)

    def dns_queries(self):
        """Questions B's DNS server got, oldest first: dicts with name (lower
        case, no trailing dot), type, transport (udp/tcp), client."""
        return self._jsonl(self.dns_queries_path)

    def a_log(self):
        """tailscaled A's output so far (all of it, across restarts)."""
        return self.tsd_a.log()

    def b_log(self):
        return self.tsd_b.log()

    def headscale_log(self):
        return self.hs.log()

    def logs(self, tail=3000):
        """Every process's log tail, for failure messages."""
        return "\n".join("---- %s (%s) ----\n%s" % (p.name, "running" if p.alive() else
                                                   "exited %s" % p.proc.returncode, p.log(tail))
                         for p in self._procs)

    # -------------------------------------------------------------- routes
    def _b_node(self):
        for n in self.headscale("nodes", "list") or []:
            if n.get("given_name") == self.hostname_b or n.get("name") == self.hostname_b:
                return n
        return None

    def _b_node_with_routes(self):
        n = self._b_node()
        if not n:
            return None
        for r in self.headscale("nodes", "list-routes", "--identifier", n["id"]) or []:
            if r.get("id") == n["id"] and sorted(r.get("available_routes") or []) == sorted(self.routes):
                return n["id"]
        return None

    def headscale_routes(self):
        """(available, approved, serving) routes of B as headscale lists them."""
        for r in self.headscale("nodes", "list-routes", "--identifier", self.b_node_id) or []:
            if r.get("id") == self.b_node_id:
                return (sorted(r.get("available_routes") or []),
                        sorted(r.get("approved_routes") or []),
                        sorted(r.get("subnet_routes") or []))
        return ([], [], [])

    @property
    def approved(self):
        """The routes the harness last approved (a tuple; empty after revoke_routes)."""
        return tuple(self._approved)

    def approve_routes(self, routes=None, timeout=None):
        """Approves routes (default: both of B's) in headscale, and waits until
        A's LocalAPI status shows exactly them as B's PrimaryRoutes."""
        routes = sorted(routes if routes is not None else self.routes)
        self.headscale("nodes", "approve-routes", "--identifier", self.b_node_id,
                       "--routes", ",".join(routes))
        self._approved = tuple(routes)
        self.wait_routes_seen(routes, timeout)

    def revoke_routes(self, timeout=None):
        """Removes every approval in headscale and waits until A no longer
        lists B's routes (PrimaryRoutes nor AllowedIPs)."""
        self.headscale("nodes", "approve-routes", "--identifier", self.b_node_id, "--routes", "")
        self._approved = ()
        self.wait_routes_seen([], timeout)

    def wait_routes_seen(self, routes, timeout=None):
        """Waits until B's PrimaryRoutes and the route part of its AllowedIPs,
        in A's status, are exactly routes."""
        routes = sorted(routes)

        def seen():
            peer = self.peer_b()
            if peer is None:
                return False
            primary = sorted(peer.get("PrimaryRoutes") or [])
            allowed = sorted(p for p in (peer.get("AllowedIPs") or []) if p in self.routes)
            return primary == routes and allowed == routes
        wait_for(seen, timeout or self.timeout, "A to see B's routes as %s (now: %s)"
                 % (routes, self.b_routes_seen_by_a()))

    def restore(self):
        """Back to the state start() left: tailscaled A running, both routes
        approved. Does nothing when that is already so."""
        if not self.tsd_a.alive():
            self.start_a()
        if sorted(self._approved) != sorted(self.routes):
            self.approve_routes()

    # ------------------------------------------------------------ A control
    def ping_b(self, kind="TSMP", timeout=10.0):
        """One ping from A to B's IPv4 tailnet address through LocalAPI
        (TSMP: inside WireGuard). Returns the PingResult dict."""
        return self.localapi_a("ping?" + urllib.parse.urlencode({"ip": self.b_ips[0], "type": kind}),
                               method="POST", timeout=timeout)

    def wait_path(self, timeout=None):
        """Waits until a TSMP ping from A reaches B (WireGuard over DERP works)."""
        def ok():
            self.tsd_a.check_alive("tailscaled A")
            self.tsd_b.check_alive("tailscaled B")
            r = self.ping_b()
            return not r.get("Err") and r
        return wait_for(ok, timeout or self.timeout, "a TSMP ping from A to B", interval=0.5)

    def stop_a(self):
        """Stops tailscaled A (SIGTERM). Returns its exit status."""
        return self.tsd_a.stop(signal.SIGTERM, 30)

    def start_a(self):
        """Starts tailscaled A again with the same state directory, socket
        and proxy port; waits until it is Running, sees B's approved routes
        and reaches B."""
        if self.tsd_a.alive():
            raise HarnessError("tailscaled A is already running")
        self._procs.remove(self.tsd_a)
        self._start_tailscaled_a()
        wait_for(lambda: self.tsd_a.check_alive("tailscaled A") or
                 self.status_a().get("BackendState") == "Running",
                 self.timeout, "tailscaled A to be Running again")
        self.wait_routes_seen(self._approved)
        self.wait_path()

    # ------------------------------------------------------------ teardown
    def close(self):
        """Stops every process, removes the namespaces and the socket
        directory. Raises HarnessError if anything it started survived or a
        namespace is still held by anyone (after killing everything)."""
        if self.closed:
            return
        self.closed = True
        # tailscaled first, so it logs out of nothing and just exits; then
        # the rest, each with its forks (own process group).
        order = {"tailscaled-a": 0, "tailscaled-b": 0, "postgres": 1}
        for p in sorted(self._procs, key=lambda p: order.get(p.name, 2)):
            if p.name == "postgres":
                p.stop(signal.SIGINT, 30)
            elif p.name.startswith("bridge"):
                p.stop(signal.SIGTERM, 10, group=True)
            else:
                p.stop(signal.SIGTERM, 20)
        for ns in self._namespaces:
            ns.close()
        problems = []
        for p in self._procs:
            try:
                os.killpg(p.pid, 0)
                problems.append("process group of %s (%d) still has members" % (p.name, p.pid))
            except ProcessLookupError:
                pass
            except PermissionError:
                problems.append("process group of %s (%d) still has members" % (p.name, p.pid))
        for ns in self._namespaces:
            left = ns.remains()
            if left:
                problems.append("namespace %s still held by pids %s" % (ns.name, left))
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if problems:
            raise HarnessError("teardown left things behind: " + "; ".join(problems))
