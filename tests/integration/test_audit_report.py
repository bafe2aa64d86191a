"""
`tailfence audit report`: the HTML report and its --json aggregates.

- A recorded session (three daemon runs on one HMAC-chained file: a clean
  stop, a rotation, a SIGKILL, a restart) gives known answers: the report's
  figures are checked against what the test did and against the test's own
  count over the records, with filters, gzip-compressed rotated files, and
  the chain verdict (files out of order do not verify, exit status 1).
- A made-up trail over three days checks what a short session cannot:
  new destinations against the history before --since, the tailnet path
  and peer per destination, records lost or missing, unknown record types.
- Hostile host and user names (markup, quotes, &, invalid UTF-8, control
  bytes, ANSI escapes, a right-to-left override), sent through the daemon
  and, raw, in every string field of made-up records, come out escaped:
  the page holds no element or attribute the report does not write
  itself, and shows the bytes spelled out.
- Headless Chromium (Debian's `chromium`, inside the suite's network
  namespace with only lo) renders the reports to PNG and DOM without a
  console message or failed load; the page references nothing outside
  itself.
- A 200k-record trail with many distinct keys stays within a memory bound
  (peak RSS from wait4) and says that its tables were capped.
"""

import gzip
import html.parser
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from helpers import (clean_env, recv_exact, sanitizer_report, socks5_connect, socks5_read_reply,
                     wait_until)

CHROMIUM = "/usr/bin/chromium"

# Names that must never reach the page as markup or raw bytes.
HOSTILE = [
    b"<script>alert(1)</script>.test",
    b"\"'><img src=x onerror=alert(1)>&amp;.test",
    b"bad\xff\xfe\xc3(utf8.test",
    b"ctl\x01\x07\x08\x7f.test",
    b"ansi\x1b[31mred\x1b[0m\x1b]0;title\x07.test",
    b"rtl\xe2\x80\xaegnp.exe.test",
]


# ------------------------------------------------------------------ helpers

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


def _records(*paths):
    """Records of plain or gzip files, in order; bytes that are not UTF-8
    kept as surrogate escapes (hostile names are in there)."""
    out = []
    for p in paths:
        opener = gzip.open if str(p).endswith(".gz") else open
        with opener(p, "rb") as f:
            for line in f.read().decode("utf-8", "surrogateescape").splitlines():
                if line.strip():
                    out.append(json.loads(line))
    return out


def _report_json(tailfence_cli, *args):
    p = tailfence_cli("audit", "report", "--json", "-q", *args)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout), p.returncode


def _rows(table, *keys):
    """{key tuple: row} of a report table."""
    return {tuple(r[k] for k in keys): r for r in table["rows"]}


def _wait_closes(path, n, timeout=10.0):
    """Waits until path holds at least n close records."""
    def closes():
        recs = _records(path) if os.path.exists(path) else []
        return [r["type"] for r in recs].count("close")
    wait_until(lambda: closes() >= n, timeout, "%d close records in %s" % (n, path),
               interval=0.05, detail=lambda: "found %d" % closes())


def record_session(tailfence, echo_origin, tmp_path):
    """Three daemon runs on one chained file. Run 1: 3 allowed from
    127.0.0.1 (100 bytes each way), then a rotation, 2 allowed from
    127.0.0.2 (10 bytes) and 2 denied, a clean stop. Run 2: one allowed
    (50 bytes), then SIGKILL. Run 3: one denied from 127.0.0.3, a clean
    stop. Returns (key, rotated file, live file)."""
    key = tmp_path / "audit.key"
    key.write_text(os.urandom(24).hex())
    key.chmod(0o600)
    log = str(tmp_path / "audit.jsonl")
    args = ("--audit-log", log, "--audit-hmac-key", str(key))

    d = tailfence(*args)
    for _ in range(3):
        assert _conn(d, "127.0.0.1", echo_origin.host, echo_origin.port, b"a" * 100) == 0
    d.wait_audit(type="close", n=3)
    os.rename(log, log + ".1")
    os.kill(d.proc.proc.pid, signal.SIGUSR1)
    wait_until(lambda: os.path.exists(log), 10, "the daemon to reopen %s after SIGUSR1" % log,
               interval=0.02)
    for _ in range(2):
        assert _conn(d, "127.0.0.2", echo_origin.host, echo_origin.port, b"b" * 10) == 0
    assert _conn(d, "127.0.0.2", "127.0.1.1", 22) != 0
    assert _conn(d, "127.0.0.2", "127.0.1.2", 5432) != 0
    d.wait_audit(type="close", n=4)
    d.stop()

    d = tailfence(*args)
    assert _conn(d, "127.0.0.1", echo_origin.host, echo_origin.port, b"c" * 50) == 0
    _wait_closes(log, 5)  # on disk; nothing else is queued until a rotation or shutdown
    d.stop(sig=signal.SIGKILL, expect=-signal.SIGKILL)

    d = tailfence(*args)
    assert _conn(d, "127.0.0.3", "127.0.1.3", 80) != 0
    _wait_closes(log, 6)
    d.stop()
    return key, log + ".1", log


def _own_count(recs):
    """The test's own count over the records: totals and per destination."""
    dec = [r for r in recs if r["type"] == "decision"]
    closes = [r for r in recs if r["type"] == "close"]
    dst = {}
    for r in dec:
        k = "%s:%d" % (r["host"], r["port"])
        row = dst.setdefault(k, {"allowed": 0, "denied": 0})
        row["allowed" if r["verdict"] == "allow" else "denied"] += 1
    return {
        "allowed": sum(r["verdict"] == "allow" for r in dec),
        "denied": sum(r["verdict"] == "deny" for r in dec),
        "closed": len(closes),
        "bytes_up": sum(r["bytes_up"] for r in closes),
        "bytes_down": sum(r["bytes_down"] for r in closes),
        "max_duration": max(r["duration_ms"] for r in closes if r["end"] != "denied"),
        "dst": dst,
    }


# ------------------------------------------------------ the recorded session

def test_report_figures_on_recorded_session(tailfence, tailfence_cli, echo_origin, tmp_path):
    key, rotated, live = record_session(tailfence, echo_origin, tmp_path)
    gz = rotated + ".gz"
    with open(rotated, "rb") as f, gzip.open(gz, "wb") as g:
        g.write(f.read())
    os.unlink(rotated)
    recs = _records(gz, live)
    own = _own_count(recs)
    assert (own["allowed"], own["denied"], own["closed"]) == (6, 3, 9), own
    assert own["bytes_up"] == own["bytes_down"] == 3 * 100 + 2 * 10 + 50

    out = tmp_path / "report.html"
    p = tailfence_cli("audit", "report", "--key", key, gz, live, "-o", out)
    assert p.returncode == 0, p.stderr
    j, rc = _report_json(tailfence_cli, "--key", key, gz, live)
    assert rc == 0
    t = j["totals"]
    for k in ("allowed", "denied", "closed", "bytes_up", "bytes_down"):
        assert t[k] == own[k], (k, t, own)
    assert t["closed_without_decision"] == 0 and t["bad_lines"] == 0
    assert t["records"] == t["lines"] == len(recs)
    assert (t["users"], t["clients"]) == (1, 3), t
    assert j["period"]["first"] == recs[0]["ts"] and j["period"]["last"] == recs[-1]["ts"]

    assert j["chain"]["checked"] and j["chain"]["verified"], j["chain"]
    assert j["chain"]["records"] == len(recs)
    lc = j["lifecycle"]
    assert (lc["start"], lc["shutdown"], lc["unclean_shutdown"], lc["stopped"]) == (3, 2, 1, 1), lc
    starts = [r["ts"] for r in recs if r["type"] == "start"]
    recovery = [r for r in recs if r["type"] == "recovery"]
    assert lc["recovery"] == len(recovery) == 1 and lc["unclosed_connections"] == 0, recovery
    unclean = [e for e in lc["events"] if e["kind"] == "unclean_shutdown"]
    assert [(e["ts"], e["until"]) for e in unclean] == [(recovery[0]["last_ts"], starts[2])], (
        unclean, starts, recovery)
    stopped = [e for e in lc["events"] if e["kind"] == "stopped"]
    assert [e["until"] for e in stopped] == [starts[1]], stopped

    # the timeline adds up to the totals
    b = j["timeline"]["buckets"]
    assert sum(x["allowed"] for x in b) == 6 and sum(x["denied"] for x in b) == 3
    assert sum(x["bytes_up"] for x in b) == own["bytes_up"]
    assert sum(x["bytes_down"] for x in b) == own["bytes_down"]

    # per destination and per user x destination, as the test counted
    dsts = _rows(j["destinations"], "destination")
    assert {k[0]: {"allowed": r["allowed"], "denied": r["denied"]} for k, r in dsts.items()} == own["dst"]
    echo = "%s:%d" % (echo_origin.host, echo_origin.port)
    pair = _rows(j["users_destinations"], "user", "destination")[("-", echo)]
    assert (pair["allowed"], pair["closed"], pair["bytes_up"]) == (6, 6, 370), pair
    assert dsts[(echo,)]["addr"] == echo_origin.host and dsts[(echo,)]["path"] is None

    denied = _rows(j["denied"], "destination", "guard", "rule", "user")
    assert sorted(k[0] for k in denied) == ["127.0.1.1:22", "127.0.1.2:5432", "127.0.1.3:80"]
    reasons = {"%s:%d" % (r["host"], r["port"]): r["reason"]
               for r in recs if r["type"] == "decision" and r["verdict"] == "deny"}
    for k, row in denied.items():
        assert row["denied"] == 1 and row["reason"] == reasons[k[0]], row

    busiest = j["busiest"]
    assert [c["bytes_up"] + c["bytes_down"] for c in busiest][:4] == [200, 200, 200, 100], busiest
    assert busiest[0]["client"] == "127.0.0.1" and busiest[0]["destination"] == echo
    assert j["longest"][0]["duration_ms"] == own["max_duration"]
    assert all(j["longest"][i]["duration_ms"] >= j["longest"][i + 1]["duration_ms"]
               for i in range(len(j["longest"]) - 1))
    assert j["new_destinations"]["history"] == "first_day"

    # the HTML shows the same figures
    page = out.read_text(encoding="utf-8")
    cards = dict((label, value) for value, label in
                 re.findall(r'<div class="card[^"]*"><b>([^<]*)</b><span>([^<]*)</span>', page))
    assert (cards["allowed"], cards["denied"], cards["closed"]) == ("6", "3", "9"), cards
    assert cards["unclean shutdowns"] == "1" and cards["bytes up"] == "370 B", cards
    assert "HMAC chain verified" in page

    # filters select connections, as for `tailfence audit`
    j, _ = _report_json(tailfence_cli, "--client", "127.0.0.2", gz, live)
    assert (j["totals"]["allowed"], j["totals"]["denied"], j["totals"]["bytes_up"]) == (2, 2, 20)
    assert j["period"]["filters"] == "--client 127.0.0.2"
    j, _ = _report_json(tailfence_cli, "--verdict", "deny", gz, live)
    assert (j["totals"]["allowed"], j["totals"]["denied"], j["totals"]["bytes_up"]) == (0, 3, 0)
    j, _ = _report_json(tailfence_cli, "--until", "1h", gz, live)
    assert j["totals"]["in_period"] == 0 and j["period"]["first"] is None

    # files in the wrong order: the report is written, the chain is not verified
    j, rc = _report_json(tailfence_cli, "--key", key, live, gz)
    assert rc == 1 and j["chain"]["verified"] is False, j["chain"]
    assert j["lifecycle"]["chain_break"] == 1


# ------------------------------------------------------- a made-up trail

DAY1, DAY2, DAY3 = "2024-05-01", "2024-05-02", "2024-05-03"


def _synthetic(tmp_path, extra=()):
    """Three days of records with known answers. Day 1: db and api. Day 2:
    db and cache (new), a denied ssh, a crash (recovery record naming two
    unclosed connections, then a start). Day 3: vault (new, over the
    tailnet, peer changes), api over the host's network; a tailnet change,
    a record type nobody knows yet, a sink_error (3 lost) and a seq gap (2
    missing). Returns the files (day 1 gzip-compressed, days 2-3 plain)."""
    seq = [0]

    def rec(ts, typ, **kw):
        r = {"v": 1, "seq": seq[0], "ts": ts, "type": typ}
        seq[0] += 1
        r.update(kw)
        return r

    def conn(day, hh, cid, user, host, port, addr, allow=True, up=0, down=0, dur=1000, **kw):
        ts = "%sT%s:00:00.000Z" % (day, hh)
        close_ts = "%sT%s:00:%02d.000Z" % (day, hh, dur // 1000)
        d = rec(ts, "decision", conn=cid, client="127.0.0.5:4%04d" % cid, listener="127.0.0.1:1080",
                proto="socks5", user=user, host=host, port=port, addr=addr,
                verdict="allow" if allow else "deny", rule="r1" if allow else None,
                guard=None, reason="rule r1 accepts" if allow else "no rule matches",
                upstream="direct", **kw)
        c = rec(close_ts, "close", conn=cid, client=d["client"], proto="socks5",
                addr=addr if allow else None, bytes_up=up, bytes_down=down, duration_ms=dur,
                end="client_eof" if allow else "denied", error=None)
        return [d, c]

    day1 = [rec(DAY1 + "T08:00:00.000Z", "start", detail="direct", version="0.1.0", pid=1)]
    day1 += conn(DAY1, "09", 1, "alice", "db.example", 5432, "192.0.2.10", up=100, down=1000)
    day1 += conn(DAY1, "10", 2, "bob", "api.example", 443, "192.0.2.11", up=10, down=20)
    day2 = conn(DAY2, "09", 3, "alice", "db.example", 5432, "192.0.2.10", up=5, down=5)
    day2 += conn(DAY2, "10", 4, "bob", "cache.example", 6379, "192.0.2.12", up=7, down=7, dur=30000)
    day2 += conn(DAY2, "11", 5, "bob", "ssh.example", 22, "192.0.2.13", allow=False)
    # a crash at 11:30: the daemon starts again at 12:00, its recovery
    # record first (docs/audit.md)
    day2.append(rec(DAY2 + "T12:00:00.000Z", "recovery",
                    detail="the previous run (pid 1) ended without a shutdown record",
                    file="audit.jsonl", prev_pid=1, prev_start=DAY1 + "T08:00:00.000Z",
                    last_ts=DAY2 + "T11:30:00.000Z", last_seq=None, unclosed=[7, 9],
                    complete=True))
    day2.append(rec(DAY2 + "T12:00:00.001Z", "start", detail="direct", version="0.1.0", pid=2))
    day3 = conn(DAY3, "09", 1, "alice", "vault.example", 8200, "100.64.0.7",
                path="tailnet", peer={"name": "vault-node", "id": "nABC", "route": None},
                up=1, down=2)
    day3 += conn(DAY3, "10", 2, "alice", "vault.example", 8200, "100.64.0.7",
                 path="tailnet", peer={"name": "vault-node-2", "id": "nDEF",
                                       "route": "100.64.0.0/24"}, up=1, down=2)
    day3 += conn(DAY3, "11", 3, "bob", "api.example", 443, "192.0.2.11", path="host", peer=None)
    day3.append(rec(DAY3 + "T12:00:00.000Z", "tailnet", state="running", reason=None,
                    self="a.tailnet.test", peers=3, carried=4, added=[],
                    removed=[{"prefix": "192.0.2.0/24", "peer": "b.tailnet.test",
                              "peer_id": "2", "kind": "route"}]))
    day3.append(rec(DAY3 + "T12:30:00.000Z", "future_type", x=1))
    day3.append(rec(DAY3 + "T13:00:00.000Z", "sink_error", sink="syslog udp:127.0.0.1:514",
                    lost=3, error="connection refused"))
    seq[0] += 2  # two records went missing
    day3.append(rec(DAY3 + "T14:00:00.000Z", "reload", detail="flags and environment"))
    day3.extend(extra)
    day3.append(rec(DAY3 + "T23:00:00.000Z", "shutdown", detail=None))

    (tmp_path / "made-up").mkdir(exist_ok=True)
    f1 = tmp_path / "made-up" / "audit.jsonl-day1.gz"
    with gzip.open(f1, "wb") as g:
        g.write(b"".join(json.dumps(r).encode() + b"\n" for r in day1))
    f2 = tmp_path / "made-up" / "audit.jsonl"
    f2.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogateescape")
                            + b"\n" for r in day2 + day3))
    return [str(f1), str(f2)]


def test_report_new_destinations_peers_and_holes(tailfence_cli, tmp_path):
    files = _synthetic(tmp_path)
    j, rc = _report_json(tailfence_cli, *files)
    assert rc == 0
    t = j["totals"]
    assert (t["allowed"], t["denied"], t["closed"], t["users"], t["destinations"]) == (7, 1, 8, 2, 5), t
    assert t["tailnet_decisions"] == 3
    # no --since: the first day is the history
    nd = j["new_destinations"]
    assert nd["history"] == "first_day" and nd["history_until"] == DAY2 + "T00:00:00.000Z"
    assert sorted(nd["destinations"]) == ["cache.example:6379", "ssh.example:22", "vault.example:8200"]

    # --since: the records before it are the history, not otherwise counted
    j2, _ = _report_json(tailfence_cli, "--since", DAY3, *files)
    assert j2["new_destinations"]["history"] == "before_period"
    assert j2["new_destinations"]["destinations"] == ["vault.example:8200"]
    assert j2["new_destinations"]["history_destinations"] == 4
    assert (j2["totals"]["allowed"], j2["totals"]["denied"]) == (3, 0)
    j3, _ = _report_json(tailfence_cli, "--since", DAY2, "--until", DAY3, *files)
    assert sorted(j3["new_destinations"]["destinations"]) == ["cache.example:6379", "ssh.example:22"]

    # peer and path per destination
    d = _rows(j["destinations"], "destination")
    vault = d[("vault.example:8200",)]
    assert vault["path"] == "tailnet" and vault["new"], vault
    assert vault["peer"] == {"name": "vault-node-2", "id": "nDEF", "route": "100.64.0.0/24",
                             "changed": True}, vault
    api = d[("api.example:443",)]
    assert api["path"] == "host" and api["peer"]["name"] is None and not api["new"], api
    assert d[("db.example:5432",)]["path"] is None

    lc = j["lifecycle"]
    assert (lc["start"], lc["unclean_shutdown"], lc["recovery"], lc["reload"]) == (2, 1, 1, 1), lc
    assert lc["unclosed_connections"] == 2
    unclean = [e for e in lc["events"] if e["kind"] == "unclean_shutdown"]
    assert [(e["ts"], e["until"]) for e in unclean] == [
        (DAY2 + "T11:30:00.000Z", DAY2 + "T12:00:00.001Z")], unclean
    assert (lc["sink_error"], lc["lost_records"]) == (1, 3), lc
    assert (lc["seq_gap"], lc["missing_records"]) == (1, 2), lc
    tn = [e for e in lc["events"] if e["kind"] == "tailnet"]
    assert lc["tailnet"] == 1 and "removed 192.0.2.0/24 (b.tailnet.test, route)" in tn[0]["detail"]
    assert _rows(j["unknown_types"], "key") == {("future_type",): {"key": "future_type", "count": 1}}
    assert j["chain"] == {"checked": False, "verified": None, "records": 0, "message": None}

    # the bytes of a 30 s connection are spread over the interval(s) it spans
    b = j["timeline"]["buckets"]
    assert sum(x["bytes_up"] for x in b) == t["bytes_up"] == 100 + 10 + 5 + 7 + 1 + 1

    page = tmp_path / "r.html"
    p = tailfence_cli("audit", "report", "-q", *files, "-o", page)
    assert p.returncode == 0, p.stderr
    text = page.read_text(encoding="utf-8")
    assert "vault-node-2" in text and "changed" in text and "via 100.64.0.0/24" in text
    assert "New destinations (3)" in text and "records lost" in text


def test_report_reads_stdin_and_rejects_bad_arguments(tailfence_cli, tmp_path):
    files = _synthetic(tmp_path)
    p = tailfence_cli("audit", "report", "--json", "-q", input=open(files[1]).read())
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["period"]["inputs"] == ["-"]
    p = tailfence_cli("audit", "report", "--top", "0", files[1])
    assert p.returncode == 2 and "--top" in p.stderr
    p = tailfence_cli("audit", "report", "--since", "yesterday", files[1])
    assert p.returncode == 2 and "--since" in p.stderr
    p = tailfence_cli("audit", "report", "-o", tmp_path / "x.html", tmp_path / "missing.jsonl")
    assert p.returncode == 2 and "missing.jsonl" in p.stderr
    assert not (tmp_path / "x.html").exists()


# ------------------------------------------------------------ hostile names

ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "main", "nav", "section",
                "h1", "h2", "p", "a", "b", "i", "code", "span", "div", "table", "thead", "tbody",
                "tr", "th", "td", "svg", "g", "rect", "line", "path", "text", "title"}
ALLOWED_ATTRS = {"lang", "charset", "http-equiv", "content", "name", "href", "id", "class", "style",
                 "viewbox", "role", "aria-label", "xmlns", "x", "y", "x1", "y1", "x2", "y2",
                 "width", "height", "fill", "fill-opacity", "stroke", "stroke-width",
                 "stroke-dasharray", "text-anchor", "d"}


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)

    def handle_data(self, data):
        self.text.append(data)


def assert_safe_page(raw):
    """The page is UTF-8, has no raw control byte, and holds only the
    elements and attributes the report writes itself; links point inside."""
    text = raw.decode("utf-8")  # raises on invalid UTF-8
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n") or 0x7f <= ord(c) <= 0x9f
           or c in "\u202e\u202d\u2066\u2067\u2068"]
    assert not bad, "raw control characters in the page: %r" % bad[:10]
    p = _Page()
    p.feed(text)
    assert p.tags <= ALLOWED_TAGS, p.tags - ALLOWED_TAGS
    extra = {(t, k) for t, k, _ in p.attrs if k not in ALLOWED_ATTRS}
    assert not extra, extra
    for tag, k, v in p.attrs:
        if k == "href":
            assert v.startswith("#"), (tag, k, v)
        if k == "style":
            assert re.fullmatch(r"background:#[0-9a-f]{6}", v), (tag, k, v)
    # "<" in text is always escaped, so this would be markup
    assert not re.search(r"<\s*(script|img|iframe|object|embed|link|base|form)", text, re.I)
    styles = re.findall(r"<style>(.*?)</style>", text, re.S)
    assert len(styles) == 1 and not re.search(r"url\(|@import|@font-face", styles[0], re.I)
    return p


def _socks5_userpass(d, src, user, host, port):
    """A SOCKS5 request from address src that logs in with user/password;
    returns the status of the login (0 success) or the request's reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.bind((src, 0))
        s.connect((d.host, d.port))
        s.sendall(b"\x05\x01\x02")
        assert recv_exact(s, 2) == b"\x05\x02"
        s.sendall(b"\x01" + bytes([len(user)]) + user + b"\x02pw")
        ver, status = recv_exact(s, 2)
        if status != 0:
            return status
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack("!H", port))
        return socks5_read_reply(s)[0]


def _cell(raw, text):
    """Is text the whole content of a table cell of the page (HTML source)?"""
    return ('<td class="k">%s</td>' % text).encode() in raw


def test_report_escapes_hostile_names(tailfence, tailfence_cli, tmp_path):
    # Through the daemon: each name as a SOCKS5 destination and as a login
    # (from its own address: failed logins slow down per client). Nothing
    # is allowed, so names are denied before any lookup. The daemon writes
    # valid UTF-8 (bytes that are not become U+FFFD) and JSON-escapes
    # control characters; the report gets them back as characters.
    # Logins are checked only when users exist: a second daemon has one.
    d = tailfence(allow=(), lift_guards=())
    hashed = tailfence_cli("passwd", input="report-pw-8812\n").stdout.strip()
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": {"someone": hashed}}))
    du = tailfence("--config", users, allow=(), lift_guards=())
    for i, name in enumerate(HOSTILE):
        with socket.create_connection((d.host, d.port), timeout=10) as s:
            s.sendall(b"\x05\x01\x00")
            assert recv_exact(s, 2) == b"\x05\x00"
            s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x00\x50")
            assert socks5_read_reply(s)[0] != 0
        assert _socks5_userpass(du, "127.0.0.%d" % (10 + i), name[:40], b"x.test", 80) != 0
    d.wait_audit(type="close", n=len(HOSTILE))
    du.wait_audit(type="close", n=len(HOSTILE))
    d.stop()
    du.stop()
    recs = _records(d.audit_path) + _records(du.audit_path)
    assert len({r["host"] for r in recs if r["type"] == "decision" and r["host"]}) == len(HOSTILE)
    assert len({r["user"] for r in recs if r.get("guard") == "auth"}) == len(HOSTILE)

    # A trail that was edited, or written by an older version, may hold any
    # bytes: the hostile names raw, and a hostile string in every string
    # field a record has.
    evil = "<script>x</script>\"'&\x1b[2J\x01\u202e" + "\udcff"
    extra = [{"v": 1, "ts": "2024-05-03T15:00:00.000Z", "type": "decision", "conn": 9,
              "client": evil, "listener": evil, "proto": evil, "user": evil, "host": evil,
              "port": 1, "addr": evil, "verdict": "deny", "rule": evil, "guard": evil,
              "reason": evil, "upstream": evil, "path": "tailnet",
              "peer": {"name": evil, "id": evil, "route": evil}},
             {"v": 1, "ts": "2024-05-03T15:00:01.000Z", "type": "close", "conn": 9, "client": evil,
              "bytes_up": 5, "bytes_down": 5, "duration_ms": 5, "end": evil, "error": evil},
             {"v": 1, "ts": "2024-05-03T15:00:02.000Z", "type": evil, "detail": evil},
             {"v": 1, "ts": "2024-05-03T15:00:03.000Z", "type": "sink_error", "sink": evil,
              "lost": 1, "error": evil},
             {"v": 1, "ts": "2024-05-03T15:00:04.000Z", "type": "recovery", "detail": evil,
              "last_ts": evil, "unclosed": evil},
             {"v": 1, "ts": "2024-05-03T15:00:05.000Z", "type": "tailnet", "state": evil,
              "reason": evil, "added": [{"prefix": evil, "peer": evil, "kind": evil}]},
             {"v": 1, "ts": "2024-05-03T15:00:06.000Z", "type": "start", "detail": evil,
              "version": evil, "pid": 3}]
    for i, name in enumerate(HOSTILE):
        n = name.decode("utf-8", "surrogateescape")
        extra.append({"v": 1, "ts": "2024-05-03T16:00:00.000Z", "type": "decision",
                      "conn": 100 + i, "client": "127.0.0.1:1", "user": n, "host": n, "port": 80,
                      "addr": None, "verdict": "deny", "reason": n})
    files = [d.audit_path, du.audit_path] + _synthetic(tmp_path, extra)
    out = tmp_path / "hostile.html"
    p = tailfence_cli("audit", "report", "-q", *files, "-o", out)
    assert p.returncode == 0, p.stderr
    raw = out.read_bytes()
    assert_safe_page(raw)
    assert b"\x1b" not in raw and b"\xff" not in raw and b"\xe2\x80\xae" not in raw

    # What the reader sees: markup as text; control bytes, bytes that are
    # not UTF-8 and a direction override spelled out, in a highlight.
    def esc(x):
        return '<span class="esc">%s</span>' % x
    from_daemon = ["&lt;script&gt;alert(1)&lt;/script&gt;.test:80",
                   "ansi%s[31mred%s[0m%s]0;title%s.test:80" % (esc("\\x1b"), esc("\\x1b"),
                                                               esc("\\x1b"), esc("\\x07")),
                   "bad\ufffd\ufffd\ufffd(utf8.test:80",
                   "rtl%sgnp.exe.test:80" % esc("\\u{202e}")]
    made_up = ["bad%s%s%s(utf8.test:80" % (esc("\\xff"), esc("\\xfe"), esc("\\xc3")),
               "ctl%s%s%s%s.test:80" % (esc("\\x01"), esc("\\x07"), esc("\\x08"), esc("\\x7f")),
               "&quot;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;.test:80"]
    for cell in from_daemon + made_up:
        assert _cell(raw, cell), cell

    # the JSON is valid UTF-8 and keeps the text (bytes that are not: U+FFFD)
    j, _ = _report_json(tailfence_cli, *files)
    dsts = {r["destination"] for r in j["destinations"]["rows"]}
    assert "<script>alert(1)</script>.test:80" in dsts
    assert "ansi\x1b[31mred\x1b[0m\x1b]0;title\x07.test:80" in dsts
    assert "bad\ufffd\ufffd\ufffd(utf8.test:80" in dsts


# ------------------------------------------------------- headless Chromium

def _chromium(tmp_path, *args):
    """Runs Debian's chromium headless with a fresh profile and logging to
    stderr. The suite's network namespace has only lo: nothing could be
    fetched even if the page asked."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s missing: run scripts/install-deps" % CHROMIUM)
    profile = tmp_path / ("chromium-profile-%d" % time.monotonic_ns())
    profile.mkdir()
    env = clean_env()
    env["HOME"] = str(profile)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--user-data-dir=%s" % profile, "--enable-logging=stderr",
           "--v=0"] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=180,
                          env=env, stdin=subprocess.DEVNULL)


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24]), len(data)


def _page_trouble(stderr, url):
    """What chromium logs when a page misbehaves: a console message from the
    page (a load the Content-Security-Policy refused is one), a failed
    load. Chromium's own pages (chrome://) may log too; they do not count."""
    return [l for l in stderr.splitlines()
            if ("CONSOLE" in l and "source: " + url in l) or "net::ERR_" in l
            or "Failed to load resource" in l]


def assert_renders(tmp_path, page, must_show):
    """chromium turns the page into a PNG of the window's size with real
    content, and its DOM holds must_show; no console message, no failed
    or refused load."""
    png = tmp_path / (page.stem + ".png")
    url = "file://%s" % page
    p = _chromium(tmp_path, "--screenshot=%s" % png, "--window-size=1280,2400", url)
    assert p.returncode == 0 and png.exists(), p.stderr[-3000:]
    assert not _page_trouble(p.stderr, url), "\n".join(_page_trouble(p.stderr, url))
    (w, h), size = _png_size(png)
    assert (w, h) == (1280, 2400), (w, h)
    assert size > 60000, "a %d-byte PNG is too small for a page with charts and tables" % size
    p = _chromium(tmp_path, "--dump-dom", url)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not _page_trouble(p.stderr, url), "\n".join(_page_trouble(p.stderr, url))
    for s in must_show:
        assert s in p.stdout, "%r not in the rendered DOM" % s


def test_report_renders_in_headless_chromium(tailfence, tailfence_cli, echo_origin, tmp_path):
    key, rotated, live = record_session(tailfence, echo_origin, tmp_path)
    page = tmp_path / "session.html"
    p = tailfence_cli("audit", "report", "--key", key, rotated, live, "-o", page)
    assert p.returncode == 0, p.stderr
    assert_safe_page(page.read_bytes())
    assert_renders(tmp_path, page, ['<section id="timeline">', "HMAC chain verified",
                                    "unclean shutdown", "127.0.1.1:22"])

    files = _synthetic(tmp_path)
    page = tmp_path / "three-days.html"
    p = tailfence_cli("audit", "report", "-q", *files, "-o", page)
    assert p.returncode == 0, p.stderr
    assert_safe_page(page.read_bytes())
    assert_renders(tmp_path, page, ["vault-node-2", "New destinations (3)", "not checked"])

    # The checks can fail: the same page with one external image is refused
    # by the page's policy (and chromium says so), and the static check
    # rejects it too.
    bad = tmp_path / "with-external-image.html"
    bad.write_text(page.read_text().replace("<body>", '<body><img src="http://192.0.2.1/x.png">', 1))
    p = _chromium(tmp_path, "--screenshot=%s" % (tmp_path / "bad.png"), "--window-size=800,600",
                  "file://%s" % bad)
    assert any("192.0.2.1" in l for l in _page_trouble(p.stderr, "file://%s" % bad)), p.stderr
    with pytest.raises(AssertionError):
        assert_safe_page(bad.read_bytes())


# ------------------------------------------------------------ bounded memory

def _big_trail(path, pairs, distinct):
    """pairs decision+close pairs over distinct destinations and users."""
    dec = ('{"v":1,"ts":"2024-05-%02dT%02d:%02d:%02d.000Z","type":"decision","conn":%d,'
           '"client":"127.0.0.%d:40000","listener":"127.0.0.1:1080","proto":"socks5",'
           '"user":"user%d","host":"host%d.example","port":443,"addr":"192.0.2.%d",'
           '"verdict":"%s","rule":null,"guard":null,"reason":"r","upstream":"direct"}\n')
    clo = ('{"v":1,"ts":"2024-05-%02dT%02d:%02d:%02d.500Z","type":"close","conn":%d,'
           '"client":"127.0.0.%d:40000","proto":"socks5","addr":null,"bytes_up":%d,'
           '"bytes_down":%d,"duration_ms":500,"end":"client_eof","error":null}\n')
    with open(path, "w") as f:
        for i in range(pairs):
            s = i * 7  # about 8 days of records
            day, hh, mm, ss = 1 + s // 86400, s // 3600 % 24, s // 60 % 60, s % 60
            k = (i * 7919) % distinct
            f.write(dec % (day, hh, mm, ss, i, i % 200, k % 1000, k, k % 250,
                           "allow" if i % 10 else "deny"))
            f.write(clo % (day, hh, mm, ss, i, i % 200, i % 1000, i % 5000))


def test_report_memory_is_bounded(tailfence_bin, tmp_path):
    """200k records (a 50 MB trail) with 50k destinations, kept to 500 rows
    a table, run in 32 MiB of address space (ulimit -v): holding the trail
    or its records could not fit. The report says its tables were capped.
    (Time and peak RSS for a million records: bench/bench_audit_report.sh.)"""
    trail = tmp_path / "big.jsonl"
    _big_trail(trail, 100000, 50000)
    assert trail.stat().st_size > 40 * 1024 * 1024
    sanitized = os.environ.get("TAILFENCE_SANITIZED") == "1"
    # AddressSanitizer reserves terabytes of address space: no limit there
    limit = "" if sanitized else "ulimit -v 32768 && "
    p = subprocess.run(["sh", "-c", limit + 'exec "$0" "$@"', tailfence_bin, "audit", "report",
                        "--json", "-q", "--max-keys", "500", str(trail)],
                       capture_output=True, text=True, env=clean_env(), timeout=300)
    assert p.returncode == 0 and sanitizer_report(p.stderr) is None, p.stderr
    j = json.loads(p.stdout)
    t = j["totals"]
    assert (t["allowed"], t["denied"], t["closed"]) == (90000, 10000, 100000)
    dsts = j["destinations"]
    assert dsts["full"] and len(dsts["rows"]) == 500 and t["destinations"] == 500
    other = dsts["other"]
    assert sum(r["allowed"] for r in dsts["rows"]) + other["allowed"] == 90000
    assert sum(r["bytes_up"] for r in dsts["rows"]) + other["bytes_up"] == t["bytes_up"]
    assert j["users_destinations"]["full"] and j["users"]["full"]  # 1000 users
    assert not j["clients"]["full"] and t["clients"] == 200
    p = subprocess.run(["sh", "-c", limit + 'exec "$0" "$@"', tailfence_bin, "audit", "report",
                        "-q", "--max-keys", "500", str(trail), "-o", str(tmp_path / "big.html")],
                       capture_output=True, text=True, env=clean_env(), timeout=300)
    assert p.returncode == 0 and sanitizer_report(p.stderr) is None, p.stderr
    page = (tmp_path / "big.html").read_text()
    assert "This table keeps at most 500 rows" in page
