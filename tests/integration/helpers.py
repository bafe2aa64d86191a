"""
helpers: plain functions and small servers shared by the tailfence integration
tests. Nothing here is a pytest fixture (those live in conftest.py); tests import
what they need with `from helpers import ...`.

Contents
  paths           REPO (the source tree), PY (Debian's python3)
  waiting         wait_until (the one poll loop: a predicate, a timeout, what
                  the test waits for)
  ports/sockets   free_port, wait_listening (TCP or UDP), accept_queue, connect,
                  recv_exact, recv_all, read_until, wait_closed, abort
  SOCKS clients   socks5_connect, socks5_greet, socks5_send_request,
                  socks5_read_reply, socks4_connect  (raw, byte-exact)
  HTTP client     http_exchange, read_http_response
  origins         EchoOrigin, SinkOrigin, SourceOrigin, HTTPOrigin (http/https);
                  every origin records each TCP connection it accepts, so a
                  test can assert that a denied origin saw nothing at all
  processes       Proc (a logged child process stopped at teardown),
                  sanitizer_env, SANITIZER_EXIT_CODES
  audit           read_audit (a trail file), audit_records (JSON lines among
                  other output), SANITIZER_MARKERS, sanitizer_report
  clients         curl, run_python; socks5_rep, http_connect_status,
                  http_get_status, socks4a_code (one request, its verdict)
  DNS             TinyDNS (a UDP DNS server on loopback with fixed records)
  Prometheus      Prometheus (Debian's server scraping one target every second),
                  http_get (one plain HTTP request), parse_metrics, metrics
                  (tailfence's /metrics as a dict)

Everything talks to loopback only (127.0.0.0/8, ::1); the suite itself runs in
a private network namespace (see scripts/test).
"""

import ctypes
import hashlib
import http.server
import json
import os
import pathlib
import random
import select
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

PY = "/usr/bin/python3"
REPO = pathlib.Path(__file__).resolve().parents[2]

# --upstream kinds the upstream_url fixture knows (conftest.py).
UPSTREAM_KINDS = ("direct", "tailscaled-socks5", "tailscaled-http", "microsocks")

# ------------------------------------------------------------------ waiting

def wait_until(pred, timeout, what, interval=0.1, detail=None):
    """Polls pred() every interval seconds until it returns something true,
    and returns that value. When timeout seconds pass first, raises
    AssertionError "timed out after Ns waiting for WHAT (last: VALUE)",
    followed by detail() if given (a log tail or a transcript, read when the
    wait fails rather than when it starts). pred is asked once more at the
    deadline; an exception from pred propagates at once."""
    deadline = time.monotonic() + timeout
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            msg = "timed out after %gs waiting for %s (last: %r)" % (timeout, what, last)
            if detail is not None:
                msg += "\n" + detail()
            raise AssertionError(msg)
        time.sleep(interval)


# ------------------------------------------------------------------ sockets

_used_ports = set()


# Ports handed out come from below the kernel's ephemeral range (32768 and
# up by default), so a listener never collides with the client side of some
# other test's connection (a daemon binding 0.0.0.0:P fails while any
# socket on this host holds P).
_PORT_RANGE = (20000, 32000)


def _bindable(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
        return True
    except OSError:
        return False


def free_port(host="127.0.0.1", also=()):
    """A TCP port on host that nobody uses and this run has not handed out
    before (so two fixtures never get the same one). With also (more
    addresses), a port that is free on each of them too, for origins that
    listen on one port at several addresses."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(500):
        port = random.randrange(*_PORT_RANGE)
        if port in _used_ports:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        if all(_bindable(h, port) for h in also):
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port on %s" % ", ".join((host,) + tuple(also)))


def _proc_net(udp=False):
    """Rows of /proc/net/tcp and tcp6 (udp=True: udp and udp6), split."""
    rows = []
    for name in ("/proc/net/udp", "/proc/net/udp6") if udp else ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name, encoding="ascii") as f:
                next(f, None)
                rows += [line.split() for line in f]
        except OSError:
            pass
    return [r for r in rows if len(r) > 4]


def _listening_ports(udp=False):
    """TCP ports something listens on (udp=True: UDP ports bound)."""
    state = "07" if udp else "0A"  # TCP_CLOSE is how a bound UDP socket shows
    return {int(r[1].rsplit(":", 1)[1], 16) for r in _proc_net(udp) if r[3] == state}


def accept_queue(port):
    """Connections waiting in the accept queue of TCP listeners on port."""
    return sum(int(r[4].split(":")[1], 16) for r in _proc_net()
               if r[3] == "0A" and int(r[1].rsplit(":", 1)[1], 16) == port)


def wait_listening(port, timeout=15.0, proc=None, what="process", udp=False):
    """Waits until something listens on TCP port, or with udp=True has UDP
    port bound (read from /proc/net/*, so no probe shows up in anyone's
    logs). Raises if proc exits first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in _listening_ports(udp):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening on port %d"
                               % (what, proc.returncode, port))
        time.sleep(0.02)
    raise TimeoutError("%s did not listen on port %d within %.0fs" % (what, port, timeout))


def connect(port, host="127.0.0.1", timeout=10.0):
    """A connected TCP socket to host:port with a timeout on every operation."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def recv_exact(sock, n):
    """Exactly n bytes; raises EOFError when the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes: %r" % (len(buf), n, bytes(buf)))
        buf += chunk
    return bytes(buf)


def recv_all(sock, limit=64 << 20):
    """Everything until EOF (at most limit bytes)."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def read_until(sock, marker, limit=1 << 20):
    """Reads until marker has been seen; returns everything read (which may
    go past the marker). Raises EOFError when the peer closes first."""
    buf = bytearray()
    while marker not in buf:
        if len(buf) > limit:
            raise ValueError("no %r within %d bytes" % (marker, limit))
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("peer closed before %r; got %r" % (marker, bytes(buf)))
        buf += chunk
    return bytes(buf)


def wait_closed(sock, timeout=10.0):
    """True when the peer closes the connection (EOF or reset) within timeout;
    data that arrives meanwhile is read and dropped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            continue


def abort(sock):
    """Closes sock with a TCP reset (SO_LINGER 0), like a crashed client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------ SOCKS clients

SOCKS5_CONNECT, SOCKS5_BIND, SOCKS5_UDP_ASSOCIATE = 1, 2, 3
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4

SOCKS5_REPLIES = {
    0x00: "succeeded", 0x01: "general failure", 0x02: "not allowed by ruleset",
    0x03: "network unreachable", 0x04: "host unreachable", 0x05: "connection refused",
    0x06: "TTL expired", 0x07: "command not supported", 0x08: "address type not supported",
}


def socks5_greet(sock, methods=(0x00,)):
    """Sends the method-selection message; returns the chosen method."""
    sock.sendall(bytes([5, len(methods)]) + bytes(methods))
    ver, method = recv_exact(sock, 2)
    assert ver == 5, "SOCKS5 method reply version %d" % ver
    return method


def socks5_request_bytes(host, port, cmd=SOCKS5_CONNECT, atyp=None):
    """The bytes of a SOCKS5 request. atyp defaults to the host's kind (IPv4
    literal, IPv6 literal, else domain); pass atyp to force one."""
    if atyp is None:
        try:
            socket.inet_pton(socket.AF_INET, host)
            atyp = ATYP_IPV4
        except OSError:
            try:
                socket.inet_pton(socket.AF_INET6, host)
                atyp = ATYP_IPV6
            except OSError:
                atyp = ATYP_DOMAIN
    if atyp == ATYP_IPV4:
        addr = socket.inet_pton(socket.AF_INET, host)
    elif atyp == ATYP_IPV6:
        addr = socket.inet_pton(socket.AF_INET6, host)
    elif atyp == ATYP_DOMAIN:
        name = host.encode()
        addr = bytes([len(name)]) + name
    else:
        addr = host if isinstance(host, bytes) else b"\x7f\x00\x00\x01"
    return bytes([5, cmd, 0, atyp]) + addr + struct.pack("!H", port)


def socks5_read_reply(sock):
    """Reads a SOCKS5 reply; returns (rep, bound_host, bound_port)."""
    ver, rep, _rsv, atyp = recv_exact(sock, 4)
    assert ver == 5, "SOCKS5 reply version %d" % ver
    if atyp == ATYP_IPV4:
        host = socket.inet_ntop(socket.AF_INET, recv_exact(sock, 4))
    elif atyp == ATYP_IPV6:
        host = socket.inet_ntop(socket.AF_INET6, recv_exact(sock, 16))
    elif atyp == ATYP_DOMAIN:
        host = recv_exact(sock, recv_exact(sock, 1)[0]).decode("latin-1")
    else:
        raise AssertionError("SOCKS5 reply with address type %d" % atyp)
    (port,) = struct.unpack("!H", recv_exact(sock, 2))
    return rep, host, port


def socks5_connect(sock, host, port, cmd=SOCKS5_CONNECT, atyp=None):
    """No-auth greeting plus one request; returns (rep, bound_host, bound_port).
    rep 0 means the tunnel is open and sock now carries the target's bytes."""
    method = socks5_greet(sock)
    assert method == 0, "proxy chose SOCKS5 method 0x%02x instead of no-auth" % method
    sock.sendall(socks5_request_bytes(host, port, cmd, atyp))
    return socks5_read_reply(sock)


def socks4_connect(sock, host, port, user=b"tf"):
    """SOCKS4 CONNECT to an IPv4 literal, or SOCKS4a when host is a name.
    Returns the reply code (0x5A granted, 0x5B rejected)."""
    try:
        ip = socket.inet_pton(socket.AF_INET, host)
        tail = b""
    except OSError:
        ip = b"\x00\x00\x00\x01"
        tail = host.encode() + b"\x00"
    sock.sendall(b"\x04\x01" + struct.pack("!H", port) + ip + user + b"\x00" + tail)
    reply = recv_exact(sock, 8)
    assert reply[0] == 0, "SOCKS4 reply version byte %d" % reply[0]
    return reply[1]


# ---------------------------------------------------------------- HTTP client

def read_http_response(sock, body=True):
    """Reads one HTTP/1.x response. Returns (status, headers, body, rest):
    headers is a dict with lower-case names; body is read by Content-Length,
    chunked framing or until close (body=False skips it, for CONNECT);
    rest is whatever arrived after the message."""
    raw = read_until(sock, b"\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert parts[0].startswith("HTTP/1."), "not an HTTP response: %r" % lines[0]
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if not body:
        return status, headers, b"", rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest[:n], rest[n:]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        data = bytearray()
        buf = bytearray(rest)
        while True:
            while b"\r\n" not in buf:
                buf += recv_exact(sock, 1)
            size_line, _, tail = bytes(buf).partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            buf = bytearray(tail)
            while len(buf) < size + 2:
                buf += sock.recv(65536)
            data += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                return status, headers, bytes(data), bytes(buf)
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", rest
    return status, headers, rest + recv_all(sock), b""


def http_exchange(port, raw, host="127.0.0.1", timeout=10.0, body=True):
    """Sends raw request bytes to host:port on a new connection and reads one
    response; returns (status, headers, body)."""
    with connect(port, host, timeout) as s:
        s.sendall(raw)
        status, headers, data, _ = read_http_response(s, body=body)
        return status, headers, data


# -------------------------------------------------------------------- origins

class Origin:
    """A threaded TCP server on loopback that records every connection it
    accepts (peer address, in order) before handing it to handle().

    host      where to bind ("127.0.0.1", "127.0.1.1", "::1", ...)
    .port     the bound port; .hostport "HOST:PORT" ("[::1]:PORT" for IPv6)
    .count    connections accepted so far; .peers their peer addresses
    """

    name = "origin"

    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port or free_port(host)))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.peers = []
        self.errors = []
        self._cond = threading.Condition()
        self._closing = False
        self._conns = set()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="%s-%s:%d" % (self.name, host, self.port))
        self._thread.start()

    @property
    def hostport(self):
        return "[%s]:%d" % (self.host, self.port) if ":" in self.host else "%s:%d" % (self.host, self.port)

    @property
    def count(self):
        with self._cond:
            return len(self.peers)

    def wait_connections(self, n=1, timeout=10.0):
        """Waits until at least n connections were accepted; returns the count."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.peers) >= n, timeout)
            return len(self.peers)

    def wait_settled(self, timeout=10.0):
        """Once whoever connected has gone (a killed proxy, say): waits until
        no connection waits in the listen queue and every accepted one has
        been handled to its end, so .count and what handle() recorded are
        final. Returns .count."""
        def settled():
            with self._cond:
                before, busy = len(self.peers), len(self._conns)
            queued = accept_queue(self.port)
            with self._cond:  # nothing accepted while the queue was read
                after = len(self.peers)
            return busy == 0 and queued == 0 and before == after
        wait_until(settled, timeout, "%s origin on port %d to finish its connections"
                   % (self.name, self.port), interval=0.02)
        return self.count

    def _accept_loop(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with self._cond:
                if self._closing:
                    conn.close()
                    return
                self.peers.append(peer)
                self._conns.add(conn)
                self._cond.notify_all()
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handle(conn)
        except (OSError, EOFError, ssl.SSLError, ValueError) as e:
            with self._cond:
                self.errors.append(repr(e))
        finally:
            with self._cond:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        with self._cond:
            self._closing = True
            conns = list(self._conns)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)


class EchoOrigin(Origin):
    """Echoes every byte back; at EOF from the client shuts its write side."""

    name = "echo"

    def handle(self, conn):
        while True:
            data = conn.recv(262144)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


class SinkOrigin(Origin):
    """Reads the client's bytes and answers one line b"<bytes> <sha256 hex>\n",
    then closes.

    framed=False: reads until the client's EOF, so the answer only comes
    after the client has shut its write side (needs a working half-close
    all the way through).
    framed=True: the client first sends the length as 8 bytes big-endian;
    the answer comes after that many bytes (for paths, like tailscaled's
    proxy, that close both directions at the first EOF)."""

    name = "sink"

    def __init__(self, host="127.0.0.1", port=0, framed=False):
        self.framed = framed
        super().__init__(host, port)

    def handle(self, conn):
        h = hashlib.sha256()
        n = 0
        want = None
        if self.framed:
            (want,) = struct.unpack("!Q", recv_exact(conn, 8))
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while want is None or n < want:
            got = conn.recv_into(view if want is None else view[:min(len(buf), want - n)])
            if not got:
                break
            h.update(view[:got])
            n += got
        conn.sendall(b"%d %s\n" % (n, h.hexdigest().encode()))
        conn.shutdown(socket.SHUT_WR)


def random_chunks(total, seed, chunk=1 << 20):
    """Deterministic pseudo-random bytes, total of them, in chunks."""
    rnd = random.Random(seed)
    left = total
    while left > 0:
        n = min(chunk, left)
        yield rnd.randbytes(n)
        left -= n


class SourceOrigin(Origin):
    """On each connection sends `size` pseudo-random bytes, then closes.
    .sent holds (bytes, sha256 hex) per finished connection."""

    name = "source"

    def __init__(self, size, host="127.0.0.1", port=0, seed=1):
        self.size = size
        self.seed = seed
        self.sent = []
        super().__init__(host, port)

    def handle(self, conn):
        h = hashlib.sha256()
        n = 0
        for chunk in random_chunks(self.size, self.seed):
            h.update(chunk)
            conn.sendall(chunk)
            n += len(chunk)
        conn.shutdown(socket.SHUT_WR)
        with self._cond:
            self.sent.append((n, h.hexdigest()))
            self._cond.notify_all()


class _HTTPHandler(http.server.BaseHTTPRequestHandler):
    """Answers every method on every path with a JSON description of the
    request it received (see HTTPOrigin)."""

    protocol_version = "HTTP/1.1"
    server_version = "tf-origin"

    def log_message(self, *args):
        pass

    def _body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def _answer(self):
        body = self._body()
        origin = self.server.origin
        req = {
            "origin": origin.label,
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "tls": origin.tls,
        }
        with origin._cond:
            origin.requests.append(req)
        if self.path.startswith("/bytes/"):
            payload = b"x" * int(self.path.split("/")[2])
            ctype = "application/octet-stream"
        else:
            payload = (json.dumps(req) + "\n").encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HTTPOrigin(Origin):
    """An HTTP (or, with tls=(cert, key), HTTPS) origin.

    Every request is answered 200 with a JSON body describing what arrived:
    {"origin": label, "method", "path" (as on the request line, so
    origin-form vs absolute-form is visible), "headers": [[name, value]...],
    "body_len", "body_sha256", "tls"}. GET /bytes/N answers N bytes of "x".
    .requests lists those descriptions; .count/.peers count TCP connections.
    """

    name = "http"

    def __init__(self, host="127.0.0.1", port=0, tls=None, label=None):
        self.tls = tls is not None
        self.label = label or ("https" if tls else "http") + "-origin"
        self.requests = []
        self._ctx = None
        if tls:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(*tls)
        self._httpd = _Server((host, 0), _HTTPHandler, bind_and_activate=False)
        self._httpd.socket.close()  # connections come from Origin's listener
        self._httpd.origin = self
        super().__init__(host, port)

    def handle(self, conn):
        conn.settimeout(30)
        if self._ctx:
            conn = self._ctx.wrap_socket(conn, server_side=True)
        try:
            _HTTPHandler(conn, conn.getpeername(), self._httpd)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @property
    def url(self):
        return "%s://%s/" % ("https" if self.tls else "http", self.hostport)


# ------------------------------------------------------------------ processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _as_user(name):
    import pwd
    pw = pwd.getpwnam(name)

    def pre():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        _die_with_parent()  # after setuid, which clears it
    return pre


class Proc:
    """A child process whose stdout+stderr go to a log file; killed if the
    test runner dies (PR_SET_PDEATHSIG). user= runs it as that user."""

    def __init__(self, argv, log_path, env=None, user=None, cwd=None, stdin=subprocess.DEVNULL):
        self.argv = [str(a) for a in argv]
        self.log_path = str(log_path)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdin=stdin, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd,
            preexec_fn=_as_user(user) if user else _die_with_parent)
        self.pid = self.proc.pid

    def poll(self):
        return self.proc.poll()

    @property
    def returncode(self):
        return self.proc.returncode

    def log(self, tail=None):
        if not self._log.closed:
            self._log.flush()
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return data if tail is None else data[-tail:]

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends sig (if running) and waits; SIGKILL after timeout. Returns
        the exit status (negative: killed by that signal)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


# Exit statuses sanitizer_env() gives ASan, UBSan and LSan.
SANITIZER_EXIT_CODES = (86, 87, 88, 89)


def sanitizer_env(env):
    """env (a dict, changed and returned) with the sanitizer options every
    tailfence the suite starts gets: with the sanitizer build a report makes
    it exit with one of SANITIZER_EXIT_CODES; other builds ignore them.
    Values env already has are kept."""
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:abort_on_error=0:"
                   "exitcode=86:detect_stack_use_after_return=1:strict_string_checks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")
    env.setdefault("LSAN_OPTIONS", "exitcode=88")
    tsan = "halt_on_error=0:exitcode=89:second_deadlock_stack=1"
    supp = os.path.join(os.path.dirname(__file__), "..", "tsan.supp")
    if os.path.exists(supp):
        tsan += ":suppressions=" + os.path.abspath(supp)
    env.setdefault("TSAN_OPTIONS", tsan)
    for sym in ("/usr/bin/llvm-symbolizer", "/usr/bin/llvm-symbolizer-14"):
        if os.path.exists(sym):
            env.setdefault("ASAN_SYMBOLIZER_PATH", sym)
            break
    return env


# ---------------------------------------------------------------- Prometheus

PROMETHEUS = "/usr/bin/prometheus"


def parse_metrics(text):
    """{"name{labels}": value} of a Prometheus exposition (labels as written)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def metrics(port):
    """parse_metrics() of GET /metrics on 127.0.0.1:port (tailfence --admin)."""
    status, text, _ = http_get(port, "/metrics")
    assert status == 200, "GET /metrics answered %d: %s" % (status, text[:500])
    return parse_metrics(text)


def http_get(port, path, method="GET", timeout=10):
    """(status, body text, headers) of one request to 127.0.0.1:port."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class Prometheus:
    """A real Prometheus server on 127.0.0.1 scraping one target every second."""

    def __init__(self, workdir, target):
        self.port = free_port()
        self.target = target
        conf = os.path.join(workdir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: tailfence\n    scrape_interval: 1s\n"
                    "    scrape_timeout: 1s\n    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        data = os.path.join(workdir, "prometheus-data")
        os.makedirs(data, exist_ok=True)
        self.proc = Proc([PROMETHEUS, "--config.file=" + conf, "--storage.tsdb.path=" + data,
                          "--web.listen-address=127.0.0.1:%d" % self.port,
                          "--storage.tsdb.retention.time=1h"],
                         os.path.join(workdir, "prometheus.log"))
        try:
            wait_listening(self.port, 60, self.proc.proc, "prometheus")
            # it listens before its storage is open, answering 503 meanwhile
            wait_until(lambda: http_get(self.port, "/-/ready")[0] == 200, 60,
                       "prometheus ready")
        except BaseException:
            self.proc.stop()
            raise

    def api(self, path, params):
        """(HTTP status, parsed JSON answer) of GET /api/v1/<path>?params;
        params may be a dict or a list of pairs (repeated keys)."""
        status, body, _ = http_get(self.port, "/api/v1/%s?%s" % (
            path, urllib.parse.urlencode(params)), timeout=30)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"status": "error", "error": body}

    def query(self, expr):
        """The API's answer to an instant query (parsed JSON)."""
        status, answer = self.api("query", {"query": expr})
        assert status == 200, answer
        return answer

    def value(self, expr):
        """The single sample's value, or None while there is none."""
        r = self.query(expr)["data"]["result"]
        return float(r[0]["value"][1]) if len(r) == 1 else None

    def wait_value(self, expr, want, timeout=60):
        return wait_until(lambda: self.value(expr) == want and self.query(expr), timeout,
                          "%s == %s in Prometheus" % (expr, want))

    def close(self):
        self.proc.stop()


# ---------------------------------------------------------------------- audit

def read_audit(path):
    """The audit file's records, one dict per JSON line. A line that is not
    a JSON object fails the test (the trail must always be parseable); a last
    line without its newline is still being written and is skipped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    records = []
    lines = data.split(b"\n")
    for i, line in enumerate(lines[:-1] if not data.endswith(b"\n") else lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise AssertionError("%s line %d is not JSON (%s): %r" % (path, i + 1, e, line[:200]))
        assert isinstance(rec, dict), "%s line %d is not a JSON object" % (path, i + 1)
        records.append(rec)
    return records


def audit_records(lines):
    """The JSON objects among lines (text lines of a process's output, where
    the audit trail's stdout sink interleaves with other lines); anything
    else is skipped."""
    recs = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    return recs


# Lines that mean AddressSanitizer, LeakSanitizer or UBSan reported something.
SANITIZER_MARKERS = (
    "WARNING: ThreadSanitizer",
    "ERROR: ThreadSanitizer",
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "WARNING: AddressSanitizer",
    "runtime error:",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "LeakSanitizer has encountered a fatal error",
)


def sanitizer_report(text):
    """The sanitizer report in a process's output, or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            start = text.rfind("\n", 0, max(0, i - 2000)) + 1
            return text[start:start + 6000]
    return None


# -------------------------------------------------------------------- clients

class CurlResult:
    """What curl did: returncode, http_code (last response; 0 if none),
    connect_code (the proxy's answer to CONNECT; 0 if none), body (bytes),
    stderr (text)."""

    def __init__(self, returncode, http_code, connect_code, body, stderr, argv):
        self.returncode = returncode
        self.http_code = http_code
        self.connect_code = connect_code
        self.body = body
        self.stderr = stderr
        self.argv = argv

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "curl exit %d http %d connect %d: %s\nargv: %s\nbody: %r" % (
            self.returncode, self.http_code, self.connect_code, self.stderr.strip(),
            " ".join(self.argv), self.body[:300])


# ---------------------------------------------------------------- DNS server (UDP)

class TinyDNS:
    """A UDP DNS server on 127.0.0.1 answering A and AAAA queries from
    `records` ({"name": ["127.0.0.1", "::1"], "*": [...] for any name});
    NXDOMAIN for unknown names; names under one of `silent` (suffixes)
    never get an answer, like a nameserver that has gone away. The question
    is echoed byte for byte (the resolver may randomise its case).
    .queries lists (name, qtype)."""

    def __init__(self, records, silent=()):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.silent = tuple(x.lower().strip(".") for x in silent)
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                reply = self._answer(data)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            if reply is None:
                continue
            try:
                self.sock.sendto(reply, peer)
            except OSError:
                return

    def _answer(self, q):
        qid, flags, qdcount = struct.unpack("!HHH", q[:6])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii"))
            i += 1 + q[i]
        qtype, _qclass = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        with self._lock:
            self.queries.append((name, qtype))
        if any(name == x or name.endswith("." + x) for x in self.silent):
            return None
        addrs = self.records.get(name, self.records.get("*"))
        answers = b""
        n = 0
        for a in addrs or []:
            fam, t = (socket.AF_INET6, 28) if ":" in a else (socket.AF_INET, 1)
            if t != qtype:
                continue
            rdata = socket.inet_pton(fam, a)
            answers += struct.pack("!HHHIH", 0xC00C, t, 1, 60, len(rdata)) + rdata
            n += 1
        rcode = 0 if addrs is not None else 3
        rflags = 0x8000 | (flags & 0x0100) | 0x0080 | rcode
        return struct.pack("!HHHHHH", qid, rflags, 1, n, 0, 0) + question + answers

    def asked(self, name):
        with self._lock:
            return [t for n, t in self.queries if n == name.lower().rstrip(".")]

    def close(self):
        self.sock.close()


# ------------------------------------------------- one-shot verdict clients

def socks5_rep(d, host, port, atyp=None):
    """The SOCKS5 reply code (after an echo check when 0), or None when the
    daemon closed without a reply."""
    with d.connect() as s:
        try:
            rep, _, _ = socks5_connect(s, host, port, atyp=atyp)
        except (EOFError, ConnectionResetError):
            return None
        if rep == 0:
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
        return rep


def http_connect_status(d, authority):
    with d.connect() as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority)).encode())
        status, _, _, rest = read_http_response(s, body=False)
        if status == 200:
            s.sendall(b"ping")
            assert rest + recv_exact(s, 4 - len(rest)) == b"ping"
        return status


def http_get_status(d, authority):
    # The echo origin would echo the request line back; a status line from
    # the proxy itself is what matters for denied requests.
    with d.connect() as s:
        s.sendall(("GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                   % (authority, authority)).encode())
        data = s.recv(65536)
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else None


def socks4a_code(d, host, port):
    with d.connect() as s:
        code = socks4_connect(s, host, port)
        if code == 0x5A:
            s.sendall(b"ping")
            assert recv_exact(s, 4) == b"ping"
        return code


def clean_env(**extra):
    """os.environ without any *_proxy variable, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def curl(url, *args, proxy=None, cacert=None, timeout=30, env=None, out=None):
    """Runs curl once and returns a CurlResult. proxy: "socks5h://127.0.0.1:P",
    "http://127.0.0.1:P", ...; cacert: CA file for HTTPS origins; args:
    extra curl options (e.g. "--proxytunnel", "-d", "body")."""
    import tempfile
    fd, body_path = tempfile.mkstemp(prefix="curl-body-")
    os.close(fd)
    argv = ["curl", "-sS", "--max-time", str(timeout), "-o", out or body_path,
            "-w", "%{http_code} %{http_connect}"]
    if proxy:
        argv += ["--proxy", proxy]
    else:
        argv += ["--noproxy", "*"]
    if cacert:
        argv += ["--cacert", str(cacert)]
    argv += [str(a) for a in args] + [url]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       env=env or clean_env(), timeout=timeout + 30)
    with open(body_path, "rb") as f:
        body = f.read()
    os.unlink(body_path)
    codes = p.stdout.decode().split()
    http_code = int(codes[0]) if codes else 0
    connect_code = int(codes[1]) if len(codes) > 1 else 0
    return CurlResult(p.returncode, http_code, connect_code, body,
                      p.stderr.decode("utf-8", "replace"), argv)


def run_python(code, env=None, timeout=60):
    """Runs code with Debian's /usr/bin/python3 in a fresh process; returns
    the CompletedProcess (text)."""
    return subprocess.run([PY, "-c", code], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env or clean_env(), timeout=timeout)
