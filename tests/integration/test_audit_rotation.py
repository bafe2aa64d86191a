"""
Audit trail under load: thousands of connections while the file is rotated
logrotate-style (rename, then SIGUSR1) many times. No record may be lost:
the decision and close records, over all the files, equal the connections
made, and the HMAC chain verifies across the rotated files in order.
"""

import os
import signal
import threading
import time

from helpers import read_audit, recv_exact, socks5_connect, wait_until

CONNECTIONS = 3000
WORKERS = 8


def _key(tmp_path):
    key = tmp_path / "audit.key"
    key.write_bytes(os.urandom(32).hex().encode() + b"\n")
    key.chmod(0o600)
    return str(key)


def _one_connection(d, origin, i):
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, origin.host, origin.port)
        assert rep == 0, "connection %d: SOCKS5 reply 0x%02x" % (i, rep)
        payload = b"conn %06d" % i
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload


def _all_records(paths):
    out = []
    for p in paths:
        out += read_audit(p)
    return out


def test_rotation_under_load_loses_no_record(tailfence, tailfence_cli, echo_origin, tmp_path):
    key = _key(tmp_path)
    live = str(tmp_path / "audit.jsonl")
    d = tailfence("--audit-log", live, "--audit-hmac-key", key)

    errors = []
    counter = iter(range(CONNECTIONS))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                _one_connection(d, echo_origin, i)
            except Exception as e:  # reported below with the first few
                errors.append("%d: %r" % (i, e))

    rotated = []
    done = threading.Event()

    def rotator():
        # One rotation every 50 ms or so while the workers run, each once
        # the daemon has reopened the file after the one before.
        n = 0
        while not done.is_set():
            time.sleep(0.05)
            if not os.path.exists(live):
                continue  # the daemon has not reopened yet (logrotate would wait too)
            name = "%s.%03d" % (live, n)
            os.rename(live, name)
            rotated.append(name)
            os.kill(d.proc.proc.pid, signal.SIGUSR1)
            n += 1

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    rot = threading.Thread(target=rotator)
    rot.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    rot.join()
    assert not errors, "%d connections failed, first: %s" % (len(errors), errors[:5])
    assert len(rotated) >= 5, "only %d rotations happened during the run" % len(rotated)

    d.stop()
    files = rotated + [live]
    recs = _all_records(files)
    decisions = [r for r in recs if r["type"] == "decision"]
    closes = [r for r in recs if r["type"] == "close"]
    assert len(decisions) == CONNECTIONS, "decision records: %d for %d connections" % (
        len(decisions), CONNECTIONS)
    assert len(closes) == CONNECTIONS, "close records: %d for %d connections" % (
        len(closes), CONNECTIONS)
    assert len({r["conn"] for r in decisions}) == CONNECTIONS
    assert {r["conn"] for r in closes} == {r["conn"] for r in decisions}
    checkpoints = [r for r in recs if r["type"] == "checkpoint"]
    assert [c["reason"] for c in checkpoints] == ["rotate"] * len(rotated) + ["shutdown"]

    # Every rotated file ends with its rotate checkpoint.
    for name in rotated:
        last = read_audit(name)[-1]
        assert last["type"] == "checkpoint" and last["reason"] == "rotate", name

    p = tailfence_cli("audit", "verify", "--key", key, *files)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "verified: %d records" % len(recs) in p.stdout

    # Rotated files out of order, or one missing, do not verify.
    p = tailfence_cli("audit", "verify", "--key", key, files[1], files[0], *files[2:])
    assert p.returncode == 1, p.stdout + p.stderr
    p = tailfence_cli("audit", "verify", "--key", key, files[0], *files[2:])
    assert p.returncode == 1 and "deleted record(s)" in p.stdout, p.stdout + p.stderr


def test_sighup_also_reopens_and_restart_continues_chain(tailfence, tailfence_cli, echo_origin,
                                                         tmp_path):
    key = _key(tmp_path)
    live = str(tmp_path / "audit.jsonl")
    d = tailfence("--audit-log", live, "--audit-hmac-key", key)
    _one_connection(d, echo_origin, 1)
    d.wait_audit(type="close")
    os.rename(live, live + ".1")
    os.kill(d.proc.proc.pid, signal.SIGHUP)
    wait_until(lambda: os.path.exists(live), 10, "the daemon to reopen %s after SIGHUP" % live,
               interval=0.01)
    _one_connection(d, echo_origin, 2)
    d.stop()
    # a second run appends to the same file and continues its chain
    d2 = tailfence("--audit-log", live, "--audit-hmac-key", key)
    _one_connection(d2, echo_origin, 3)
    d2.stop()
    p = tailfence_cli("audit", "verify", "--key", key, live + ".1", live)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "new chain" not in p.stdout, p.stdout
    starts = [r for r in read_audit(live) if r["type"] == "start"]
    assert len(starts) == 1 and "prev" in starts[0], starts
