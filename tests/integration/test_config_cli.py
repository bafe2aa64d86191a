"""
One table of settings drives the flags, the variables, the file keys,
`--help`, `config show` and docs/config.md. As a user meets it:

- docs/config.md's settings table is what `tailfence config reference`
  prints, and every flag in `--help` is in it;
- every setting's variable sets it, as its flag does (and flag beats
  variable beats file);
- `config show` prints a file that `config check` accepts and that means
  the same: shown again it is the same, and `check` decides the same;
- each subcommand's `--help` is its own.
"""

import json
import pathlib
import re
import subprocess

import pytest

from helpers import clean_env, free_port, sanitizer_env

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "config.md"


def reference_rows(text):
    """The settings table rows: (file key, flag, variable, default)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| File key"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append(tuple(c.strip("`").replace("\\|", "|") for c in cells[:4]))
    return rows


def test_docs_table_is_the_reference(tailfence_cli):
    p = tailfence_cli("config", "reference")
    assert p.returncode == 0, p.stderr
    doc = DOCS.read_text()
    m = re.search(r"<!-- settings table:[^>]*-->\n(.*?)<!-- end of settings table -->", doc,
                  re.S)
    assert m, "docs/config.md has no generated settings table"
    assert m.group(1) == p.stdout, \
        "docs/config.md's settings table differs from `tailfence config reference`"


def test_every_flag_in_help_is_documented(tailfence_cli):
    help_text = tailfence_cli("--help").stdout
    flags = set(re.findall(r"^  (--[a-z-]+)", help_text, re.M)) - {"--help", "--version"}
    documented = {r[1].split(" ")[0] for r in reference_rows(tailfence_cli(
        "config", "reference").stdout)}
    assert len(flags) > 30
    assert flags <= documented, flags - documented
    # and the other way round, but for check's own --user and --src
    assert documented - flags == {"-", "--user", "--src"}


def show(tailfence_cli, *args, env=None):
    p = tailfence_cli("config", "show", *args, env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


# Each variable with a value other than its default, and what config show
# then says: the variable really sets the setting.
VARIABLES = [
    ("TAILFENCE_LISTEN", "127.0.0.1:1999, [::1]:1999", ["listen"],
     ["127.0.0.1:1999", "[::1]:1999"]),
    ("TAILFENCE_UPSTREAM", "http://127.0.0.1:3128", ["upstream"], "http://127.0.0.1:3128"),
    ("TAILFENCE_CLOSE_REVOKED", "true", ["close_revoked"], True),
    ("TAILSCALE_ADVERTISE_ROUTES", "198.51.100.0/24", ["routes"], ["198.51.100.0/24"]),
    ("TAILFENCE_ALLOW_DEFAULT_ROUTE", "yes", ["allow_default_route"], True),
    ("TAILFENCE_LIFT_GUARDS", "multicast,broadcast", ["lift_guards"],
     ["multicast", "broadcast"]),
    ("TAILFENCE_FORCE_PUBLIC_LISTEN", "1", ["force_public_listen"], True),
    ("TAILFENCE_HANDSHAKE_TIMEOUT", "3s", ["limits", "handshake_timeout"], "3s"),
    ("TAILFENCE_CONNECT_TIMEOUT", "4s", ["limits", "connect_timeout"], "4s"),
    ("TAILFENCE_DNS_TIMEOUT", "1500ms", ["limits", "dns_timeout"], "1500ms"),
    ("TAILFENCE_IDLE_TIMEOUT", "1h", ["limits", "idle_timeout"], "1h"),
    ("TAILFENCE_SHUTDOWN_GRACE", "0", ["limits", "shutdown_grace"], "0s"),
    ("TAILFENCE_MAX_HEAD_BYTES", "2048", ["limits", "max_head_bytes"], 2048),
    ("TAILFENCE_MAX_CONNECTIONS", "77", ["limits", "max_connections"], 77),
    ("TAILFENCE_THREADS", "3", ["threads"], 3),
    ("TAILFENCE_BUFFER_BYTES", "8192", ["limits", "buffer_bytes"], 8192),
    ("TAILFENCE_RELAY", "copy", ["limits", "relay"], "copy"),
    ("TAILFENCE_UDP_DESTINATIONS", "5", ["limits", "udp_destinations"], 5),
    ("TAILFENCE_UDP_RATE", "9", ["limits", "udp_datagrams_per_second"], 9),
    ("TAILFENCE_UDP_IDLE_TIMEOUT", "45s", ["limits", "udp_idle_timeout"], "45s"),
    ("TAILFENCE_DNS_SERVERS", "127.0.0.1:5353,::1", ["dns", "servers"],
     ["127.0.0.1:5353", "[::1]:53"]),
    ("TAILFENCE_HOSTS_FILE", "/tmp/hosts.test", ["dns", "hosts_file"], "/tmp/hosts.test"),
    ("TAILFENCE_AUDIT_LOG", "/tmp/a,b.jsonl", ["audit", "sinks"],
     [{"type": "file", "path": "/tmp/a,b.jsonl"}]),
    ("TAILFENCE_AUDIT_SYSLOG", "udp:127.0.0.1:514", ["audit", "sinks"],
     [{"type": "stdout"}, {"type": "syslog", "target": "udp:127.0.0.1:514"}]),
    ("TAILFENCE_AUDIT_ON_FAILURE", "deny", ["audit", "on_failure"], "deny"),
    ("TAILFENCE_AUDIT_HMAC_KEY", "/tmp/key.test", ["audit", "hmac_key_file"], "/tmp/key.test"),
    ("TAILFENCE_AUDIT_FLUSH_MS", "25", ["audit", "flush_ms"], 25),
    ("TAILFENCE_AUDIT_DURABILITY", "synced", ["audit", "durability"], "synced"),
    ("TAILFENCE_LOG_LEVEL", "debug", ["log_level"], "debug"),
    ("TAILFENCE_ADMIN", "127.0.0.1:9464", ["admin"], "127.0.0.1:9464"),
    ("TAILFENCE_UDP", "false", ["udp"], False),
    ("TAILSCALE_SOCKET", "/run/ts.sock", ["tailscaled_socket"], "/run/ts.sock"),
]


def at(d, path):
    for k in path:
        d = d[k]
    return d


@pytest.mark.parametrize("var,value,path,want", VARIABLES, ids=[v[0] for v in VARIABLES])
def test_every_variable_sets_its_setting(var, value, path, want, tailfence_cli):
    before = at(show(tailfence_cli), path)
    assert before != want, "the test value is the default"
    assert at(show(tailfence_cli, env={var: value}), path) == want


def test_inbound_variables_set_their_entry(tailfence_cli, tmp_path):
    """TAILFENCE_INBOUND and the three that shape its entries."""
    policy = tmp_path / "inbound-policy.json"
    policy.write_text('{"5432": [{"action": "accept", "from": ["tag:ops"]}]}')
    env = {"TAILSCALE_SOCKET": "/run/ts.sock", "TAILFENCE_INBOUND": "5432=127.0.0.1:5432"}
    entry = show(tailfence_cli, env=env)["inbound"]
    assert [(e["port"], e["target"]) for e in entry] == [(5432, "127.0.0.1:5432")]
    assert entry[0]["listen"] == "127.0.0.2:17100" and entry[0]["peer_check"] == "tailscaled"
    assert entry[0]["rules"] == []
    env.update(TAILFENCE_INBOUND_LISTEN="127.0.0.3:17000", TAILFENCE_INBOUND_PEER_CHECK="loopback",
               TAILFENCE_INBOUND_POLICY=str(policy))
    e = show(tailfence_cli, env=env)["inbound"][0]
    assert e["listen"] == "127.0.0.3:17000" and e["peer_check"] == "loopback"
    assert e["rules"] == [{"action": "accept", "from": ["tag:ops"]}]


INBOUND_VARIABLES = {"TAILFENCE_INBOUND", "TAILFENCE_INBOUND_LISTEN", "TAILFENCE_INBOUND_PEER_CHECK",
                     "TAILFENCE_INBOUND_POLICY"}


def test_every_documented_variable_is_tested(tailfence_cli):
    rows = reference_rows(tailfence_cli("config", "reference").stdout)
    documented = {r[2] for r in rows if r[2] != "-"}
    tested = {v[0] for v in VARIABLES} | INBOUND_VARIABLES
    assert documented - tested == {"TAILFENCE_CONFIG"}


def test_flag_beats_variable_beats_file(tmp_path, tailfence_cli):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"limits": {"idle_timeout": "5m"}, "audit": {"durability": "queued"}}')
    env = {"TAILFENCE_IDLE_TIMEOUT": "7m"}
    assert show(tailfence_cli, "--config", cfg)["limits"]["idle_timeout"] == "5m"
    assert show(tailfence_cli, "--config", cfg, env=env)["limits"]["idle_timeout"] == "7m"
    eff = show(tailfence_cli, "--config", cfg, "--idle-timeout", "9m", env=env)
    assert eff["limits"]["idle_timeout"] == "9m"
    assert eff["audit"]["durability"] == "queued"


def test_bad_variable_is_named_with_value_and_expectation(tailfence_cli):
    p = tailfence_cli("config", "show", env={"TAILFENCE_RELAY": "zerocopy"})
    assert p.returncode == 1
    assert 'TAILFENCE_RELAY: "zerocopy" is not a relay mode; expected splice or copy' \
        in p.stderr
    p = tailfence_cli("config", "show", env={"TAILFENCE_ALLOW_DEFAULT_ROUTE": "maybe"})
    assert p.returncode == 1
    assert 'TAILFENCE_ALLOW_DEFAULT_ROUTE: "maybe" is not a boolean' in p.stderr


def test_default_route_variable_lets_a_default_route_in(tailfence_cli):
    env = {"TAILSCALE_ADVERTISE_ROUTES": "0.0.0.0/0"}
    p = tailfence_cli("config", "check", env=env)
    assert p.returncode == 1 and "is a default route" in p.stderr, p.stderr
    env["TAILFENCE_ALLOW_DEFAULT_ROUTE"] = "true"
    p = tailfence_cli("config", "check", env=env)
    assert p.returncode == 0, p.stderr


def test_show_loads_back_and_means_the_same(tmp_path, tailfence_cli):
    hashed = tailfence_cli("passwd", input="show-pw-5521\n").stdout.strip()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({
        "users": {"carol": hashed},
        "lift_guards": ["loopback"],
        "rules": [
            {"name": "web", "action": "accept", "dst": ["127.0.0.1:8080"], "users": ["carol"]},
            {"action": "deny", "dst": ["127.0.0.2/32"]},
        ],
        "dns": {"hosts_file": None},
        "audit": {"sinks": [{"type": "file", "path": str(tmp_path / "a.jsonl")}]},
    }))
    args = ["--config", cfg, "--allow", "127.0.0.3:22", "--audit-syslog", "udp:127.0.0.1:514",
            "--listen", "127.0.0.1:1081"]
    first = tailfence_cli("config", "show", *args)
    assert first.returncode == 0, first.stderr
    shown = tmp_path / "shown.json"
    shown.write_text(first.stdout)
    # what config show printed is a config file that config check accepts
    p = tailfence_cli("config", "check", shown)
    assert p.returncode == 0, p.stderr
    # shown again, alone, it is the same config
    again = tailfence_cli("config", "show", "--config", shown)
    assert json.loads(again.stdout) == json.loads(first.stdout)
    eff = json.loads(first.stdout)
    assert eff["users"] == {"carol": hashed}
    assert eff["dns"]["hosts_file"] is None
    assert eff["audit"]["sinks"] == [{"type": "file", "path": str(tmp_path / "a.jsonl")},
                                     {"type": "syslog", "target": "udp:127.0.0.1:514"}]
    assert [r.get("name") for r in eff["rules"]] == ["web", None, "--allow 127.0.0.3:22"]
    # and check decides the same from either
    for target, user, rc in [("127.0.0.1:8080", "carol", 0), ("127.0.0.1:8080", None, 1),
                             ("127.0.0.2:80", "carol", 1), ("127.0.0.3:22", "carol", 0),
                             ("127.0.0.3:23", "carol", 1)]:
        who = ["--user", user] if user else []
        a = tailfence_cli("check", *args, *who, target)
        b = tailfence_cli("check", "--config", shown, *who, target)
        assert a.returncode == b.returncode == rc, (target, user, a.stdout, b.stdout)


def test_show_without_a_file_shows_the_default_rule_and_stdout(tailfence_cli):
    eff = show(tailfence_cli)
    assert eff["rules"] == [{"name": "default: accept routes:* for every user",
                             "action": "accept", "dst": ["routes:*"]}]
    assert eff["audit"]["sinks"] == [{"type": "stdout"}]
    assert eff["dns"]["hosts_file"] == "/etc/hosts"


@pytest.mark.parametrize("cmd,usage,own", [
    (["check"], "usage: tailfence check [FLAGS] [--user NAME] [--src IP] HOST:PORT",
     ["--user NAME", "--src IP"]),
    (["config", "check"], "usage: tailfence config check [FLAGS] [FILE]", []),
    (["config", "show"], "usage: tailfence config show [--redact] [FLAGS]", ["--redact"]),
    (["config", "check", "--env"], "usage: tailfence config check --env [FLAGS]", []),
    (["status"], "usage: tailfence status [--json] [FLAGS]", ["--json"]),
    ([], "usage: tailfence [run] [FLAGS]", []),
])
def test_each_command_has_its_own_help(cmd, usage, own, tailfence_cli):
    p = tailfence_cli(*cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(usage + "\n"), p.stdout[:200]
    for flag in own:
        assert "\n  " + flag in p.stdout
    # the daemon's settings are listed for every command that takes them
    assert "\n  --listen IP:PORT" in p.stdout
    if "check" not in cmd:
        assert "--user NAME" not in p.stdout


def test_check_only_flags_are_refused_by_the_daemon(tailfence_cli):
    p = tailfence_cli("config", "show", "--user", "alice")
    assert p.returncode == 2
    assert "--user is only for `tailfence check`" in p.stderr


# `config check` opens what the daemon will open at start, so a bad file
# stops a deploy before anything starts, not after tailscaled is up.
def file_cases(tmp_path):
    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return [
        (["--audit-hmac-key", tmp_path / "missing.key"],
         'audit.hmac_key_file: "%s": No such file or directory' % (tmp_path / "missing.key")),
        (["--audit-hmac-key", short], "key must be 16 to 4095 bytes"),
        (["--audit-log", tmp_path / "no" / "dir" / "a.jsonl"], "cannot be created: directory"),
        (["--hosts-file", tmp_path / "missing.hosts"], "dns.hosts_file: \"%s\": cannot be read"
         % (tmp_path / "missing.hosts")),
    ]


def test_config_check_opens_every_file(tmp_path, tailfence_cli):
    for args, says in file_cases(tmp_path):
        p = tailfence_cli("config", "check", *args)
        assert p.returncode == 1 and says in p.stderr, (args, p.stderr)
        # the daemon refuses the same, before it listens
        p = tailfence_cli("--listen", "127.0.0.1:%d" % free_port(), *args, timeout=20)
        assert p.returncode == 2 and says in p.stderr, (args, p.stderr)
    good = tmp_path / "good.key"
    good.write_text("k" * 32)
    p = tailfence_cli("config", "check", "--audit-hmac-key", good,
                      "--audit-log", tmp_path / "a.jsonl")
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "a.jsonl").exists(), "config check created the audit file"


def test_config_check_opens_files_as_the_calling_user(tmp_path, tailfence_bin):
    # A key only root may read, checked as another user (the service's).
    tmp_path.chmod(0o755)
    key = tmp_path / "root-only.key"
    key.write_text("k" * 32)
    key.chmod(0o600)
    env = sanitizer_env(clean_env())
    env["TAILSCALE_SOCKET"] = "none"
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    p = subprocess.run(nobody + [tailfence_bin, "config", "check", "--audit-hmac-key", str(key)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1, p.stderr
    assert 'audit.hmac_key_file: "%s": Permission denied' % key in p.stderr, p.stderr
    p = subprocess.run([tailfence_bin, "config", "check", "--audit-hmac-key", str(key)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
