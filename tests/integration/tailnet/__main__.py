"""Brings the tailnet up by hand, for trying things against it.

    cd tests/integration && sudo /usr/bin/python3 -m tailnet [--workdir DIR] [COMMAND [ARG...]]

Outside a private network namespace it re-runs itself under
`unshare --net --mount` (with lo up), so A is a namespace of its own too.
With COMMAND, runs it in A once the tailnet is up, with TAILNET_* variables
describing it (printed either way), tears everything down and exits with
COMMAND's status; without, waits for Ctrl-C (or SIGTERM). Example:

    sudo /usr/bin/python3 -m tailnet sh -c 'curl -sS --proxy socks5h://$TAILNET_A_PROXY http://192.0.2.10/'
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile

from . import Tailnet, in_private_netns

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reexec_in_private_netns():
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = ["unshare", "--net", "--mount", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
            sys.executable, "-m", "tailnet"] + sys.argv[1:]
    os.execvpe("unshare", argv, env)


def describe(tn):
    return {
        "TAILNET_A_PROXY": tn.a_proxy,
        "TAILNET_A_SOCKET": tn.a_socket,
        "TAILNET_B_SOCKET": tn.b_socket,
        "TAILNET_A_IPS": " ".join(tn.a_ips),
        "TAILNET_B_IPS": " ".join(tn.b_ips),
        "TAILNET_B_DNSNAME": tn.b_dnsname,
        "TAILNET_ROUTES": " ".join(tn.routes),
        "TAILNET_WEB": "http://%s:%d/ http://[%s]:%d/" % (tn.web_v4 + tn.web_v6),
        "TAILNET_PG_DSN": tn.pg_dsn(),
        "TAILNET_CONTROL_URL": tn.control_url,
        "TAILNET_LOGS": tn.logdir,
    }


def main():
    ap = argparse.ArgumentParser(prog="python3 -m tailnet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", help="logs and state (default: a new directory under /tmp)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if not in_private_netns():
        if os.geteuid() != 0:
            ap.error("needs root (network namespaces)")
        reexec_in_private_netns()
    workdir = args.workdir or tempfile.mkdtemp(prefix="tailnet-demo-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def say(msg):
        print("tailnet: " + msg, file=sys.stderr, flush=True)

    with Tailnet(workdir, log=say) as tn:
        info = describe(tn)
        for k, v in info.items():
            print("%s=%s" % (k, v), flush=True)
        if args.command:
            env = dict(os.environ)
            env.update(info)
            return subprocess.call(args.command, env=env)
        say("up; Ctrl-C tears it down (logs stay in %s)" % workdir)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
