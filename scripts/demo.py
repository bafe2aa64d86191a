#!/usr/bin/python3
"""demo: the local playground behind `scripts/run --demo`.

    scripts/demo.py [--once] [--tailfence PATH]

Brings up the test suite's tailnet (tests/integration/tailnet: Headscale
in namespace H, subnet router B with a web server, PostgreSQL and a DNS
server on documentation prefixes, node A), starts tailfence in A in front
of A's tailscaled, and walks through what it does, printing each command
and its real output: an allowed request, a denied one with the reason,
psql through proxychains4, `tailfence check`, `tailfence status` and
`tailfence audit summary`. Every step is checked against what it should
show.

Then it stays up with a one-line hint on entering A's namespace; Ctrl-C
(or SIGTERM) tears everything down and removes its files. With --once it
exits after the walk-through: 0 only if every step behaved as shown.

Outside a private network namespace it re-runs itself under
`unshare --net --mount` with only lo up, like `python3 -m tailnet`: nothing
it starts can reach anything outside the namespaces it makes.
"""
import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from tailnet import HarnessError, Tailnet, in_private_netns, missing_requirements  # noqa: E402
from tailnet.harness import TAILSCALE, clean_env  # noqa: E402

LISTEN = "127.0.0.1:1080"
PROXYCHAINS_CONF = os.path.join(REPO, "contrib", "proxychains", "proxychains4.conf")


def say(msg=""):
    print(msg, flush=True)


def note(msg):
    print("demo: " + msg, file=sys.stderr, flush=True)


def reexec_in_private_netns():
    argv = ["unshare", "--net", "--mount", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
            sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    os.execvp("unshare", argv)


class Walk:
    """Runs shell commands in A, prints them and their output, and keeps
    the verdict of each check."""

    def __init__(self, env, cwd):
        self.env, self.cwd = env, cwd
        self.failures = []
        self.steps = 0

    def comment(self, text):
        say()
        for line in text.splitlines():
            say("# " + line)

    def run(self, cmd, expect_rc=0, expect=(), timeout=60):
        """Prints `$ cmd`, runs it with bash, prints what it printed; checks
        the exit status and that each of expect appears."""
        say("$ " + cmd)
        try:
            r = subprocess.run(["/bin/bash", "-c", cmd], env=self.env, cwd=self.cwd,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=timeout)
            out, rc = r.stdout, r.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout or ""
            if isinstance(out, bytes):
                out = out.decode("utf-8", "replace")
            out, rc = out + "(timed out after %ds)\n" % timeout, None
        sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")
        sys.stdout.flush()
        self.check(cmd, rc, out, expect_rc, expect)
        return rc, out

    def check(self, what, rc, out, expect_rc, expect):
        self.steps += 1
        why = []
        if expect_rc is not None and rc != expect_rc:
            why.append("exit status %s, expected %s" % (rc, expect_rc))
        for e in expect:
            if e not in out:
                why.append("no %r in the output" % e)
        if why:
            self.failures.append("%s: %s" % (what, "; ".join(why)))


def start_tailfence(walk, logpath):
    """tailfence in the background, as a user would start it; waits until it
    listens and prints its start-up lines."""
    say("$ tailfence --listen %s &" % LISTEN)
    log = open(logpath, "wb")
    proc = subprocess.Popen(["tailfence", "--listen", LISTEN], env=walk.env, cwd=walk.cwd,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline and proc.poll() is None:
        with open(logpath, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if "listening on" in text:
            break
        time.sleep(0.1)
    for line in text.splitlines():
        say("  " + line)
    walk.check("tailfence", 0 if proc.poll() is None else proc.returncode, text, 0,
               ["tailnet: running as tailnet-a.", "listening on " + LISTEN])
    return proc, log


def walk_through(tn, workdir, tailfence_bin):
    audit = os.path.join(workdir, "audit.jsonl")
    env = clean_env()
    env["PATH"] = os.path.dirname(os.path.abspath(tailfence_bin)) + ":/usr/sbin:/usr/bin:/sbin:/bin"
    env["HOME"] = workdir
    dsn = "postgresql://%s:%s@%s:%d/%s?sslmode=disable" % (
        tn.pg.user, tn.pg.password, tn.db_name, tn.pg.port, tn.pg.dbname)
    # Commands run from the repository, as a newcomer would type them.
    walk = Walk(env, REPO)

    walk.comment("Node A's tailscaled runs in userspace mode with its proxy on %s.\n"
                 "tailfence follows the tailnet through tailscaled's socket; the flags can\n"
                 "also come from the environment, as in the container:" % tn.a_proxy)
    exports = {"TAILSCALE_SOCKET": tn.a_socket, "TAILFENCE_UPSTREAM": "socks5://" + tn.a_proxy,
               "TAILFENCE_AUDIT_LOG": audit}
    say("$ export " + " ".join("%s=%s" % kv for kv in exports.items()))
    env.update(exports)
    proc, log = start_tailfence(walk, os.path.join(workdir, "tailfence.log"))

    walk.comment("B's subnet, carried for A by B: allowed, and dialled over WireGuard")
    walk.run("curl -sS -x http://%s http://%s/hello" % (LISTEN, tn.web_v4[0]),
             expect=['"server": "tailnet-b-web"', '"path": "/hello"'])
    walk.comment("An address no node carries: refused, with the reason")
    walk.run("curl -sS -i -x http://%s http://%s/" % (LISTEN, tn.unrouted_v4),
             expect=["HTTP/1.1 403 Forbidden", "no rule accepts %s:80" % tn.unrouted_v4])

    walk.comment("psql through proxychains4 (contrib/proxychains/proxychains4.conf): the name\n"
                 "%s goes to tailfence, which resolves it through tailscaled (split DNS)"
                 % tn.db_name)
    say("$ export DATABASE_URL=%s" % dsn)
    env["DATABASE_URL"] = dsn
    walk.run('proxychains4 -q -f %s psql "$DATABASE_URL" -c "select * from items"'
             % os.path.relpath(PROXYCHAINS_CONF, REPO),
             expect=["alpha", "beta", "gamma", "(3 rows)"], timeout=90)

    walk.comment("What would happen, and why (exit status 0 allow, 1 deny)")
    walk.run("tailfence check %s:5432" % tn.db_name,
             expect=["verdict: allow", "path: tailnet (peer tailnet-b.tailnet.test"])
    walk.run("tailfence check %s:80" % tn.unrouted_v4, expect_rc=1,
             expect=["verdict: deny", "reason: no rule accepts %s:80" % tn.unrouted_v4])

    walk.comment("The tailnet as the fence follows it")
    walk.run("tailfence status", expect=["tailnet: running", "tailnet-b.tailnet.test",
                                         "routes carried: 192.0.2.0/24"])

    # The audit writer flushes within 200 ms: wait until every decision
    # has its close record.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(audit, encoding="utf-8") as f:
            text = f.read()
        if text.count('"type":"close"') >= text.count('"type":"decision"') > 0:
            break
        time.sleep(0.1)
    walk.comment("The audit trail, summarised (every decision and close is one JSON line)")
    walk.run('tailfence audit summary "$TAILFENCE_AUDIT_LOG"',
             expect=[tn.web_v4[0], tn.unrouted_v4])
    return walk, proc, log


def shell_rc(tn, workdir, tailfence_bin):
    """An rc file for a shell in A with the demo's variables."""
    path = os.path.join(workdir, "shell.rc")
    dsn = "postgresql://%s:%s@%s:%d/%s?sslmode=disable" % (
        tn.pg.user, tn.pg.password, tn.db_name, tn.pg.port, tn.pg.dbname)
    lines = [
        "# node A of the tailfence playground",
        "export PATH=%s:$PATH" % shlex.quote(os.path.dirname(os.path.abspath(tailfence_bin))),
        "export TAILSCALE_SOCKET=%s TAILFENCE_UPSTREAM=socks5://%s TAILFENCE_AUDIT_LOG=%s"
        % (tn.a_socket, tn.a_proxy, os.path.join(workdir, "audit.jsonl")),
        "export DATABASE_URL=%s" % shlex.quote(dsn),
        "alias tailscale=%s" % shlex.quote("%s --socket=%s" % (TAILSCALE, tn.a_socket)),
        "cd %s" % shlex.quote(workdir),
        "PS1='[tailnet A] \\w\\$ '",
        "echo 'node A: tailfence on %s; e.g. curl -x http://%s http://%s/, tailfence status,"
        " tail -f audit.jsonl, tailscale status'" % (LISTEN, LISTEN, tn.web_v4[0]),
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(prog="scripts/run --demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--once", action="store_true",
                    help="walk through once and exit (0 only if every step behaved as shown)")
    ap.add_argument("--tailfence", default=os.path.join(REPO, "build", "tailfence"),
                    help="the tailfence to run (default build/tailfence)")
    args = ap.parse_args()
    if not in_private_netns():
        if os.geteuid() != 0:
            ap.error("needs root (network namespaces, PostgreSQL as the postgres user)")
        reexec_in_private_netns()
    why = missing_requirements()
    if not os.access(args.tailfence, os.X_OK):
        why.append("%s is not built (scripts/run builds it)" % args.tailfence)
    for p in ("/usr/bin/curl", "/usr/bin/proxychains4"):
        if not os.access(p, os.X_OK):
            why.append("%s is missing (scripts/install-deps installs it)" % p)
    if why:
        note("cannot bring up the playground: " + "; ".join(why))
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="tailfence-demo-")
    os.chmod(workdir, 0o755)
    tn = Tailnet(os.path.join(workdir, "tailnet"), log=lambda m: note(m))
    proc = log = None
    walk = None
    rc = 1
    try:
        note("bringing up the playground: Headscale (namespace H), subnet router B "
             "(namespace B: %s with a web server on %s:80, PostgreSQL on :5432, DNS for %s), "
             "node A (this namespace); no network link between them, only a UNIX socket"
             % (tn.route_v4, tn.web_v4[0], tn.split_domain))
        tn.start()
        walk, proc, log = walk_through(tn, workdir, args.tailfence)
        say()
        if walk.failures:
            note("%d of %d steps did not behave as shown:" % (len(walk.failures), walk.steps))
            for f in walk.failures:
                note("  " + f)
        else:
            note("all %d steps behaved as shown" % walk.steps)
        rc = 1 if walk.failures else 0
        if not args.once:
            rcfile = shell_rc(tn, workdir, args.tailfence)
            note("up. Try more in node A: sudo nsenter --net=/proc/%d/ns/net bash --rcfile %s "
                 "(Ctrl-C here tears everything down)" % (os.getpid(), rcfile))
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            rc = 0
    except KeyboardInterrupt:
        rc = 130
    except HarnessError as e:
        note("the playground did not come up: %s" % e)
        rc = 1
    finally:
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            log.close()
        if rc not in (0, 130) and tn.started:
            note("tailfence's log:\n" + open(os.path.join(workdir, "tailfence.log")).read()[-3000:]
                 if os.path.exists(os.path.join(workdir, "tailfence.log")) else "no tailfence log")
        try:
            tn.close()
            shutil.rmtree(workdir, ignore_errors=True)
            note("torn down: every process stopped, namespaces and files removed")
        except HarnessError as e:
            note("teardown: %s (files kept in %s)" % (e, workdir))
            rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
