"""
audit.on_failure with a full filesystem: a 64 KiB tmpfs mounted inside the
test's mount namespace (scripts/test runs the suite under
`unshare --net --mount` as root). With "deny" new connections are refused
while the trail cannot be written, the operator log says why, and they are
served again once space is freed; with "continue" they keep being served.

With the default durability ("written") the first refusal may come from the
write itself: the connection waited for its decision record, the write
failed, and its close record says so. Connections that arrive after that
are refused at once with a decision record of their own (guard "audit").
"""

import os
import subprocess

import pytest

from helpers import recv_exact, socks5_connect, wait_until


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tailfence-audit", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a tmpfs (the suite needs root and `unshare --mount`): "
                    + r.stderr)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path):
    """Writes a file until the filesystem is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
        try:
            while True:
                f.write(b"x")
        except OSError:
            pass


def _try(d, origin):
    """One SOCKS5 CONNECT; True if it was served."""
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, origin.host, origin.port)
        if rep != 0:
            return False
        s.sendall(b"ping")
        return recv_exact(s, 4) == b"ping"


def test_deny_refuses_connections_while_disk_is_full(tailfence, echo_origin, tiny_fs):
    log = str(tiny_fs / "audit.jsonl")
    d = tailfence("--audit-log", log, "--audit-on-failure", "deny")
    assert _try(d, echo_origin), "served before the disk is full"
    filler = str(tiny_fs / "filler")
    _fill(filler)
    # Records still fit in the file's last page for a while; then the writer
    # fails and new connections are refused.
    wait_until(lambda: not _try(d, echo_origin), 20,
               "connections to be refused with a full disk and on_failure=deny",
               detail=lambda: d.log()[-3000:])
    # the trail is now known to be unhealthy: refused before any write
    assert not _try(d, echo_origin), "served again with the disk still full"
    out = d.log()
    assert "No space left on device" in out and "refusing new connections" in out, out[-3000:]

    os.unlink(filler)
    wait_until(lambda: _try(d, echo_origin), 20,
               "connections to be served again after space was freed",
               detail=lambda: d.log()[-3000:])
    assert "writable again" in d.log()
    d.stop()
    recs = d.audit()
    refused = [r for r in recs if r["type"] == "decision" and r.get("guard") == "audit"]
    assert refused, "no decision record says the connection was refused for the audit trail"
    assert all(r["verdict"] == "deny" for r in refused)
    closes = [r for r in recs if r["type"] == "close" and r["end"] == "denied"]
    assert closes and all(r["error"].startswith("audit trail unavailable") for r in closes), closes


def test_continue_keeps_serving_with_a_full_disk(tailfence, echo_origin, tiny_fs):
    log = str(tiny_fs / "audit.jsonl")
    d = tailfence("--audit-log", log, "--audit-on-failure", "continue")
    _fill(str(tiny_fs / "filler"))
    for _ in range(30):
        assert _try(d, echo_origin), "on_failure=continue refused a connection"
    wait_until(lambda: "No space left on device" in d.log(), 20,
               "the operator log to say the disk is full", detail=lambda: d.log()[-3000:])
    os.unlink(str(tiny_fs / "filler"))
    d.stop()
