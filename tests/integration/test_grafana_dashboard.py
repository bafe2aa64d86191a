"""contrib/grafana/tailfence.json against the metrics tailfence really exports.

No Grafana server can be had on these machines (Debian packages none, the npm
registry has only Grafana's libraries, and Grafana's own module is not one to
build here), so the dashboard is checked without one, in four tests:

1. The model: JSON that Grafana imports (schema 39, the `${DS_PROMETHEUS}`
   input on every panel, target, variable and annotation; unique ids; panels
   on the 24-column grid without overlaps; the rows the dashboard promises);
   every PromQL expression parses (tests/integration/promql.py), uses only
   variables it defines or Grafana's built-ins, and windows of
   `$__rate_interval` or `$__range`, never a fixed one.
2. The names: a daemon carries a known mix of connections (allowed by a
   rule, refused by a rule, a guard, no rule and a failed lookup; SOCKS5,
   HTTP CONNECT and a UDP association; a reload), then every metric any
   expression names must be a series in its /metrics scrape (histograms'
   `_bucket`/`_sum`/`_count` included), every label in a matcher or a
   `by`/`on` clause must be on it, every literal label value must occur,
   `histogram_quantile` must get `le`, counters must sit inside rate() or
   increase() and gauges never, a legend may only use labels its query
   keeps, and every metric the daemon exports must be on the dashboard.
3. The answers: Debian's Prometheus scrapes the same kind of daemon, and
   every expression, with Grafana's variables filled in as Grafana would,
   goes through its HTTP API as Grafana's data source sends it (instant
   queries for stats and tables, range queries for graphs and annotations,
   the label values API for template variables). Each must be accepted and
   give data (a few listed panels may be empty without a tailnet), and the
   panels must show the known mix: which rules and guards refused, how
   many, bytes, finite latency percentiles, the UDP drop.
4. The tailnet: the same through Prometheus for the Readiness and Tailnet
   rows against a daemon following tailscaled on the test tailnet (the
   `tailnet` fixture), where the panels left empty above must show a
   Running node, its peer and prefixes, and the changes that revoking and
   approving a subnet route make.
"""
import json
import math
import os
import re
import signal
import socket
import struct
import threading
import time

import pytest

import promql
from helpers import PROMETHEUS, Prometheus, free_port, http_connect_status, http_get
from helpers import socks5_greet, socks5_read_reply, socks5_rep, wait_listening, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(HERE, "..", "..", "contrib", "grafana", "tailfence.json")

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Labels Prometheus adds to every scraped series; /metrics does not carry them.
TARGET_LABELS = {"job", "instance"}
# Grafana's own variables a Prometheus query may use.
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                    "__range_ms"}
_VAR = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*\S)\s*,\s*)?(\w+)\s*\)\s*$", re.S)

ROWS = ["Readiness", "Traffic", "Refusals by rule and guard", "Bytes", "Latency",
        "Audit trail", "Tailnet", "UDP associations", "Event loops"]

# (panel title, refId) or ("annotation", name) -> why it may be empty with
# the known mix (no tailscaled socket: the view is "off" and never changes);
# test_tailnet_row_over_a_real_tailnet sees them all with data.
MAY_BE_EMPTY = {
    ("tailscaled backend", "A"): "no tailscaled socket: no backend state is 1",
    ("Last tailnet change", "A"): "no tailscaled socket: the view never changed",
    ("annotation", "Tailnet view changed"): "no tailscaled socket: the view never changed",
}

RULES = {"rules": [
    {"name": "fenced", "action": "deny", "dst": ["127.0.1.0/24:*"]},
    {"name": "loopback echo", "action": "accept", "dst": ["127.0.0.0/24:*"], "via": "direct"},
]}
PAYLOAD = b"ping"
ALLOWED_TCP = 5     # 3 SOCKS5 by address, 1 SOCKS5 by name, 1 HTTP CONNECT
DENIED_TCP = 5      # 2 rule "fenced", 1 implicit, 1 guard "upstream", 1 lookup failed
REFUSED = {("rule", "fenced"): 3, ("implicit", ""): 1, ("guard", "upstream"): 1,
           ("error", "dns"): 1}     # the UDP datagram to 127.0.1.1 is the third "fenced"


# ----------------------------------------------------------------- dashboard

def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


class Query:
    """One PromQL expression of the dashboard and where it is."""

    def __init__(self, kind, where, key, expr, legend="", instant=False, label=None):
        self.kind = kind          # "target", "variable" or "annotation"
        self.where = where        # for messages
        self.key = key            # (panel title, refId), ("variable", name), ("annotation", name)
        self.expr = expr          # as written, Grafana's variables and all
        self.legend = legend
        self.instant = instant
        self.label = label        # a variable's label_values() label


def dashboard_queries(dash):
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            out.append(Query("target", 'panel "%s" query %s' % (p["title"], t.get("refId")),
                             (p["title"], t.get("refId")), t.get("expr", ""),
                             t.get("legendFormat", ""), bool(t.get("instant"))))
    for v in dash["templating"]["list"]:
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = _LABEL_VALUES.match(q)
        assert m, "variable %s: only label_values(...) queries are checked, not %r" % (
            v["name"], q)
        out.append(Query("variable", "variable $%s" % v["name"], ("variable", v["name"]),
                         m.group(1) or "", label=m.group(2)))
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            out.append(Query("annotation", 'annotation "%s"' % a["name"],
                             ("annotation", a["name"]), a["expr"], a.get("titleFormat", "")))
    return out


def variables_in(text):
    return {a or b or c for a, b, c in _VAR.findall(text)}


def expand(text, values):
    """text with Grafana's variables replaced from values (KeyError if one is missing)."""
    return _VAR.sub(lambda m: values[m.group(1) or m.group(2) or m.group(3)], text)


# For the checks that need no Prometheus: any window, any job and instance.
STATIC_VALUES = {"job": "tailfence", "instance": ".+", "__rate_interval": "1m",
                 "__interval": "15s", "__interval_ms": "15000", "__range": "1h",
                 "__range_s": "3600", "__range_ms": "3600000"}


# ---------------------------------------------------------------- exposition

def _unescape(m):
    return "\n" if m.group(1) == "n" else m.group(1)


class Exposition:
    """A /metrics text: TYPE per family, and the label sets of each series."""

    def __init__(self, text):
        self.types = {}
        self.series = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
            elif line and not line.startswith("#"):
                m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
                assert m, "cannot read exposition line %r" % line
                pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                   m.group(2) or "")
                labels = {k: re.sub(r"\\(.)", _unescape, v) for k, v in pairs}
                self.series.setdefault(m.group(1), []).append(labels)

    def family(self, name):
        """(family, kind) of a series name: kind is the TYPE, with _bucket,
        _sum or _count appended for a histogram's series."""
        if name in self.types:
            return name, self.types[name]
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                return base, self.types[base] + suffix
        return None, None


def _matches(labels, matcher):
    label, op, value = matcher
    have = labels.get(label, "")
    if op == "=":
        return have == value
    if op == "!=":
        return have != value
    hit = re.fullmatch(value, have) is not None
    return hit if op == "=~" else not hit


class StaticCheck:
    """Walks one expression tree against an exposition; collects problems
    and tells which labels each node's result carries (None: a scalar)."""

    RANGE_FNS = {"rate", "irate", "increase", "resets"}

    def __init__(self, expo, where):
        self.expo = expo
        self.where = where
        self.problems = []
        self.families = set()

    def problem(self, text):
        self.problems.append("%s: %s" % (self.where, text))

    def labels(self, node):
        kind = node[0]
        if kind in ("num", "str"):
            return None
        if kind == "sel":
            return self.selector(node)
        if kind in ("paren", "offset", "at", "subquery", "neg"):
            return self.labels(node[1])
        if kind == "call":
            return self.call(node)
        if kind == "agg":
            return self.aggregation(node)
        if kind == "bin":
            return self.binary(node)
        raise AssertionError(kind)

    def selector(self, node):
        name = promql.metric_name(node)
        if name is None:
            self.problem("a selector without a metric name: %r" % (node,))
            return set(TARGET_LABELS)
        family, _ = self.expo.family(name)
        if family:
            self.families.add(family)
        series = self.expo.series.get(name)
        if not series:
            self.problem("%s is not a series in /metrics" % name)
            return set(TARGET_LABELS)
        names = set().union(*series)
        matched = series
        for m in node[2]:
            label, op, value = m
            if label == "__name__" or label in TARGET_LABELS:
                continue
            if label not in names:
                self.problem("%s has no label %r (it has %s)" % (name, label, sorted(names)))
                continue
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as e:
                    self.problem("%s{%s%s%r}: bad regular expression: %s" % (
                        name, label, op, value, e))
                    continue
            if op in ("=", "=~") and not any(_matches(s, m) for s in series):
                self.problem("no series %s{%s%s%r}; its values are %s" % (
                    name, label, op, value, sorted({s.get(label, "") for s in series})))
            matched = [s for s in matched if _matches(s, m)]
        if not matched:
            self.problem("%s with %s matches no series" % (name, node[2]))
        return set().union(*matched, TARGET_LABELS) if matched else set(TARGET_LABELS)

    def call(self, node):
        fn, args = node[1], node[2]
        labels = [self.labels(a) for a in args]
        if fn == "histogram_quantile":
            if len(args) != 2:
                self.problem("histogram_quantile takes 2 arguments")
                return set()
            if labels[1] is None or "le" not in labels[1]:
                self.problem("histogram_quantile's buckets lost their le label "
                             "(aggregate with by (le, ...))")
                return labels[1] or set()
            return labels[1] - {"le"}
        if fn in ("label_replace", "label_join"):
            return (labels[0] or set()) | {args[1][1]}
        if fn in ("vector", "time", "scalar", "pi"):
            return None if fn != "vector" else set()
        vectors = [x for x in labels if x is not None]
        return set().union(*vectors) if vectors else set()

    def aggregation(self, node):
        _, op, mod, by, param, expr = node
        if param is not None:
            self.labels(param)
        inner = self.labels(expr)
        if inner is None:
            self.problem("%s over a scalar" % op)
            return set()
        for label in by:
            if label not in inner:
                self.problem("%s %s (%s): no series inside has the label %r (they have %s)"
                             % (op, mod, ", ".join(by), label, sorted(inner)))
        if mod == "by":
            out = set(by)
        elif mod == "without":
            out = inner - set(by)
        else:
            out = set()
        if op in ("topk", "bottomk", "limitk", "limit_ratio"):
            out = inner
        if op == "count_values" and param is not None and param[0] == "str":
            out = out | {param[1]}
        return out

    def binary(self, node):
        _, op, lhs, rhs, match = node
        left, right = self.labels(lhs), self.labels(rhs)
        if left is None or right is None:
            return right if left is None else left
        if match["labels"] and match["on"]:
            for label in match["labels"]:
                for side, have in (("left", left), ("right", right)):
                    if label not in have:
                        self.problem("on (%s): the %s side has no label %r"
                                     % (", ".join(match["labels"]), side, label))
        include = set(match["include"])
        if match["group"] == "group_left":
            missing = include - right
            if missing:
                self.problem("group_left: the right side has no %s" % sorted(missing))
            return left | include
        if match["group"] == "group_right":
            missing = include - left
            if missing:
                self.problem("group_right: the left side has no %s" % sorted(missing))
            return right | include
        return left | right if op == "or" else left

    def types(self, tree):
        """Counters (and histogram series) only inside rate()/increase();
        gauges never."""
        for sel, fn in promql.selectors(tree):
            name = promql.metric_name(sel)
            _, kind = self.expo.family(name or "")
            if kind is None:
                continue
            if kind == "counter" or kind.startswith("histogram_"):
                if fn not in self.RANGE_FNS:
                    self.problem("%s is a %s: it belongs inside rate() or increase(), not %s"
                                 % (name, kind, fn or "on its own"))
            elif fn in self.RANGE_FNS:
                self.problem("%s is a %s: %s() of it means nothing" % (name, kind, fn))


# ------------------------------------------------------------- the known mix

class UDPEcho:
    """A UDP server on 127.0.0.1 that sends every datagram back."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
                self.sock.sendto(data, peer)
            except OSError:
                return

    def close(self):
        self.sock.close()


def udp_datagram(host, port, payload):
    return b"\x00\x00\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port) + payload


def udp_exchange(d, echo_port):
    """One SOCKS5 UDP association: a datagram to the echo (answered) and one
    to 127.0.1.1 (rule "fenced": dropped); then the association ends."""
    with d.connect() as ctl:
        assert socks5_greet(ctl) == 0
        ctl.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
        rep, relay_host, relay_port = socks5_read_reply(ctl)
        assert rep == 0, "UDP ASSOCIATE refused: %#x" % rep
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            u.settimeout(10)
            u.sendto(udp_datagram("127.0.0.1", echo_port, PAYLOAD), (relay_host, relay_port))
            data, _ = u.recvfrom(65535)
            assert data[10:] == PAYLOAD, data
            u.sendto(udp_datagram("127.0.1.1", echo_port, PAYLOAD), (relay_host, relay_port))
            d.wait_audit(type="decision", proto="socks5-udp", verdict="deny")


@pytest.fixture
def fenced(tailfence, origins, microsocks, dns, tmp_path):
    """start() -> a daemon with --admin, the rules above, microsocks as its
    upstream (the "upstream" guard refuses microsocks' own port) and a DNS
    server that knows echo.test; mix(d) then carries the known mix."""
    server = dns({"echo.test": ["127.0.0.1"]})
    echo = origins.echo("127.0.0.1")
    udp_echo = UDPEcho()
    cfg = tmp_path / "rules.json"
    cfg.write_text(json.dumps(RULES))

    class Fenced:
        def start(self):
            port = free_port()
            d = tailfence("--admin", "127.0.0.1:%d" % port, "--config", cfg,
                          "--dns-server", server.addr, upstream=microsocks.url, allow=())
            d.admin_port = port
            wait_listening(port, 15, d.proc.proc, "tailfence admin")
            return d

        def mix(self, d):
            for _ in range(3):
                assert socks5_rep(d, "127.0.0.1", echo.port) == 0
            assert socks5_rep(d, "echo.test", echo.port) == 0
            assert http_connect_status(d, "127.0.0.1:%d" % echo.port) == 200
            for _ in range(2):
                assert socks5_rep(d, "127.0.1.1", echo.port) == 0x02
            assert socks5_rep(d, "127.0.2.1", echo.port) == 0x02
            assert socks5_rep(d, "127.0.0.1", microsocks.port) == 0x02
            assert socks5_rep(d, "nowhere.test", echo.port) not in (0, None)
            udp_exchange(d, udp_echo.port)
            d.wait_audit(type="close", n=ALLOWED_TCP + DENIED_TCP + 1)
            d.proc.proc.send_signal(signal.SIGHUP)
            d.wait_audit(type="reload")

    yield Fenced()
    udp_echo.close()


def scrape(d):
    status, text, _ = http_get(d.admin_port, "/metrics")
    assert status == 200, text
    return text


# --------------------------------------------------------------------- tests

def test_dashboard_model():
    dash = load_dashboard()
    assert dash["schemaVersion"] == 39
    assert dash["uid"] and dash["title"]
    assert dash.get("id") is None, "an exported dashboard has id null (import makes one)"
    assert dash["__inputs"] == [{
        "name": "DS_PROMETHEUS", "label": "Prometheus",
        "description": dash["__inputs"][0]["description"], "type": "datasource",
        "pluginId": "prometheus", "pluginName": "Prometheus"}]
    requires = {(r["type"], r["id"]) for r in dash["__requires"]}
    assert ("datasource", "prometheus") in requires and ("grafana", "grafana") in requires

    # every data source is the input, nothing points at one Grafana's uid
    def datasources(node):
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict):
                yield node["datasource"]
            for v in node.values():
                yield from datasources(v)
        elif isinstance(node, list):
            for v in node:
                yield from datasources(v)
    for ds in datasources(dash):
        assert ds == DS or ds == {"type": "grafana", "uid": "-- Grafana --"}, ds

    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids repeat: %s" % ids
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ROWS
    cells = {}
    for p in all_panels(dash):
        gp = p["gridPos"]
        assert gp["w"] > 0 and gp["h"] > 0 and gp["x"] >= 0 and gp["x"] + gp["w"] <= 24, p["title"]
        for x in range(gp["x"], gp["x"] + gp["w"]):
            for y in range(gp["y"], gp["y"] + gp["h"]):
                assert (x, y) not in cells, "%r overlaps %r" % (p["title"], cells[(x, y)])
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert ("panel", p["type"]) in requires, "__requires lacks panel %s" % p["type"]
        assert p["datasource"] == DS and p["title"] and p.get("description"), p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DS and t["expr"].strip(), (p["title"], t)

    defined = {v["name"] for v in dash["templating"]["list"]}
    for v in dash["templating"]["list"]:
        assert v["datasource"] == DS and v["refresh"] in (1, 2), v["name"]
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        assert v.get("definition", q) == q, "variable %s: definition and query differ" % v["name"]
    queries = dashboard_queries(dash)
    assert len(queries) > 40
    problems = []
    for q in queries:
        unknown = variables_in(q.expr) - defined - GRAFANA_BUILTINS
        if unknown:
            problems.append("%s: undefined variables %s" % (q.where, sorted(unknown)))
            continue
        for window in re.findall(r"\[([^\]]*)\]", q.expr):
            if window not in ("$__rate_interval", "$__range"):
                problems.append("%s: window [%s]: use $__rate_interval (graphs) or $__range "
                                "(totals), which follow any scrape interval" % (q.where, window))
        try:
            promql.parse(expand(q.expr, STATIC_VALUES))
        except promql.PromQLError as e:
            problems.append("%s: %s" % (q.where, e))
    assert not problems, "\n".join(problems)


def test_every_query_names_exported_series(fenced):
    dash = load_dashboard()
    d = fenced.start()
    fenced.mix(d)
    text = scrape(d)
    expo = Exposition(text)
    problems = []
    used = set()
    for q in dashboard_queries(dash):
        if q.kind == "variable" and not q.expr:
            continue
        check = StaticCheck(expo, q.where)
        tree = promql.parse(expand(q.expr, STATIC_VALUES))
        out = check.labels(tree)
        check.types(tree)
        if q.kind == "variable" and q.label not in (out or set()):
            check.problem("label_values(..., %s): the series have no label %s"
                          % (q.label, q.label))
        for label in _LEGEND.findall(q.legend):
            if label not in (out or set()):
                check.problem("the legend uses {{%s}}, which the query does not keep "
                              "(it keeps %s)" % (label, sorted(out or ())))
        problems += check.problems
        used |= check.families
    unused = sorted(set(expo.types) - used)
    if unused:
        problems.append("exported but on no panel: %s" % unused)
    print("dashboard: %d queries over %d metric families, all in the scrape"
          % (len(dashboard_queries(dash)), len(used)))
    assert not problems, "\n".join(problems) + "\n--- /metrics:\n" + text


def _finite(v):
    return not math.isnan(float(v)) and not math.isinf(float(v))


class Evaluation:
    """The dashboard's queries through a real Prometheus' HTTP API, as
    Grafana's data source sends them, with the variables filled in.

    start(): once the daemon is scraped; settle(): after the traffic, waits
    for a few more scrapes (rate() needs two samples of a series, and some
    series appear only with their first event) and fixes the evaluation
    time at the last scrape, where increase() over a window holding the
    whole series extrapolates nothing, so totals are exact."""

    def __init__(self, tmp_path, target):
        self.target = target
        self.t0 = time.time()
        self.prom = Prometheus(str(tmp_path), target)
        self.shown = {}
        try:
            self.prom.wait_value('up{job="tailfence"}', 1)
        except BaseException:
            self.prom.close()
            raise

    def last_scrape(self):
        return float(self.prom.query('timestamp(up{job="tailfence"})')
                     ["data"]["result"][0]["value"][1])

    def settle(self):
        settled = self.last_scrape() + 3
        self.at = wait_until(lambda: (lambda t: t >= settled and t)(self.last_scrape()), 30,
                             "three more scrapes")
        secs = int(self.at - self.t0) + 30
        self.values = {"job": "tailfence", "instance": self.target,
                       "__rate_interval": "%ds" % secs, "__interval": "1s",
                       "__interval_ms": "1000", "__range": "%ds" % secs,
                       "__range_s": str(secs), "__range_ms": str(secs * 1000)}

    def run(self, queries, may_be_empty):
        """Problems found; self.shown[key] = each target's instant answer."""
        problems = []
        for q in queries:
            problems += self.one(q, q.key in may_be_empty)
        return problems

    def one(self, q, may_be_empty):
        prom, at, t0 = self.prom, self.at, self.t0
        expr = expand(q.expr, self.values)
        if q.kind == "variable":
            # label_values(): Grafana asks the label values API
            params = [("match[]", expr)] if expr else []
            status, ans = prom.api("label/%s/values" % q.label,
                                   params + [("start", t0), ("end", at + 1)])
            want = {"job": "tailfence", "instance": self.target}[q.label]
            if status != 200 or ans.get("status") != "success" or want not in ans["data"]:
                return ["%s: %s gave %s %s" % (q.where, expr, status, ans)]
            return []
        problems = []
        if q.kind == "target":
            status, ans = prom.api("query", {"query": expr, "time": at})
            if status != 200 or ans.get("status") != "success":
                return ["%s: Prometheus refused %s: %s" % (q.where, expr, ans)]
            if ans["data"]["resultType"] != "vector":
                return ["%s: a %s, not a vector" % (q.where, ans["data"]["resultType"])]
            result = ans["data"]["result"]
            self.shown[q.key] = result
            if not result and not may_be_empty:
                problems.append("%s: no data for %s" % (q.where, expr))
            for s in result:
                if not _finite(s["value"][1]):
                    problems.append("%s: %s gives %s for %s" % (
                        q.where, expr, s["value"][1], s["metric"]))
            # (a label whose value is empty is not in the answer at all)
            for label in _LEGEND.findall(q.legend):
                if result and not any(label in s["metric"] for s in result):
                    problems.append("%s: legend {{%s}}, in no series of %s" % (
                        q.where, label, result))
        if q.instant:
            return problems
        # graphs and annotations: the range query Grafana sends
        status, ans = prom.api("query_range", {"query": expr, "start": t0, "end": at,
                                               "step": "1s"})
        if status != 200 or ans.get("status") != "success":
            problems.append("%s: Prometheus refused the range query %s: %s"
                            % (q.where, expr, ans))
        elif ans["data"]["resultType"] != "matrix":
            problems.append("%s: a %s, not a matrix" % (q.where, ans["data"]["resultType"]))
        elif not ans["data"]["result"] and not may_be_empty:
            problems.append("%s: no data over the run for %s" % (q.where, expr))
        return problems

    def panel(self, title, ref="A", by=None):
        """{label value (or tuple of them): value} of one panel query's
        instant answer; the key is None without by."""
        out = {}
        for s in self.shown[(title, ref)]:
            key = tuple(s["metric"].get(k, "") for k in by) if by else None
            key = key[0] if by and len(by) == 1 else key
            out[key] = float(s["value"][1])
        return out

    def close(self):
        self.prom.close()


def test_prometheus_evaluates_every_query(fenced, tmp_path):
    assert os.access(PROMETHEUS, os.X_OK), "prometheus missing: scripts/install-deps"
    dash = load_dashboard()
    d = fenced.start()
    target = "127.0.0.1:%d" % d.admin_port
    ev = Evaluation(tmp_path, target)
    try:
        fenced.mix(d)
        ev.prom.wait_value("sum(tailfence_connections_closed_total)",
                           ALLOWED_TCP + DENIED_TCP + 1)
        ev.prom.wait_value('tailfence_reloads_total{result="ok"}', 1)
        ev.settle()
        problems = ev.run(dashboard_queries(dash), MAY_BE_EMPTY)
        assert not problems, "\n".join(problems)
    finally:
        ev.close()
    panel = ev.panel

    print("Prometheus, refusals in the time range: %s"
          % panel("Refusals in the time range", by=("by", "name")))
    # what the panels show for the known mix
    assert panel("Refusals in the time range", by=("by", "name")) == REFUSED
    assert set(panel("Refusals by what decided", by=("by", "name"))) == set(REFUSED)
    assert set(panel("Allowed by rule", by=("name",))) == {"loopback echo"}
    decided = panel("Decisions by protocol and verdict", by=("proto", "verdict"))
    busy = {k for k, v in decided.items() if v > 0}
    assert busy == {("socks5", "allow"), ("socks5", "deny"), ("http-connect", "allow"),
                    ("socks5-udp", "allow"), ("socks5-udp", "deny")}, decided
    assert panel("Bytes in range", by=("direction",)) == {
        "up": ALLOWED_TCP * len(PAYLOAD), "down": ALLOWED_TCP * len(PAYLOAD)}
    assert set(panel("UDP datagrams dropped", by=("reason",))) == {"denied"}
    assert all(v > 0 for v in panel("UDP datagrams", by=("direction",)).values())
    for title in ("Handshake", "Name lookups", "Upstream dial", "Connection duration"):
        for ref in "ABCD":
            (v,) = panel(title, ref).values()
            assert v > 0, (title, ref, v)
    lookups = {ref: list(panel("Logins and name lookups", ref).values())[0] for ref in "ABC"}
    assert lookups["A"] == 0 and lookups["B"] > 0 and lookups["C"] > 0, lookups
    for title in ("Ready", "Upstream", "Listeners", "Audit sinks"):
        assert panel(title, by=("instance",)) == {target: 1}, title
    assert panel("Reloads in range", by=("result",)) == {"ok": 1, "failed": 0}
    assert panel("Dropped in range") == {None: 0} and panel("Sink errors in range") == {None: 0}
    assert panel("Tailnet view", by=("state",)) == {"off": 1}
    assert list(panel("Version", by=("version",))) != [""]


def row_queries(dash, *rows):
    """The queries of the panels under the named rows (rows are expanded)."""
    out, row = [], None
    titles = set()
    for p in dash["panels"]:
        if p["type"] == "row":
            row = p["title"]
        elif row in rows:
            titles.add(p["title"])
    return [q for q in dashboard_queries(dash) if q.kind == "target" and q.key[0] in titles]


def test_tailnet_row_over_a_real_tailnet(tailfence, tailnet, tmp_path):
    """Over the test tailnet (tailscaled A logged in to Headscale, B routing
    two documentation prefixes): the Readiness and Tailnet rows and the
    tailnet annotation show a ready, Running node with one peer, the
    prefixes it carries, and the view changes that revoking and approving
    B's routes make."""
    tn = tailnet
    dash = load_dashboard()
    port = free_port()
    d = tailfence("--admin", "127.0.0.1:%d" % port, "--tailscaled-socket", tn.a_socket,
                  upstream="socks5://" + tn.a_proxy, allow=(), lift_guards=())
    wait_listening(port, 15, d.proc.proc, "tailfence admin")
    target = "127.0.0.1:%d" % port
    ev = Evaluation(tmp_path, target)
    try:
        prom = ev.prom
        prom.wait_value("tailfence_ready", 1, timeout=90)
        # B's two addresses and two routes
        carried = wait_until(
            lambda: (lambda v: v is not None and v >= 4 and v)(
                prom.value("tailfence_tailnet_carried_prefixes")), 60, "4 carried prefixes")
        tn.revoke_routes()
        wait_until(lambda: prom.value("tailfence_tailnet_carried_prefixes") < carried, 60,
                   "fewer carried prefixes after the revoke")
        tn.approve_routes()
        prom.wait_value("tailfence_tailnet_carried_prefixes", carried)
        ev.settle()
        queries = row_queries(dash, "Readiness", "Tailnet") + [
            q for q in dashboard_queries(dash) if q.key == ("annotation", "Tailnet view changed")]
        problems = ev.run(queries, {})
        assert not problems, "\n".join(problems)
    finally:
        ev.close()
    assert ev.panel("Ready", by=("instance",)) == {target: 1}
    assert ev.panel("Tailnet view", by=("state",)) == {"running": 1}
    assert ev.panel("tailscaled backend", by=("state",)) == {"Running": 1}
    assert ev.panel("Peers and carried prefixes", "A", by=("instance",)) == {target: 1}
    assert ev.panel("Peers and carried prefixes", "B", by=("instance",)) == {target: carried}
    assert ev.panel("Tailnet changes in range")[None] >= 2
    (last_ms,) = ev.panel("Last tailnet change").values()
    assert abs(last_ms / 1000 - ev.at) < 120, (last_ms, ev.at)
    print("Prometheus, tailnet row: running, 1 peer, %d prefixes carried, %d view changes"
          % (carried, ev.panel("Tailnet changes in range")[None]))
