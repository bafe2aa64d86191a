"""
Issue 3: bypass attempts that other proxies' users have reported. Each one
is made against a daemon whose rules WOULD accept the request (a hostname
rule `db.internal:*`, a prefix rule covering 127.0.0.0/8, or `*:PORT`) but
which guards loopback, so every attempt must be denied by the guard: the
client gets its protocol's refusal, the origin sees no connection at all,
and the audit decision says deny with guard "loopback". Most attempts are
paired with a control: the same request to a daemon with the guard lifted
goes through, so the denial is the guard's doing and not, say, an
unsupported address type.

  - a name that resolves to 127.0.0.1 (hosts file; a tiny DNS server on
    loopback), or to ::1;
  - ::ffff:127.0.0.1 as SOCKS5 IPv6 address, HTTP CONNECT literal and
    absolute-form URL; other spellings of loopback sent as names;
  - an IP literal when only a hostname rule allows that host (guard lifted:
    the rules alone decide);
  - mixed-case and trailing-dot names match a hostname rule (allowed),
    near-miss names do not;
  - a name whose other address is denied: only the allowed address is ever
    dialed, even when it refuses the connection.
"""

import json

import pytest

from helpers import (ATYP_DOMAIN, ATYP_IPV6, EchoOrigin, clean_env, free_port, http_connect_status,
                     http_get_status, sanitizer_env, socks4a_code, socks5_connect, socks5_rep)

NAME = "db.internal"


def config(tmp_path, rules, lift=False, name="policy.json"):
    cfg = {"rules": rules}
    if lift:
        cfg["lift_guards"] = ["loopback"]
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=2))
    return path


def daemon(tailfence, tmp_path, rules, lift, *args, name="policy.json"):
    path = config(tmp_path, rules, lift, name)
    return tailfence("--config", path, *args, allow=(), lift_guards=())


def assert_guard_denied(d, port, n=1):
    decs = d.wait_audit(type="decision", port=port, n=n)
    for dec in decs:
        assert dec["verdict"] == "deny", dec
        assert dec["guard"] == "loopback", dec
        assert "loopback" in dec["reason"], dec
    return decs


def name_rule(port="*"):
    return {"name": "db-name", "action": "accept", "dst": ["%s:%s" % (NAME, port)]}


LO_PREFIXES = {"name": "loopback-prefixes", "action": "accept", "dst": ["127.0.0.0/8:*", "[::1/128]:*"]}


# ------------------------------------------- a name that resolves to loopback

@pytest.mark.parametrize("lift", [False, True], ids=["guarded", "control-lifted"])
def test_name_resolving_to_loopback_via_hosts_file(lift, tailfence, origins, hosts_file, tmp_path):
    o = origins.echo("127.0.0.1")
    hosts = hosts_file({NAME: "127.0.0.1"})
    d = daemon(tailfence, tmp_path, [name_rule()], lift, "--hosts-file", hosts)
    attempts = [
        ("socks5", lambda: socks5_rep(d, NAME, o.port), 0x00, 0x02),
        ("socks4a", lambda: socks4a_code(d, NAME, o.port), 0x5A, 0x5B),
        ("http-connect", lambda: http_connect_status(d, "%s:%d" % (NAME, o.port)), 200, 403),
    ]
    for proto, attempt, ok, refused in attempts:
        got = attempt()
        assert got == (ok if lift else refused), "%s to %s (-> 127.0.0.1) answered %r" % (proto, NAME, got)
    if lift:
        assert o.count == len(attempts)
        decs = d.wait_audit(type="decision", verdict="allow", port=o.port, n=len(attempts))
        assert all(x["rule"] == "db-name" and x["host"] == NAME for x in decs), decs
        return
    assert o.count == 0, "the origin on 127.0.0.1 saw %d connection(s)" % o.count
    decs = assert_guard_denied(d, o.port, n=len(attempts))
    assert all(x["host"] == NAME and x["addr"] == "127.0.0.1" for x in decs), decs


def test_absolute_form_name_resolving_to_loopback(tailfence, origins, hosts_file, tmp_path):
    o = origins.http("127.0.0.1")
    d = daemon(tailfence, tmp_path, [name_rule()], False, "--hosts-file", hosts_file({NAME: "127.0.0.1"}))
    assert http_get_status(d, "%s:%d" % (NAME, o.port)) == 403
    assert o.count == 0
    assert_guard_denied(d, o.port)


def test_name_resolving_to_ipv6_loopback(tailfence, origins, hosts_file, tmp_path):
    o = origins.echo("::1")
    d = daemon(tailfence, tmp_path, [name_rule()], False, "--hosts-file", hosts_file({NAME: "::1"}))
    assert socks5_rep(d, NAME, o.port) == 0x02
    assert http_connect_status(d, "%s:%d" % (NAME, o.port)) == 403
    assert o.count == 0
    decs = assert_guard_denied(d, o.port, n=2)
    assert all(x["addr"] == "::1" for x in decs), decs


@pytest.mark.parametrize("lift", [False, True], ids=["guarded", "control-lifted"])
def test_name_resolving_to_loopback_via_dns(lift, tailfence, origins, dns, tmp_path):
    o = origins.echo("127.0.0.1")
    server = dns({NAME: ["127.0.0.1"]})
    empty = tmp_path / "empty-hosts"
    empty.write_text("")
    d = daemon(tailfence, tmp_path, [name_rule()], lift, "--dns-server", server.addr,
               "--hosts-file", empty)
    rep = socks5_rep(d, NAME, o.port)
    status = http_connect_status(d, "%s:%d" % (NAME, o.port))
    assert server.asked(NAME), "the DNS server was never asked: %r" % server.queries
    if lift:
        assert (rep, status) == (0, 200)
        assert o.count == 2
        return
    assert (rep, status) == (0x02, 403)
    assert o.count == 0
    decs = assert_guard_denied(d, o.port, n=2)
    assert all(x["host"] == NAME and x["addr"] == "127.0.0.1" for x in decs), decs


def test_dns_answer_with_loopback_in_both_families(tailfence, origins, dns, tmp_path):
    port = free_port("127.0.0.1", also=("::1",))
    o4 = origins.echo("127.0.0.1", port)
    o6 = origins.echo("::1", port)
    server = dns({NAME: ["127.0.0.1", "::1"]})
    empty = tmp_path / "empty-hosts"
    empty.write_text("")
    d = daemon(tailfence, tmp_path, [name_rule(), LO_PREFIXES], False, "--dns-server", server.addr,
               "--hosts-file", empty)
    assert socks5_rep(d, NAME, o4.port) == 0x02
    assert o4.count == 0 and o6.count == 0
    assert_guard_denied(d, o4.port)


# --------------------------------------------------------- ::ffff:127.0.0.1

@pytest.mark.parametrize("lift", [False, True], ids=["guarded", "control-lifted"])
def test_ipv4_mapped_loopback(lift, tailfence, origins, tmp_path):
    o = origins.echo("127.0.0.1")
    d = daemon(tailfence, tmp_path, [name_rule(), LO_PREFIXES], lift)
    attempts = [
        ("socks5 atyp 4", lambda: socks5_rep(d, "::ffff:127.0.0.1", o.port, atyp=ATYP_IPV6), 0, 0x02),
        ("connect mapped", lambda: http_connect_status(d, "[::ffff:127.0.0.1]:%d" % o.port), 200, 403),
        ("connect hex", lambda: http_connect_status(d, "[::ffff:7f00:1]:%d" % o.port), 200, 403),
        ("connect upper", lambda: http_connect_status(d, "[::FFFF:127.0.0.1]:%d" % o.port), 200, 403),
    ]
    for what, attempt, ok, refused in attempts:
        got = attempt()
        assert got == (ok if lift else refused), "%s answered %r" % (what, got)
    if lift:
        assert o.count == len(attempts)
        decs = d.wait_audit(type="decision", verdict="allow", port=o.port, n=len(attempts))
        assert all(x["addr"] == "127.0.0.1" for x in decs), decs
        return
    assert o.count == 0, "the origin saw %d connection(s)" % o.count
    decs = assert_guard_denied(d, o.port, n=len(attempts))
    assert all(x["addr"] == "127.0.0.1" for x in decs), decs


def test_ipv4_mapped_loopback_absolute_form(tailfence, origins, tmp_path):
    o = origins.http("127.0.0.1")
    d = daemon(tailfence, tmp_path, [name_rule(), LO_PREFIXES], False)
    assert http_get_status(d, "[::ffff:127.0.0.1]:%d" % o.port) == 403
    assert o.count == 0
    assert_guard_denied(d, o.port)


# Other spellings of loopback, sent where a name goes (SOCKS5 domain, SOCKS4a,
# CONNECT authority). A resolver might read them as addresses; whatever it
# makes of them, nothing may reach the origin on 127.0.0.1, although the
# rules accept all of loopback and the DNS server answers 127.0.0.1 and ::1
# for every name. (The rules name only loopback prefixes, so that a
# spelling read as some other address is denied without being dialed.)
SPELLINGS = ["127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1",
             "0177.0.0.1", "017700000001", "localhost", "LOCALHOST", "localhost.",
             "::ffff:127.0.0.1", "::1", "0:0:0:0:0:0:0:1", "[::1]", "127.0.0.1.", "127.000.000.001"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_loopback_spellings_as_names(spelling, tailfence, origins, dns, tmp_path):
    o = origins.echo("127.0.0.1")
    server = dns({"*": ["127.0.0.1", "::1"]})
    d = daemon(tailfence, tmp_path, [LO_PREFIXES], False, "--dns-server", server.addr)
    rep = socks5_rep(d, spelling, o.port, atyp=ATYP_DOMAIN)
    assert rep != 0, "SOCKS5 domain %r reached loopback" % spelling
    if ":" not in spelling:
        assert socks4a_code(d, spelling, o.port) == 0x5B
        status = http_connect_status(d, "%s:%d" % (spelling, o.port))
        assert status != 200, "CONNECT %s answered 200" % spelling
    assert o.count == 0, "%r reached the origin on loopback" % spelling
    decs = d.wait_audit(type="decision", port=o.port)
    for dec in decs:
        assert dec["verdict"] == "deny", dec


def test_loopback_spellings_control(tailfence, origins, dns, tmp_path):
    # The control for test_loopback_spellings_as_names: with the guard
    # lifted the same rule and DNS server do let a name through.
    o = origins.echo("127.0.0.1")
    server = dns({"*": ["127.0.0.1"]})
    d = daemon(tailfence, tmp_path, [LO_PREFIXES], True, "--dns-server", server.addr)
    assert socks5_rep(d, "anything.example", o.port) == 0
    assert o.count == 1


# Digits and dots that are not a dotted quad are not names, and resolvers
# disagree on them (0177 octal or decimal?): refused outright, even with the
# loopback guard lifted, before any lookup.
NUMERIC = ["127.1", "0177.0.0.1", "2130706433", "127.000.000.001", "127.0.0.1."]


@pytest.mark.parametrize("spelling", NUMERIC)
def test_numeric_names_are_refused_before_any_lookup(spelling, tailfence, origins, dns, tmp_path):
    o = origins.echo("127.0.0.1")
    server = dns({"*": ["127.0.0.1"]})
    d = daemon(tailfence, tmp_path, [LO_PREFIXES], True, "--dns-server", server.addr)
    assert socks5_rep(d, spelling, o.port, atyp=ATYP_DOMAIN) == 0x02
    assert o.count == 0
    dec = d.wait_audit(type="decision", verdict="deny", port=o.port)[0]
    assert "neither a host name nor an IPv4 address" in dec["reason"], dec
    assert not server.queries, "a numeric name was sent to DNS: %r" % server.queries


# ---------------------------------- IP literal when only a hostname rule allows

def test_ip_literal_does_not_match_a_hostname_rule(tailfence, origins, hosts_file, tmp_path):
    # Loopback guard lifted: only the rules decide. db.internal is allowed
    # by name; the same address asked for as a literal is not.
    o = origins.echo("127.0.0.1")
    d = daemon(tailfence, tmp_path, [name_rule()], True, "--hosts-file", hosts_file({NAME: "127.0.0.1"}))
    assert socks5_rep(d, "127.0.0.1", o.port) == 0x02
    assert socks5_rep(d, "::ffff:127.0.0.1", o.port, atyp=ATYP_IPV6) == 0x02
    assert socks4a_code(d, "127.0.0.1", o.port) == 0x5B
    assert http_connect_status(d, "127.0.0.1:%d" % o.port) == 403
    assert http_connect_status(d, "[::ffff:127.0.0.1]:%d" % o.port) == 403
    assert http_get_status(d, "127.0.0.1:%d" % o.port) == 403
    assert o.count == 0
    decs = d.wait_audit(type="decision", port=o.port, n=6)
    for dec in decs:
        assert dec["verdict"] == "deny" and dec["guard"] is None and dec["rule"] is None, dec
        assert dec["reason"], dec
    # the name itself goes through: the rule works
    assert socks5_rep(d, NAME, o.port) == 0
    assert o.count == 1
    dec = d.wait_audit(type="decision", verdict="allow", port=o.port)[0]
    assert dec["host"] == NAME and dec["rule"] == "db-name", dec


# ------------------------------------------------ mixed case, trailing dot

VARIANTS = ["DB.Internal", "db.internal.", "DB.INTERNAL.", "dB.iNtErNaL"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_case_and_trailing_dot_match_the_rule(variant, tailfence, origins, hosts_file, tmp_path):
    o = origins.echo("127.0.0.1")
    d = daemon(tailfence, tmp_path, [name_rule(o.port)], True,
               "--hosts-file", hosts_file({NAME: "127.0.0.1"}), "--dns-timeout", "1s")
    assert socks5_rep(d, variant, o.port) == 0, "SOCKS5 %s" % variant
    assert http_connect_status(d, "%s:%d" % (variant, o.port)) == 200, "CONNECT %s" % variant
    assert socks4a_code(d, variant, o.port) == 0x5A, "SOCKS4a %s" % variant
    assert o.count == 3
    decs = d.wait_audit(type="decision", verdict="allow", port=o.port, n=3)
    assert all(x["rule"] == "db-name" and x["addr"] == "127.0.0.1" for x in decs), decs


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_case_and_trailing_dot_via_dns(variant, tailfence, origins, dns, tmp_path):
    o = origins.echo("127.0.0.1")
    server = dns({NAME: ["127.0.0.1"]})
    empty = tmp_path / "empty-hosts"
    empty.write_text("")
    d = daemon(tailfence, tmp_path, [name_rule(o.port)], True, "--dns-server", server.addr,
               "--hosts-file", empty)
    assert socks5_rep(d, variant, o.port) == 0, "SOCKS5 %s (DNS asked: %r)" % (variant, server.queries)
    assert o.count == 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_case_and_trailing_dot_still_meet_the_guard(variant, tailfence, origins, dns, hosts_file,
                                                          tmp_path):
    o = origins.echo("127.0.0.1")
    server = dns({NAME: ["127.0.0.1"]})
    empty = tmp_path / "empty-hosts"
    empty.write_text("")
    d = daemon(tailfence, tmp_path, [name_rule()], False, "--dns-server", server.addr,
               "--hosts-file", empty)
    assert socks5_rep(d, variant, o.port) == 0x02
    assert http_connect_status(d, "%s:%d" % (variant, o.port)) == 403
    assert o.count == 0
    assert_guard_denied(d, o.port, n=2)
    # the same names from a hosts file: whatever the resolver makes of
    # them, nothing reaches loopback
    d2 = daemon(tailfence, tmp_path, [name_rule()], False, "--hosts-file",
                hosts_file({NAME: "127.0.0.1"}), "--dns-timeout", "1s", name="policy2.json")
    assert socks5_rep(d2, variant, o.port) not in (0, None)
    assert http_connect_status(d2, "%s:%d" % (variant, o.port)) != 200
    assert o.count == 0


NEAR_MISSES = ["db.internal.evil", "xdb.internal", "db-internal", "db.internal..", "db.internals",
               "db.internal\x00.evil", "db%2einternal", ".db.internal"]


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_near_miss_names_do_not_match(name, tailfence, origins, dns, tmp_path):
    o = origins.echo("127.0.0.1")
    server = dns({"*": ["127.0.0.1"]})
    d = daemon(tailfence, tmp_path, [name_rule()], True, "--dns-server", server.addr)
    rep = socks5_rep(d, name, o.port, atyp=ATYP_DOMAIN)
    assert rep != 0, "%r matched the rule for %s" % (name, NAME)
    assert o.count == 0
    # the control: the real name through the same daemon
    assert socks5_rep(d, NAME, o.port) == 0
    assert o.count == 1


# ------------------------------------------ a name whose other address is denied

MULTI = "multi.internal"


def multi_rules():
    # The hostname rule comes first; the deny rule after it still applies to
    # every address the name resolves to.
    return [{"name": "multi-name", "action": "accept", "dst": [MULTI + ":*"]},
            {"name": "no-127.0.1", "action": "deny", "dst": ["127.0.1.0/24:*"]}]


@pytest.mark.parametrize("order", ["denied-first", "denied-second"])
def test_name_with_a_denied_address_dials_only_the_allowed_one(order, tailfence, origins, tmp_path):
    allowed = origins.echo("127.0.0.1")
    denied = origins._keep(EchoOrigin("127.0.1.1", allowed.port))
    lines = ["127.0.1.1 " + MULTI, "127.0.0.1 " + MULTI]
    if order == "denied-second":
        lines.reverse()
    hosts = tmp_path / "hosts"
    hosts.write_text("\n".join(lines) + "\n")
    d = daemon(tailfence, tmp_path, multi_rules(), True, "--hosts-file", hosts)
    for _ in range(3):
        assert socks5_rep(d, MULTI, allowed.port) == 0
        assert http_connect_status(d, "%s:%d" % (MULTI, allowed.port)) == 200
    assert allowed.count == 6
    assert denied.count == 0, "the denied address 127.0.1.1 was dialed"
    decs = d.wait_audit(type="decision", verdict="allow", port=allowed.port, n=6)
    assert all(x["addr"] == "127.0.0.1" and x["rule"] == "multi-name" for x in decs), decs


def test_name_with_a_denied_address_no_fallback_when_allowed_refuses(tailfence, origins, tmp_path):
    # The allowed address has no listener; the denied one does. The client
    # must get a failure, never the denied origin.
    denied = origins.echo("127.0.1.1")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 %s\n127.0.1.1 %s\n" % (MULTI, MULTI))
    d = daemon(tailfence, tmp_path, multi_rules(), True, "--hosts-file", hosts)
    with d.connect() as s:
        rep, _, _ = socks5_connect(s, MULTI, denied.port)
        assert rep != 0, "connected although the only allowed address refuses"
    assert http_connect_status(d, "%s:%d" % (MULTI, denied.port)) != 200
    assert denied.count == 0, "the denied address 127.0.1.1 was dialed"


def test_name_with_only_denied_addresses_is_denied_by_the_rule(tailfence, origins, tmp_path):
    denied = origins.echo("127.0.1.1")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.1.1 %s\n127.0.1.2 %s\n" % (MULTI, MULTI))
    d = daemon(tailfence, tmp_path, multi_rules(), True, "--hosts-file", hosts)
    assert socks5_rep(d, MULTI, denied.port) == 0x02
    assert denied.count == 0
    dec = d.wait_audit(type="decision", verdict="deny", port=denied.port)[0]
    assert dec["rule"] == "no-127.0.1" and dec["guard"] is None, dec


def test_name_with_a_denied_address_via_dns_across_families(tailfence, origins, dns, tmp_path):
    # A -> 127.0.1.1 (denied by the rule), AAAA -> ::1 (allowed): only ::1.
    port = free_port("::1", also=("127.0.1.1",))
    v6 = origins.echo("::1", port)
    denied = origins.echo("127.0.1.1", port)
    server = dns({MULTI: ["127.0.1.1", "::1"]})
    empty = tmp_path / "empty-hosts"
    empty.write_text("")
    d = daemon(tailfence, tmp_path, multi_rules(), True, "--dns-server", server.addr,
               "--hosts-file", empty)
    for _ in range(3):
        assert socks5_rep(d, MULTI, v6.port) == 0
    assert v6.count == 3
    assert denied.count == 0
    decs = d.wait_audit(type="decision", verdict="allow", port=v6.port, n=3)
    assert all(x["addr"] == "::1" for x in decs), decs


# ----------------------------------------------- the system's hosts file

def start_with_etc_hosts(tailfence_bin, tmp_path, hosts, *args):
    """A daemon started in a mount namespace of its own with `hosts` bound
    over /etc/hosts (unshare and sh exec into tailfence: same pid)."""
    from conftest import Tailfence
    f = tmp_path / "etc-hosts"
    f.write_text(hosts)
    port = free_port()
    audit = str(tmp_path / "audit-etc-hosts.jsonl")
    argv = ["unshare", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(f),
            tailfence_bin, "--listen", "127.0.0.1:%d" % port, "--upstream", "direct",
            "--audit-log", audit] + [str(a) for a in args]
    d = Tailfence(tailfence_bin, argv, [port], audit, tmp_path / "tailfence-etc-hosts.log",
                  sanitizer_env(clean_env()))
    d.wait_ready()
    return d


@pytest.mark.parametrize("lift", [False, True], ids=["guarded", "control-lifted"])
def test_name_from_the_system_hosts_file_with_a_dns_server(lift, tailfence_bin, origins, dns, tmp_path):
    # No --hosts-file: the system's /etc/hosts answers before the configured
    # nameserver (docs/config.md, dns.hosts_file: "system default").
    o = origins.echo("127.0.0.1")
    server = dns({})
    path = config(tmp_path, [name_rule()], lift)
    d = start_with_etc_hosts(tailfence_bin, tmp_path, "127.0.0.1 %s\n" % NAME, "--config", path,
                             "--dns-server", server.addr, "--dns-timeout", "1s")
    try:
        rep = socks5_rep(d, NAME, o.port)
        if lift:
            assert rep == 0, "SOCKS5 0x%02x for a name in /etc/hosts (DNS asked: %r)" % (
                rep if rep is not None else -1, server.queries)
            assert o.count == 1
        else:
            assert rep == 0x02, rep
            assert o.count == 0
            assert_guard_denied(d, o.port)
    finally:
        assert d.stop() == 0
