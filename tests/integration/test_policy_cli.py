"""
Issue 3: the operator's commands around the policy, as an operator reads
them: `tailfence check` (verdict, deciding rule or guard, addresses; exit 0
allow, 1 deny, 2 error) for prefixes, guards, hostname rules, --user and
--src; `tailfence config check` on valid and invalid files (exit 0 / 1; the
message names the key path, the value and what was expected);
`tailfence config show --redact` (the merged config, hashes redacted); `tailfence
passwd` reading stdin.

`check` resolves names with the daemon's resolver and settings: most name
tests pass --hosts-file (and a --dns-server where nothing answers); one runs
the command in a private mount namespace with a temporary file bound over
/etc/hosts (nothing outside that one process sees it), for the default
hosts file.
"""

import json
import subprocess

import pytest

from helpers import clean_env, free_port, sanitizer_env, sanitizer_report

PW = {"alice": "cli-alice-pw-41d2", "bob": "cli-bob-pw-8e07"}

# `check` answers at once from a hosts file; a hang fails the test quickly.
CHECK_TIMEOUT = 10

@pytest.fixture(scope="module")
def hashes(tailfence_bin):
    out = {}
    for user, pw in PW.items():
        p = subprocess.run([tailfence_bin, "passwd"], input=pw + "\n", capture_output=True,
                           text=True, env=clean_env(), timeout=60)
        assert p.returncode == 0, p.stderr
        out[user] = p.stdout.strip()
    return out


@pytest.fixture
def users_cfg(tmp_path, hashes):
    """alice -> 127.0.0.1:8080, bob -> 127.0.0.2:5432, anyone from
    127.0.0.1 -> 127.0.0.3:22; loopback guard lifted."""
    cfg = {
        "users": hashes,
        "lift_guards": ["loopback"],
        "rules": [
            {"name": "alice-web", "action": "accept", "dst": ["127.0.0.1:8080"], "users": ["alice"]},
            {"name": "bob-db", "action": "accept", "dst": ["127.0.0.2:5432"], "users": ["bob"]},
            {"name": "ssh-from-one", "action": "accept", "dst": ["127.0.0.3:22"],
             "src": ["127.0.0.1/32"]},
        ],
    }
    path = tmp_path / "users.json"
    path.write_text(json.dumps(cfg, indent=2))
    return str(path)


def run_with_hosts(tailfence_bin, tmp_path, hosts, *args):
    """Runs `tailfence ARGS` with hosts (text) bound over /etc/hosts in a
    mount namespace of its own."""
    f = tmp_path / "etc-hosts"
    f.write_text(hosts)
    argv = ["unshare", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
            str(f), tailfence_bin] + [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       env=sanitizer_env(clean_env()), timeout=CHECK_TIMEOUT)
    report = sanitizer_report(p.stdout + p.stderr)
    assert report is None, report
    return p


def field(out, name):
    """The value of a 'name: value' line of check's output."""
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no %r line in:\n%s" % (name, out))


# ------------------------------------------------------------------- check

@pytest.mark.parametrize("args, rc, verdict, decided", [
    # an allowed prefix (rule 0 is the default "accept routes:*")
    (["--allow", "127.0.0.0/24", "--lift-guard", "loopback", "127.0.0.9:80"], 0, "allow",
     "rule 1 (--allow 127.0.0.0/24)"),
    # the same without lifting the guard: the guard decides and is named
    (["--allow", "127.0.0.0/24", "127.0.0.9:80"], 1, "deny", "guard loopback"),
    (["--allow", "::1/128", "[::1]:80"], 1, "deny", "guard loopback"),
    # IPv4-mapped IPv6 meets the IPv4 guard
    (["--allow", "127.0.0.0/24", "[::ffff:127.0.0.1]:80"], 1, "deny", "guard loopback"),
    # outside every prefix: the implicit deny
    (["--allow", "127.0.0.0/24", "--lift-guard", "loopback", "127.0.1.1:80"], 1, "deny",
     "implicit deny (no rule matched)"),
    # ports
    (["--allow", "127.0.0.0/24:80,443", "--lift-guard", "loopback", "127.0.0.1:443"], 0, "allow",
     "rule 1 (--allow 127.0.0.0/24:80,443)"),
    (["--allow", "127.0.0.0/24:80,443", "--lift-guard", "loopback", "127.0.0.1:444"], 1, "deny",
     "implicit deny (no rule matched)"),
    # the advertised routes are the default policy
    (["--lift-guard", "loopback", "127.0.2.7:5432"], 0, "allow", "rule 0"),
])
def test_check_prefixes_and_guards(args, rc, verdict, decided, tailfence_cli):
    p = tailfence_cli("check", *args, env={"TAILSCALE_ADVERTISE_ROUTES": "127.0.2.0/24"})
    assert p.returncode == rc, p.stdout + p.stderr
    assert field(p.stdout, "verdict") == verdict, p.stdout
    assert field(p.stdout, "decided by").startswith(decided), p.stdout
    assert field(p.stdout, "reason"), p.stdout
    if verdict == "allow":
        assert field(p.stdout, "via"), p.stdout
    if decided.startswith("guard"):
        assert "loopback" in field(p.stdout, "reason"), p.stdout


@pytest.mark.parametrize("user, target, rc, decided", [
    ("alice", "127.0.0.1:8080", 0, "rule 0 (alice-web)"),
    ("bob", "127.0.0.1:8080", 1, "implicit deny"),
    ("bob", "127.0.0.2:5432", 0, "rule 1 (bob-db)"),
    ("alice", "127.0.0.2:5432", 1, "implicit deny"),
    ("mallory", "127.0.0.1:8080", 1, "implicit deny"),
])
def test_check_user(user, target, rc, decided, users_cfg, tailfence_cli):
    p = tailfence_cli("check", "--config", users_cfg, "--user", user, target)
    assert p.returncode == rc, p.stdout + p.stderr
    assert field(p.stdout, "verdict") == ("allow" if rc == 0 else "deny")
    assert field(p.stdout, "decided by").startswith(decided), p.stdout
    assert "as user %s" % user in p.stdout
    if user == "mallory":
        assert "not configured" in p.stdout, p.stdout
    # no password hash in what check prints
    assert "$scrypt$" not in p.stdout + p.stderr


def test_check_without_user_when_users_exist(users_cfg, tailfence_cli):
    p = tailfence_cli("check", "--config", users_cfg, "127.0.0.1:8080")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "--user" in p.stdout, p.stdout


@pytest.mark.parametrize("src, rc", [
    ("127.0.0.1", 0),
    ("127.0.0.9", 1),
    ("::1", 1),
    ("::ffff:127.0.0.1", 0),
])
def test_check_src(src, rc, users_cfg, tailfence_cli):
    p = tailfence_cli("check", "--config", users_cfg, "--user", "alice", "--src", src, "127.0.0.3:22")
    assert p.returncode == rc, p.stdout + p.stderr
    assert ("from %s" % src) in p.stdout, p.stdout
    if rc == 0:
        assert field(p.stdout, "decided by") == "rule 2 (ssh-from-one)"


@pytest.mark.parametrize("args, says", [
    (["--allow", "127.0.0.0/24", "nonsense"], "HOST:PORT"),
    (["--allow", "127.0.0.0/24", "127.0.0.1:0"], "HOST:PORT"),
    (["--allow", "127.0.0.0/24", "127.0.0.1:65536"], "HOST:PORT"),
    (["--allow", "127.0.0.0/24", "::1:80"], "HOST:PORT"),
    (["--allow", "127.0.0.0/24"], "usage"),
    (["--allow", "127.0.0.0/24", "--src", "localhost", "127.0.0.1:80"], "--src"),
    (["--allow", "127.0.0.1/24", "127.0.0.1:80"], "127.0.0.0/24"),
    (["--config", "/nonexistent/tf.json", "127.0.0.1:80"], "/nonexistent/tf.json"),
    (["--no-such-flag", "127.0.0.1:80"], "no-such-flag"),
])
def test_check_errors_exit_2(args, says, tailfence_cli):
    p = tailfence_cli("check", *args)
    assert p.returncode == 2, p.stdout + p.stderr
    assert says in p.stderr, p.stderr
    assert "verdict: allow" not in p.stdout


HOSTS = "127.0.0.5 db.internal\n127.0.0.5 multi.internal\n127.0.1.5 multi.internal\n"


@pytest.fixture
def name_cfg(tmp_path):
    cfg = {"lift_guards": ["loopback"],
           "rules": [{"name": "db", "action": "accept", "dst": ["db.internal:5432"]},
                     {"name": "multi", "action": "accept", "dst": ["multi.internal:*"]},
                     {"name": "no-127.0.1", "action": "deny", "dst": ["127.0.1.0/24:*"]}]}
    path = tmp_path / "names.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def check_name(tailfence_cli, tmp_path, cfg, target, hosts=HOSTS):
    """`tailfence check` with a hosts file and a nameserver where nothing
    answers, the way the daemon would be started."""
    f = tmp_path / "hosts"
    f.write_text(hosts)
    return tailfence_cli("check", "--config", cfg, "--hosts-file", f,
                         "--dns-server", "127.0.0.1:%d" % free_port(), "--dns-timeout", "1s",
                         target, timeout=CHECK_TIMEOUT)


@pytest.mark.parametrize("target", ["db.internal:5432", "DB.Internal:5432", "db.internal.:5432",
                                    "DB.INTERNAL.:5432"])
def test_check_hostname_rule(target, name_cfg, tailfence_cli, tmp_path):
    p = check_name(tailfence_cli, tmp_path, name_cfg, target)
    assert p.returncode == 0, p.stdout + p.stderr
    assert field(p.stdout, "verdict") == "allow"
    assert field(p.stdout, "decided by") == "rule 0 (db)"
    assert "127.0.0.5" in p.stdout, p.stdout


def test_check_hostname_rule_with_the_default_hosts_file(name_cfg, tailfence_bin, tmp_path):
    p = run_with_hosts(tailfence_bin, tmp_path, HOSTS, "check", "--config", name_cfg,
                       "--dns-server", "127.0.0.1:%d" % free_port(), "db.internal:5432")
    assert p.returncode == 0, p.stdout + p.stderr
    assert field(p.stdout, "decided by") == "rule 0 (db)"
    assert "127.0.0.5" in p.stdout, p.stdout


def test_check_hostname_rule_does_not_cover_the_ip_literal(name_cfg, tailfence_cli):
    p = tailfence_cli("check", "--config", name_cfg, "127.0.0.5:5432")
    assert p.returncode == 1, p.stdout
    assert "hostname rules do not apply" in p.stdout
    assert field(p.stdout, "decided by").startswith("implicit deny")


def test_check_hostname_rule_other_port_not_resolved(name_cfg, tailfence_cli, tmp_path):
    p = check_name(tailfence_cli, tmp_path, name_cfg, "db.internal:22")
    assert p.returncode == 1, p.stdout + p.stderr
    assert field(p.stdout, "verdict") == "deny"


def test_check_hostname_rule_meets_the_guard(tmp_path, tailfence_cli):
    # the name matches the rule, but its address is loopback and the guard
    # is not lifted: the guard is named
    path = tmp_path / "guarded.json"
    path.write_text(json.dumps({"rules": [{"action": "accept", "dst": ["db.internal:*"]}]}))
    p = check_name(tailfence_cli, tmp_path, path, "db.internal:5432")
    assert p.returncode == 1, p.stdout + p.stderr
    assert field(p.stdout, "decided by") == "guard loopback"
    assert "127.0.0.5" in p.stdout


def test_check_name_with_a_denied_second_address(name_cfg, tailfence_cli, tmp_path):
    p = check_name(tailfence_cli, tmp_path, name_cfg, "multi.internal:443")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.startswith("  ")}
    assert " allow " in lines["127.0.0.5"] + " ", p.stdout
    assert " deny " in lines["127.0.1.5"] + " ", p.stdout
    assert "never dialed" in p.stdout
    assert field(p.stdout, "decided by") == "rule 1 (multi)"


def test_check_name_that_does_not_resolve(name_cfg, tailfence_cli, tmp_path):
    # a name the rule accepts but neither the hosts file nor DNS knows
    p = check_name(tailfence_cli, tmp_path, name_cfg, "multi.internal:443", hosts="")
    assert p.returncode == 1, p.stdout + p.stderr
    assert field(p.stdout, "verdict") == "deny"
    assert "cannot resolve multi.internal" in p.stdout


# ------------------------------------------------------------ config check

def test_config_check_valid(users_cfg, tailfence_cli):
    p = tailfence_cli("config", "check", users_cfg)
    assert p.returncode == 0, p.stderr
    assert "OK" in p.stdout and "3 rules" in p.stdout and "2 users" in p.stdout, p.stdout
    for name in ("alice-web", "bob-db", "ssh-from-one"):
        assert name in p.stdout
    assert "$scrypt$" not in p.stdout


def test_config_check_comments_and_trailing_commas(tmp_path, tailfence_cli):
    path = tmp_path / "hujson.json"
    path.write_text('// a HuJSON-style file\n{\n  /* guards */ "lift_guards": ["loopback",],\n'
                    '  "rules": [ {"action": "accept", "dst": ["127.0.0.0/24:80"],}, ],\n}\n')
    p = tailfence_cli("config", "check", path)
    assert p.returncode == 0, p.stderr
    assert "1 rule," in p.stdout


INVALID = [
    ('{"rules": [{"action": "accept", "dst": ["127.0.0.1/24:80"]}]}',
     ["rules[0].dst[0]", '"127.0.0.1/24:80"', "host bits", "127.0.0.0/24"]),
    ('{"rules": [{"action": "accept", "dst": ["127.0.0.0/33:80"]}]}',
     ["rules[0].dst[0]", '"127.0.0.0/33:80"', "longer than 32"]),
    ('{"rules": [{"action": "accept", "dst": ["127.0.0.1:70000"]}]}',
     ["rules[0].dst[0]", "70000", "1 to 65535"]),
    ('{"rules": [{"action": "accept", "dst": ["127.0.0.1:90-80"]}]}',
     ["rules[0].dst[0]", "90-80"]),
    ('{"rules": [{"action": "accept", "dst": ["127.0.0.1:80"]},\n'
     '           {"action": "accept", "dst": ["127.0.0.1:80"], "src": ["127.0.0.1/8"]}]}',
     ["rules[1].src[0]", '"127.0.0.1/8"', "127.0.0.0/8"]),
    ('{"rules": [{"action": "allow", "dst": ["127.0.0.1:80"]}]}',
     ["rules[0].action", '"allow"', "accept or deny"]),
    ('{"rules": [{"action": "accept", "dst": ["127.0.0.1:80"], "via": "tunnel"}]}',
     ["rules[0].via", '"tunnel"', "tailnet, direct or upstream"]),
    ('{"rules": [{"action": "accept"}]}', ["rules[0].dst", "missing"]),
    ('{"rules": [{"action": "accept", "dst": ["127.0.0.1:80"], "users": ["zed"]}]}',
     ["rules[0].users[0]", '"zed"']),
    ('{"rulez": []}', ['"rulez"', "rules"]),
    ('{"rules": [], "rules": []}', ['"rules"', "twice"]),
    ('{"lift_guards": ["loopbak"]}', ["lift_guards[0]", '"loopbak"', "loopback"]),
    ('{"limits": {"idle_timeout": "10 parsecs"}}', ["limits.idle_timeout", '"10 parsecs"', "10s"]),
    ('{"routes": ["0.0.0.0/0"]}', ["routes[0]", '"0.0.0.0/0"', "allow_default_route"]),
    ('{"listen": ["0.0.0.0:1080"]}', ["listen[0]", '"0.0.0.0:1080"', "users", "force_public_listen"]),
    ('{"upstream": "socks4://127.0.0.1:1"}', ["upstream", '"socks4://127.0.0.1:1"', "socks5://"]),
    ('{\n  "rules": [\n    {"action": "accept", "dst": ["127.0.0.1:80"]}\n  ]\n  "users": {}\n}\n',
     ["line 5"]),
]


@pytest.mark.parametrize("text, names", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_config_check_invalid(text, names, tmp_path, tailfence_cli):
    path = tmp_path / "bad.json"
    path.write_text(text)
    p = tailfence_cli("config", "check", path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert str(path) in p.stderr, p.stderr
    for n in names:
        assert n in p.stderr, "config check error does not name %r:\n%s" % (n, p.stderr)
    assert "OK" not in p.stdout


def test_config_check_user_with_a_plain_password(tmp_path, tailfence_cli):
    # A password pasted where the hash belongs: refused, pointing at
    # `tailfence passwd`, and the password is not echoed back.
    path = tmp_path / "plain.json"
    path.write_text('{"users": {"alice": "Plain-Secret-0a7d"}}')
    p = tailfence_cli("config", "check", path)
    assert p.returncode == 1, p.stdout
    assert "users.alice" in p.stderr and "tailfence passwd" in p.stderr, p.stderr
    assert "Plain-Secret-0a7d" not in p.stdout + p.stderr


def test_config_check_missing_file(tmp_path, tailfence_cli):
    p = tailfence_cli("config", "check", tmp_path / "nope.json")
    assert p.returncode == 1
    assert "nope.json" in p.stderr


# ------------------------------------------------------------- config show

def test_config_show_redact_hides_hashes_and_merges_flags(users_cfg, hashes, tailfence_cli):
    p = tailfence_cli("config", "show", "--redact", "--config", users_cfg,
                      "--listen", "127.0.0.1:1234", "--lift-guard", "link-local",
                      env={"TAILSCALE_ADVERTISE_ROUTES": "127.0.2.0/24"})
    assert p.returncode == 0, p.stderr
    eff = json.loads(p.stdout)
    assert eff["users"] == {"alice": "<redacted>", "bob": "<redacted>"}
    for user, h in hashes.items():
        assert h not in p.stdout
        assert h.split("$")[-1] not in p.stdout, "the hash's key part is shown"
        assert PW[user] not in p.stdout
    assert "$scrypt$" not in p.stdout
    assert eff["listen"] == ["127.0.0.1:1234"]
    assert set(eff["lift_guards"]) == {"loopback", "link-local"}
    assert "127.0.2.0/24" in eff["routes"]
    assert [r["name"] for r in eff["rules"]] == ["alice-web", "bob-db", "ssh-from-one"]


# ------------------------------------------------------------------ passwd

def test_passwd_from_stdin(tailfence_cli):
    p = tailfence_cli("passwd", input="stdin-pw-1\n")
    assert p.returncode == 0, p.stderr
    h = p.stdout.strip()
    assert h.startswith("$scrypt$ln=15,r=8,p=1$") and "stdin-pw-1" not in h
    again = tailfence_cli("passwd", input="stdin-pw-1\n").stdout.strip()
    assert again != h, "two hashes of one password are equal (no salt?)"
    empty = tailfence_cli("passwd", input="")
    assert empty.returncode != 0 and not empty.stdout.strip()
    blank = tailfence_cli("passwd", input="\n")
    assert blank.returncode != 0 and not blank.stdout.strip()
