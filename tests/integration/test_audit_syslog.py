"""
Audit records to a real rsyslog (Debian's rsyslogd) listening on loopback UDP
and TCP, started by the test with its own configuration inside the test's
network namespace: every record arrives as an RFC 5424 message (APP-NAME
tailfence, MSGID audit, facility authpriv) whose MSG is the exact line the
file sink wrote.
"""

import json
import os
import shutil
import socket

import pytest

from helpers import Proc, free_port, recv_exact, socks5_connect, wait_listening, wait_until

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rsyslog(tmp_path):
    if not os.access(RSYSLOGD, os.X_OK):
        pytest.fail("rsyslogd missing: apt-get install rsyslog")
    work = tmp_path / "rsyslog"
    work.mkdir()
    udp, tcp = _free_udp_port(), free_port()
    out = work / "received.log"
    conf = work / "rsyslog.conf"
    conf.write_text("""
global(workDirectory="%(work)s" maxMessageSize="64k")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="%(udp)d")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%(tcp)d")
template(name="tf" type="string"
         string="%%app-name%% %%msgid%% %%syslogfacility-text%% %%syslogseverity-text%% %%msg%%\\n")
if $app-name == "tailfence" then {
  action(type="omfile" file="%(out)s" template="tf" flushOnTXEnd="on")
}
""" % {"work": work, "udp": udp, "tcp": tcp, "out": out})
    proc = Proc([RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
                work / "rsyslogd.log")
    wait_listening(tcp, 30, proc.proc, "rsyslogd")
    wait_listening(udp, 30, proc.proc, "rsyslogd", udp=True)

    class R:
        pass
    r = R()
    r.udp, r.tcp, r.out, r.proc = udp, tcp, out, proc

    def received():
        try:
            lines = out.read_text().splitlines()
        except FileNotFoundError:
            return []
        msgs = []
        for line in lines:
            app, msgid, fac, sev, msg = line.split(" ", 4)
            msgs.append((app, msgid, fac, sev, msg.strip()))
        return msgs
    r.received = received
    yield r
    proc.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_records_reach_rsyslog(tailfence, echo_origin, rsyslog, tmp_path, transport):
    key = tmp_path / "audit.key"
    key.write_text(os.urandom(16).hex())
    key.chmod(0o600)
    port = rsyslog.udp if transport == "udp" else rsyslog.tcp
    d = tailfence("--audit-syslog", "%s:127.0.0.1:%d" % (transport, port),
                  "--audit-hmac-key", str(key))
    for i in range(5):
        with d.connect() as s:
            rep, _, _ = socks5_connect(s, echo_origin.host, echo_origin.port)
            assert rep == 0
            s.sendall(b"hi %d" % i)
            assert recv_exact(s, 4) == b"hi %d" % i
    d.wait_audit(type="close", n=5)
    d.stop()

    with open(d.audit_path) as f:
        file_lines = [l.rstrip("\n") for l in f]
    wait_until(lambda: len(rsyslog.received()) >= len(file_lines), 15,
               "rsyslog to receive all %d records" % len(file_lines),
               detail=lambda: "received %d" % len(rsyslog.received()))
    got = rsyslog.received()
    assert [m[4] for m in got] == file_lines, (
        "rsyslog received %d messages, the file has %d records:\n%s\n---\n%s"
        % (len(got), len(file_lines), "\n".join(m[4] for m in got[:5]), "\n".join(file_lines[:5])))
    for app, msgid, fac, sev, msg in got:
        assert (app, msgid, fac, sev) == ("tailfence", "audit", "authpriv", "info")
        json.loads(msg)
    types = [json.loads(m[4])["type"] for m in got]
    assert types.count("decision") == 5 and types.count("close") == 5
    assert types[-1] == "checkpoint"
