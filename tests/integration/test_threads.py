"""Several event loops (--threads N): what an operator of a busy gateway
notices. Every loop takes connections (the kernel spreads them over one
SO_REUSEPORT socket per loop), the audit trail stays one stream whose
HMAC chain verifies and whose connection ids are unique, a reload reaches
every loop, the connection cap counts every loop, and a port that another
process already listens on is refused, as it is with one loop.

The rest of the suite runs with the thread count of TAILFENCE_TEST_THREADS
(scripts/test: 2 for the plain build, 1 for the ASan build), so every
other behaviour is checked with several loops too.
"""
import json
import os
import select
import signal
import socket
import threading
import time

import pytest

from helpers import free_port, metrics, recv_exact, socks5_connect
from helpers import wait_listening, wait_until

N_CLIENTS = 8
PER_CLIENT = 40


def _echo_once(d, origin, payload):
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, origin.host, origin.port)
        if rep != 0:
            return rep
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload
        return 0


def _load(d, origin, clients=N_CLIENTS, each=PER_CLIENT):
    """clients threads, each making `each` SOCKS5 connections; returns the
    reply codes."""
    reps = []
    lock = threading.Lock()

    def run(i):
        for j in range(each):
            rep = _echo_once(d, origin, b"c%d-%d" % (i, j))
            with lock:
                reps.append(rep)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return reps


@pytest.fixture
def key(tmp_path):
    k = tmp_path / "audit.key"
    k.write_bytes(os.urandom(32).hex().encode() + b"\n")
    k.chmod(0o600)
    return str(k)


def test_every_loop_serves_and_the_trail_stays_one_chain(tailfence, tailfence_cli, origins,
                                                         tmp_path, key):
    origin = origins.echo()
    admin = free_port()
    path = str(tmp_path / "audit.jsonl")
    d = tailfence("--threads", "3", "--admin", "127.0.0.1:%d" % admin, "--audit-log", path,
                  "--audit-hmac-key", key)
    wait_listening(admin, 15, d.proc.proc, "tailfence admin")
    assert "3 event loops (threads)" in d.log()
    names = sorted(open("/proc/%d/task/%s/comm" % (d.proc.pid, t)).read().strip()
                   for t in os.listdir("/proc/%d/task" % d.proc.pid))
    assert [n for n in names if n.startswith("tf-loop-")] == ["tf-loop-1", "tf-loop-2"], names

    reps = _load(d, origin)
    assert reps == [0] * (N_CLIENTS * PER_CLIENT)
    total = N_CLIENTS * PER_CLIENT
    d.wait_audit(type="close", n=total)

    m = metrics(admin)
    per_loop = [m['tailfence_loop_connections_total{loop="%d"}' % i] for i in range(3)]
    assert sum(per_loop) == m["tailfence_connections_accepted_total"] == total, per_loop
    # 320 connections from distinct source ports: each loop's socket got some
    assert all(n > 0 for n in per_loop), per_loop

    d.stop()
    recs = d.audit()
    ids = [r["conn"] for r in recs if r["type"] == "decision"]
    assert len(ids) == total and len(set(ids)) == total
    closes = [r["conn"] for r in recs if r["type"] == "close"]
    assert sorted(closes) == sorted(ids)
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    p = tailfence_cli("audit", "verify", "--strict", "--key", key, path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_reload_reaches_every_loop(tailfence, origins, tmp_path):
    a = origins.echo("127.0.0.1")
    b = origins.echo("127.0.0.2")
    cfg = tmp_path / "policy.json"

    def write(host, port):
        cfg.write_text(json.dumps({"lift_guards": ["loopback"], "rules": [
            {"name": "only", "action": "accept", "dst": ["%s:%d" % (host, port)]}]}))

    write(a.host, a.port)
    d = tailfence("--threads", "2", "--config", cfg, allow=(), lift_guards=())
    assert _load(d, b, clients=4, each=10) == [2] * 40
    write(b.host, b.port)
    d.proc.proc.send_signal(signal.SIGHUP)
    d.wait_audit(type="reload", n=1)
    # every new connection, whichever loop takes it, has the new policy
    assert _load(d, b, clients=4, each=10) == [0] * 40
    assert _load(d, a, clients=4, each=10) == [2] * 40


@pytest.mark.parametrize("threads", ["1", "2"])
def test_the_connection_cap_counts_every_loop(tailfence, origins, threads):
    """limits.max_connections: more clients wait, unanswered, and are
    served as places free up, however many loops share the cap."""
    origin = origins.echo()
    d = tailfence("--threads", threads, "--max-connections", "4")
    held = []
    for i in range(4):
        s = d.connect()
        rep, _, _ = socks5_connect(s, origin.host, origin.port)
        assert rep == 0
        held.append(s)
    wait_until(lambda: "pausing accept" in d.log(), 10, "accept to pause at the cap")
    # a fifth client is not served while four are open, on whichever loop
    extra = []
    for i in range(6):
        s = socket.create_connection((d.host, d.port), timeout=10)
        s.settimeout(0.5)
        s.sendall(b"\x05\x01\x00")
        extra.append(s)
    for s in extra:
        with pytest.raises(socket.timeout):
            s.recv(2)
    for s in held:
        s.close()
    # once they are gone every waiting client is served, as places free up:
    # each one answered is closed, which frees a place for the next (with
    # several loops they are not served in the order they came)
    waiting = list(extra)
    deadline = time.monotonic() + 30
    while waiting and time.monotonic() < deadline:
        ready, _, _ = select.select(waiting, [], [], 1)
        for s in ready:
            s.settimeout(10)
            assert recv_exact(s, 2) == b"\x05\x00"
            s.close()
            waiting.remove(s)
    assert not waiting, "%d of %d waiting clients were never served" % (len(waiting), len(extra))


def test_a_port_another_process_shares_is_refused(tailfence):
    """SO_REUSEPORT would let two daemons (or anything else of this user
    that asked for it) share a port silently; tailfence checks first."""
    port = free_port()
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", port))
    other.listen(8)
    try:
        d = tailfence("--threads", "2", "--listen", "127.0.0.1:%d" % port, wait=False)
        d.wait_exit(expect=1)
        assert "cannot listen on 127.0.0.1:%d: Address already in use" % port in d.log(), d.log()
    finally:
        other.close()


def test_threads_is_bound_at_start(tailfence, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"threads": 2}))
    d = tailfence("--config", cfg, env={"TAILFENCE_THREADS": None})
    cfg.write_text(json.dumps({"threads": 3}))
    d.proc.proc.send_signal(signal.SIGHUP)
    rec = d.wait_audit(type="reload", n=1)[0]
    assert "threads: 2 -> 3: that needs a restart; nothing was changed" in rec["detail"], rec
