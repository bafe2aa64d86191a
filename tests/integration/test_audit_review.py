"""
`tailfence audit` on a recorded session: a daemon serves allowed and denied
connections from two client addresses; then the review filters, the summary
and verify are checked against what the test knows it did. `audit tail`
follows the live file across a rotation.
"""

import gzip
import json
import os
import signal
import socket
import subprocess

from helpers import recv_exact, socks5_connect, wait_until


def _conn(d, src, host, port, payload=b""):
    """A SOCKS5 CONNECT from source address src; returns the reply code."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect((d.host, d.port))
    with s:
        rep, _, _ = socks5_connect(s, host, port)
        if rep == 0 and payload:
            s.sendall(payload)
            assert recv_exact(s, len(payload)) == payload
        return rep


def _json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def test_review_filters_summary_and_verify(tailfence, tailfence_cli, echo_origin, tmp_path):
    key = tmp_path / "audit.key"
    key.write_text(os.urandom(16).hex())
    key.chmod(0o600)
    log = str(tmp_path / "audit.jsonl")
    d = tailfence("--audit-log", log, "--audit-hmac-key", str(key))
    # 127.0.0.1: 3 allowed (100 bytes each way); 127.0.0.2: 2 allowed, 2 denied
    for _ in range(3):
        assert _conn(d, "127.0.0.1", echo_origin.host, echo_origin.port, b"a" * 100) == 0
    for _ in range(2):
        assert _conn(d, "127.0.0.2", echo_origin.host, echo_origin.port, b"b" * 10) == 0
    assert _conn(d, "127.0.0.2", "127.0.1.1", 22) != 0
    assert _conn(d, "127.0.0.2", "127.0.1.2", 5432) != 0
    d.wait_audit(type="close", n=7)
    d.stop()

    p = tailfence_cli("audit", "--json", log)
    assert p.returncode == 0, p.stderr
    recs = _json_lines(p.stdout)
    assert [r["type"] for r in recs].count("decision") == 7

    p = tailfence_cli("audit", "--json", "--client", "127.0.0.2", log)
    recs = _json_lines(p.stdout)
    assert [r["type"] for r in recs].count("decision") == 4
    assert [r["type"] for r in recs].count("close") == 4
    assert all(r["client"].startswith("127.0.0.2:") for r in recs if r["type"] == "decision")

    p = tailfence_cli("audit", "--json", "--verdict", "deny", log)
    recs = _json_lines(p.stdout)
    dec = [r for r in recs if r["type"] == "decision"]
    assert sorted(r["addr"] for r in dec) == ["127.0.1.1", "127.0.1.2"]

    p = tailfence_cli("audit", "--json", "--dst", "127.0.1.0/24", "--proto", "socks5", log)
    assert sorted(r["port"] for r in _json_lines(p.stdout) if r["type"] == "decision") == [22, 5432]

    p = tailfence_cli("audit", "--json", "--since", "1h", "--client", "127.0.0.1", log)
    assert [r["type"] for r in _json_lines(p.stdout)].count("close") == 3
    p = tailfence_cli("audit", "--json", "--until", "1h", log)
    assert p.stdout == ""

    # the table and gzip input
    gz = log + ".gz"
    with open(log, "rb") as f, gzip.open(gz, "wb") as g:
        g.write(f.read())
    p = tailfence_cli("audit", "--verdict", "deny", gz)
    assert p.returncode == 0 and "127.0.1.1:22" in p.stdout and "deny" in p.stdout, p.stdout

    p = tailfence_cli("audit", "summary", log)
    assert p.returncode == 0, p.stderr
    assert "Connections: 5 allowed, 2 denied, 7 closed; 320 B up, 320 B down" in p.stdout, p.stdout
    lines = p.stdout.splitlines()
    by_client = lines[lines.index("Allowed connections by client") + 2:]
    assert by_client[0].split()[:4] == ["127.0.0.1", "3", "300", "B"], p.stdout
    denied = lines[lines.index("Denied attempts by client") + 2]
    assert denied.split() == ["127.0.0.2", "2"], p.stdout

    p = tailfence_cli("audit", "verify", "--key", str(key), log)
    assert p.returncode == 0, p.stdout
    edited = tmp_path / "edited.jsonl"
    edited.write_text(open(log).read().replace('"verdict":"deny"', '"verdict":"allow"', 1))
    p = tailfence_cli("audit", "verify", "--key", str(key), str(edited))
    assert p.returncode == 1 and "edited record" in p.stdout, p.stdout


def test_tail_follows_across_rotation(tailfence, tailfence_bin, echo_origin, tmp_path):
    log = str(tmp_path / "audit.jsonl")
    d = tailfence("--audit-log", log)
    assert _conn(d, "127.0.0.1", echo_origin.host, echo_origin.port, b"x") == 0
    d.wait_audit(type="close", n=1)
    out = open(tmp_path / "tail.out", "wb")
    tail = subprocess.Popen([tailfence_bin, "audit", "tail", "--json", log], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def seen():
            with open(tmp_path / "tail.out") as f:
                return [json.loads(l) for l in f if l.strip()]

        def wait_closes(n):
            wait_until(lambda: [r["type"] for r in seen()].count("close") >= n, 20,
                       "audit tail to print %d close record(s)" % n,
                       detail=lambda: "\n".join(map(str, seen())))

        wait_closes(1)
        os.rename(log, log + ".1")
        os.kill(d.proc.proc.pid, signal.SIGUSR1)
        wait_until(lambda: os.path.exists(log), 10, "the daemon to reopen %s after SIGUSR1" % log,
                   interval=0.02)
        assert _conn(d, "127.0.0.1", echo_origin.host, echo_origin.port, b"y") == 0
        d.wait_audit(type="close", n=1)  # in the new file
        wait_closes(2)
        conns = sorted({r["conn"] for r in seen() if r["type"] == "close"})
        assert len(conns) == 2
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 0
        out.close()
    d.stop()
