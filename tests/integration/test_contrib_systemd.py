"""
contrib/systemd/tailfence.service and contrib/logrotate/tailfence, together.

systemd itself cannot run here (no systemd as PID 1, and the suite runs
inside a private network namespace), so the tests take what the unit says
and do it by hand:

- the unit's effective configuration: `tailfence config show` with the
  exact flags of its ExecStart= and the variables of its Environment=
  lines, parsed from the unit file, against a configuration file with
  audit sinks: the file's sinks must be the ones the daemon writes to;
- the unit file as systemd reads it (`systemd-analyze verify`, which
  works without a running systemd): no unknown key, no bad value;
- a rotation as the unit's user: the daemon started the way the unit
  starts it (ExecStartPre's check, then ExecStart, with its Environment=
  and UMask=) under a uid that has no passwd entry, like DynamicUser=,
  its configuration in a directory made as ConfigurationDirectory= makes
  it (root's, ConfigurationDirectoryMode=) and its audit file in a
  directory made as LogsDirectory= makes it under DynamicUser= (the
  user's own, below a root-only "private" directory, seen by the service
  through a mount namespace of its own); then logrotate, as root, with
  the shipped snippet (only its path changed) under the global settings
  of Debian's /etc/logrotate.conf, twice. Every connection's decision
  must be in the file that was live when it was made, nothing may be
  lost, and the HMAC chain must verify across the rotated, compressed
  and live files.

The snippet's postrotate asks systemd to signal the unit's main process
(`systemctl kill -s USR1 --kill-whom=main tailfence.service`); a stand-in
`systemctl` on logrotate's PATH does what systemd would, after checking
those are the words it got, and a stand-in `pidof` keeps the fallback from
signalling anything else on this machine.
"""
import grp
import gzip
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from helpers import REPO, sanitizer_env as _sanitizer_env
from helpers import EchoOrigin, Proc, clean_env, connect, free_port, read_audit, recv_exact, \
    sanitizer_report, socks5_connect, wait_listening

UNIT = os.path.join(REPO, "contrib", "systemd", "tailfence.service")
LOGROTATE = os.path.join(REPO, "contrib", "logrotate", "tailfence")
UNIT_BIN = "/usr/local/bin/tailfence"


# ------------------------------------------------------------ the unit file

def unit_service():
    """The [Service] section: {key: [values in order]} (continuation lines
    joined, comments dropped)."""
    section = None
    out = {}
    with open(UNIT, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def unit_environment(svc):
    """The variables of every Environment= line (systemd's quoting rules are
    shell-like for these simple lines)."""
    env = {}
    for v in svc.get("Environment", []):
        for word in shlex.split(v):
            k, _, val = word.partition("=")
            env[k] = val
    return env


def unit_command(svc, key):
    """The argv of ExecStart= or ExecStartPre=, without systemd's prefixes
    (-, @, :, +, !), the program replaced by the build under test."""
    (value,) = svc[key]
    value = value.lstrip("-@:+!")
    argv = shlex.split(value)
    assert argv[0] == UNIT_BIN, "%s= runs %s, not %s" % (key, argv[0], UNIT_BIN)
    return argv


def config_show(tailfence_bin, flags, env):
    e = _sanitizer_env(clean_env())
    for k in list(e):
        if k.startswith("TAILFENCE_") or k.startswith("TAILSCALE_"):
            del e[k]
    e.update(env)
    p = subprocess.run([tailfence_bin, "config", "show"] + flags, env=e, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60)
    report = sanitizer_report(p.stdout + p.stderr)
    assert report is None, report
    assert p.returncode == 0, "config show %s: exit %d\n%s" % (flags, p.returncode, p.stderr)
    return json.loads(p.stdout)


@pytest.mark.parametrize("sinks", [
    [{"type": "file", "path": "/var/log/tailfence/audit.jsonl"}],
    [{"type": "file", "path": "/var/log/tailfence/audit.jsonl"}, {"type": "stdout"}],
    None,
], ids=["file", "file+stdout", "none"])
def test_unit_keeps_the_config_files_audit_sinks(tailfence_bin, tmp_path, sinks):
    """With the unit's ExecStart flags and Environment=, the daemon writes to
    the sinks the configuration file names (and, with none, to stdout, the
    journal)."""
    svc = unit_service()
    env = unit_environment(svc)
    assert env.get("TAILFENCE_CONFIG") == "/etc/tailfence/tailfence.json", env
    argv = unit_command(svc, "ExecStart")
    flags = argv[2:] if argv[1:2] == ["run"] else argv[1:]
    conf = tmp_path / "tailfence.json"
    conf.write_text(json.dumps({"audit": {"sinks": sinks}} if sinks else {}))
    env["TAILFENCE_CONFIG"] = str(conf)  # the unit's file, written here
    shown = config_show(tailfence_bin, flags, env)
    assert shown["audit"]["sinks"] == (sinks or [{"type": "stdout"}]), (
        "the unit (ExecStart=%s) makes the daemon write to %s, the file says %s"
        % (" ".join(argv), shown["audit"]["sinks"], sinks))


def test_unit_file_is_what_systemd_reads(tmp_path, tailfence_bin):
    """systemd-analyze verify finds nothing to say about the unit (with the
    build under test where the unit expects tailfence)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    text = open(UNIT, encoding="utf-8").read().replace(UNIT_BIN, tailfence_bin)
    unit = tmp_path / "tailfence.service"
    unit.write_text(text)
    p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60, cwd=str(tmp_path))
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), (
        "systemd-analyze verify: exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr))


# ---------------------------------------------------------- the rotation

def dynamic_uid():
    """A uid (and gid) in DynamicUser='s range with no passwd or group entry."""
    for uid in range(61184 + 4321, 65519):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            return uid
    pytest.fail("no free uid in 61184..65519")


def logrotate_conf(snippet_path, work):
    """Debian's /etc/logrotate.conf with its include lines replaced by the
    snippet (global settings such as "create" stay in force)."""
    lines = []
    try:
        with open("/etc/logrotate.conf", encoding="utf-8") as f:
            for line in f:
                if line.strip().startswith("include"):
                    continue
                lines.append(line)
    except FileNotFoundError:
        lines = ["weekly\n", "rotate 4\n", "create\n"]
    conf = os.path.join(work, "logrotate.conf")
    with open(conf, "w") as f:
        f.write("".join(lines) + "\ninclude %s\n" % snippet_path)
    return conf


STAND_IN_SYSTEMCTL = """#!/bin/sh
# systemd's part: signal the unit's main process.
echo "$*" >>"$TF_SYSTEMCTL_CALLS"
[ "$*" = "kill -s USR1 --kill-whom=main tailfence.service" ] || exit 1
exec /bin/kill -USR1 "$TF_MAINPID"
"""

STAND_IN_PIDOF = """#!/bin/sh
# the snippet's fallback must not reach other processes of this machine
echo "pidof $*" >>"$TF_SYSTEMCTL_CALLS"
exit 1
"""


def socks5_exchange(port, origin, payload):
    with connect(port) as s:
        rep, _, _ = socks5_connect(s, origin.host, origin.port)
        assert rep == 0, "SOCKS5 reply %d through the unit's daemon" % rep
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload


def wait_for(pred, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.mark.timeout(180)
def test_logrotate_rotates_the_units_trail(tailfence_bin):
    svc = unit_service()
    assert svc.get("DynamicUser") == ["yes"], svc.get("DynamicUser")
    uid = dynamic_uid()
    umask = int(svc["UMask"][0], 8)
    conf_mode = int(svc["ConfigurationDirectoryMode"][0], 8)
    logs_mode = int(svc["LogsDirectoryMode"][0], 8)
    (logs_name,) = svc["LogsDirectory"]
    (conf_name,) = svc["ConfigurationDirectory"]

    base = tempfile.mkdtemp(prefix="tf-unit-", dir="/tmp")
    origin = EchoOrigin("127.0.0.1")
    daemon = None
    try:
        os.chmod(base, 0o755)
        # /etc/<ConfigurationDirectory>: root's, ConfigurationDirectoryMode
        etc = os.path.join(base, "etc", conf_name)
        os.makedirs(etc)
        os.chmod(etc, conf_mode)
        # /var/log/<LogsDirectory> under DynamicUser: private/NAME owned by
        # the user, private/ root-only, NAME -> private/NAME
        varlog = os.path.join(base, "var", "log")
        private = os.path.join(varlog, "private")
        os.makedirs(os.path.join(private, logs_name))
        os.chmod(private, 0o700)
        os.chown(os.path.join(private, logs_name), uid, uid)
        os.chmod(os.path.join(private, logs_name), logs_mode)
        os.symlink(os.path.join("private", logs_name), os.path.join(varlog, logs_name))
        # the credential: readable by the service's user only
        creds = os.path.join(base, "credentials")
        os.makedirs(creds)
        key = os.path.join(creds, "audit.key")
        with open(key, "w") as f:
            f.write("k" * 32 + "\n")
        os.chown(creds, uid, uid)
        os.chmod(creds, 0o500)
        os.chown(key, uid, uid)
        os.chmod(key, 0o400)

        snippet = open(LOGROTATE, encoding="utf-8").read()
        shipped = "/var/log/%s/audit.jsonl" % logs_name
        assert shipped + " {" in snippet, "the snippet rotates something else than " + shipped
        live = os.path.join(varlog, logs_name, "audit.jsonl")
        port = free_port()
        conf = os.path.join(etc, "tailfence.json")
        with open(conf, "w") as f:
            json.dump({
                "listen": ["127.0.0.1:%d" % port],
                "upstream": "direct",
                "tailscaled_socket": "none",
                "lift_guards": ["loopback"],
                "rules": [{"name": "echo", "action": "accept", "dst": ["127.0.0.1:%d" % origin.port]}],
                "audit": {"sinks": [{"type": "file", "path": live}], "hmac_key_file": key},
            }, f)
        os.chmod(conf, 0o644)

        env = _sanitizer_env(clean_env())
        for k in list(env):
            if k.startswith("TAILFENCE_") or k.startswith("TAILSCALE_"):
                del env[k]
        env.update(unit_environment(svc))
        env["TAILFENCE_CONFIG"] = conf
        env["TAILFENCE_ADMIN"] = "127.0.0.1:%d" % free_port()

        # As the unit's user, in a mount namespace where private/ shows only
        # the unit's own directory (as systemd arranges for the service).
        stash = os.path.join(base, "stash")
        os.makedirs(stash)
        as_unit = (
            'set -e; mount --bind "$1/private/$2" "$3"; '
            'mount -t tmpfs -o mode=0755 tmpfs "$1/private"; mkdir "$1/private/$2"; '
            'mount --move "$3" "$1/private/$2"; umask "$4"; shift 4; '
            'exec setpriv --reuid=%d --regid=%d --clear-groups --no-new-privs -- "$@"' % (uid, uid))

        def unit_argv(key):
            argv = unit_command(svc, key)
            return ["unshare", "--mount", "--", "sh", "-c", as_unit, "sh", varlog, logs_name, stash,
                    "%04o" % umask, tailfence_bin] + argv[1:]

        pre = subprocess.run(unit_argv("ExecStartPre"), env=env, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=60)
        assert pre.returncode == 0, "ExecStartPre as the unit's user: exit %d\n%s%s" % (
            pre.returncode, pre.stdout, pre.stderr)
        daemon = Proc(unit_argv("ExecStart"), os.path.join(base, "daemon.log"), env=env)
        wait_listening(port, 20, daemon.proc, "tailfence (as the unit)")
        st = os.stat(live)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o640 & ~umask), (
            "the daemon's audit file: uid %d mode %o" % (st.st_uid, stat.S_IMODE(st.st_mode)))

        tools = os.path.join(base, "bin")
        os.makedirs(tools)
        for name, text in (("systemctl", STAND_IN_SYSTEMCTL), ("pidof", STAND_IN_PIDOF)):
            with open(os.path.join(tools, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(tools, name), 0o755)
        calls = os.path.join(base, "calls")
        snippet_path = os.path.join(base, "logrotate.d-tailfence")
        with open(snippet_path, "w") as f:
            f.write(snippet.replace(shipped, live))
        lr_conf = logrotate_conf(snippet_path, base)
        lr_env = clean_env(PATH=tools + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                           TF_SYSTEMCTL_CALLS=calls, TF_MAINPID=str(daemon.pid))

        def rotate():
            t0 = int(time.time())  # dateformat -%Y%m%d-%s: one rotation per second
            wait_for(lambda: int(time.time()) != t0, "the next second")
            p = subprocess.run(["logrotate", "-f", "-s", os.path.join(base, "logrotate.state"), lr_conf],
                               env=lr_env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=60)
            assert p.returncode == 0, "logrotate: exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr)
            # the daemon has reopened the path once the new file is there
            wait_for(lambda: os.path.exists(live), "the daemon to create %s again" % live)

        phases = [3, 4, 2]
        conn = 0
        want_files = []
        for i, n in enumerate(phases):
            if i:
                rotate()
            for _ in range(n):
                socks5_exchange(port, origin, b"record %d" % conn)
                conn += 1
            want_files.append(list(range(conn - n + 1, conn + 1)))
        daemon.stop(signal.SIGTERM, 30)
        log = daemon.log()
        assert daemon.returncode == 0, "the daemon exited %s:\n%s" % (daemon.returncode, log)
        assert sanitizer_report(log) is None, log
        assert "reopen failed" not in log and "sink_error" not in log, log

        with open(calls) as f:
            assert f.read().split("\n")[:-1] == ["kill -s USR1 --kill-whom=main tailfence.service"] * 2

        rotated = sorted((n for n in os.listdir(os.path.join(private, logs_name)) if n != "audit.jsonl"),
                         key=lambda n: int(n.split("-")[-1].split(".")[0]))
        assert len(rotated) == 2 and rotated[0].endswith(".gz") and not rotated[1].endswith(".gz"), rotated
        files = [os.path.join(varlog, logs_name, n) for n in rotated] + [live]
        for path in files:
            st = os.stat(path)
            assert st.st_uid == uid, "%s belongs to uid %d, not the unit's user" % (path, st.st_uid)

        v = subprocess.run([tailfence_bin, "audit", "verify", "--key", key] + files, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60, env=_sanitizer_env(clean_env()))
        assert v.returncode == 0 and v.stdout.startswith("verified: "), (
            "audit verify %s: exit %d\n%s%s" % (files, v.returncode, v.stdout, v.stderr))

        decisions, closes = [], []
        for path, want in zip(files, want_files):
            if path.endswith(".gz"):
                with gzip.open(path, "rb") as g, open(path[:-3] + ".plain", "wb") as out:
                    out.write(g.read())
                path = path[:-3] + ".plain"
            recs = read_audit(path)
            got = [r["conn"] for r in recs if r["type"] == "decision"]
            assert got == want, "%s holds the decisions of connections %s, not %s" % (path, got, want)
            assert recs[0]["type"] == "start" or "prev" in recs[0], recs[0]
            decisions += got
            closes += [r["conn"] for r in recs if r["type"] == "close"]
        assert sorted(decisions) == sorted(closes) == list(range(1, conn + 1)), (decisions, closes)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.stop(signal.SIGKILL)
        origin.close()
        shutil.rmtree(base, ignore_errors=True)
