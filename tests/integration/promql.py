"""promql: a small PromQL parser for checking dashboards against an exposition.

parse(text) -> an expression tree of tuples (below), or PromQLError naming
the position. It covers the language a dashboard uses: numbers, strings,
vector selectors with label matchers, range selectors and subqueries,
offset and @, function calls, aggregations with by/without (before or after
the arguments) and a parameter, unary signs, and binary operators with
precedence, bool, on/ignoring and group_left/group_right. Functions and
aggregations are checked against Prometheus' lists; whether an expression
is valid PromQL is finally for a real Prometheus to say (the tests ask one),
this module only has to find what an expression refers to.

Tree nodes:
  ("num", value)                  ("str", text)
  ("sel", name, matchers, range)  matchers: [(label, op, value)], range: text or None
  ("call", function, [args])      ("agg", op, "by"|"without"|None, [labels], param, expr)
  ("bin", op, lhs, rhs, match)    match: {"on": bool, "labels": [...], "group": None|
                                  "group_left"|"group_right", "include": [...]} or None
  ("neg", expr)                   ("paren", expr)
  ("subquery", expr, range, step) ("offset", expr, duration) / ("at", expr, text)

selectors(tree) yields (selector node, the function whose direct argument it
is or None) for every vector selector in the tree.
"""
import re


class PromQLError(ValueError):
    pass


AGGREGATIONS = {"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk",
                "bottomk", "count_values", "quantile", "limitk", "limit_ratio"}
AGG_WITH_PARAM = {"topk", "bottomk", "count_values", "quantile", "limitk", "limit_ratio"}

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time",
    "min_over_time", "minute", "month", "pi", "predict_linear", "present_over_time",
    "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh",
    "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "tan", "tanh", "time", "timestamp", "vector", "year",
}

# Binary operators by precedence (higher binds tighter); ^ is right-associative.
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3,
              ">": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
COMPARISONS = {"==", "!=", "<=", "<", ">=", ">"}
KEYWORDS = {"and", "or", "unless", "atan2", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset"}

_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*$")
_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "=", "<", ">", "+", "-", "*", "/", "%",
              "^", "@", "(", ")", "{", "}", "[", "]", ",", ":")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v"}


def tokenize(text):
    """[(kind, value, position)]; kinds: ident, num, dur, str, op, end."""
    out = []
    i = 0
    depth = 0  # inside [...]: durations, and ':' is the subquery colon
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        if c in "\"'`":
            j = i + 1
            value = []
            while True:
                if j >= len(text):
                    raise PromQLError("unterminated string at %d" % i)
                if text[j] == c:
                    break
                if text[j] == "\\" and c != "`":
                    j += 1
                    if j >= len(text):
                        raise PromQLError("unterminated string at %d" % i)
                    value.append(_ESCAPES.get(text[j], "\\" + text[j]))
                else:
                    value.append(text[j])
                j += 1
            out.append(("str", "".join(value), i))
            i = j + 1
            continue
        m = _DURATION.match(text, i)
        if m and (depth or (out and out[-1][:2] == ("ident", "offset"))) \
                and not re.match(r"[a-zA-Z0-9_]", text[m.end():m.end() + 1]):
            out.append(("dur", m.group(), i))
            i = m.end()
            continue
        m = _NUMBER.match(text, i)
        if m and not (c == "." and not m.group()[1:]):
            out.append(("num", m.group(), i))
            i = m.end()
            continue
        m = _IDENT.match(text, i)
        if m and not (depth and c == ":"):
            out.append(("ident", m.group(), i))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                out.append(("op", op, i))
                depth += op == "["
                depth -= op == "]"
                i += len(op)
                break
        else:
            raise PromQLError("unexpected %r at %d" % (c, i))
    out.append(("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # -- tokens
    def peek(self, k=0):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def is_op(self, op, k=0):
        t = self.peek(k)
        return t[0] == "op" and t[1] == op

    def is_kw(self, *words, k=0):
        t = self.peek(k)
        return t[0] == "ident" and t[1].lower() in words

    def expect_op(self, op):
        t = self.next()
        if t[0] != "op" or t[1] != op:
            self.fail("expected %r" % op, t)
        return t

    def fail(self, what, tok=None):
        tok = tok or self.peek()
        raise PromQLError("%s at %d (%r) in: %s" % (what, tok[2], tok[1], self.text))

    # -- grammar
    def parse(self):
        e = self.expr(0)
        if self.peek()[0] != "end":
            self.fail("unexpected token")
        return e

    def binop(self):
        t = self.peek()
        if t[0] == "op" and t[1] in PRECEDENCE:
            return t[1]
        if t[0] == "ident" and t[1].lower() in ("and", "or", "unless", "atan2"):
            return t[1].lower()
        return None

    def expr(self, min_prec):
        lhs = self.unary()
        while True:
            op = self.binop()
            if op is None or PRECEDENCE[op] < min_prec:
                return lhs
            self.next()
            match = {"on": False, "labels": None, "group": None, "include": [], "bool": False}
            if self.is_kw("bool"):
                if op not in COMPARISONS:
                    self.fail("bool modifier on a non-comparison")
                self.next()
                match["bool"] = True
            if self.is_kw("on", "ignoring"):
                match["on"] = self.next()[1].lower() == "on"
                match["labels"] = self.label_list()
            if self.is_kw("group_left", "group_right"):
                match["group"] = self.next()[1].lower()
                if self.is_op("("):
                    match["include"] = self.label_list()
            nxt = PRECEDENCE[op] if op == "^" else PRECEDENCE[op] + 1
            rhs = self.expr(nxt)
            lhs = ("bin", op, lhs, rhs, match)

    def unary(self):
        if self.is_op("-") or self.is_op("+"):
            neg = self.next()[1] == "-"
            e = self.unary()
            return ("neg", e) if neg else e
        return self.postfix(self.primary())

    def postfix(self, e):
        while True:
            if self.is_op("["):
                self.next()
                rng = self.duration()
                if self.is_op(":"):
                    self.next()
                    step = None if self.is_op("]") else self.duration()
                    self.expect_op("]")
                    e = ("subquery", e, rng, step)
                    continue
                self.expect_op("]")
                if e[0] != "sel" or e[3] is not None:
                    self.fail("a range applies only to a vector selector")
                e = ("sel", e[1], e[2], rng)
            elif self.is_kw("offset"):
                self.next()
                neg = self.is_op("-") and self.next()
                e = ("offset", e, ("-" if neg else "") + self.duration())
            elif self.is_op("@"):
                self.next()
                t = self.next()
                if t[0] == "ident" and t[1] in ("start", "end"):
                    self.expect_op("(")
                    self.expect_op(")")
                elif t[0] != "num":
                    self.fail("expected a timestamp after @", t)
                e = ("at", e, t[1])
            else:
                return e

    def duration(self):
        t = self.next()
        if t[0] != "dur":
            self.fail("expected a duration", t)
        return t[1]

    def label_list(self):
        self.expect_op("(")
        labels = []
        while not self.is_op(")"):
            t = self.next()
            if t[0] != "ident" or not _LABEL.match(t[1]):
                self.fail("expected a label name", t)
            labels.append(t[1])
            if not self.is_op(")"):
                self.expect_op(",")
        self.expect_op(")")
        return labels

    def primary(self):
        t = self.peek()
        if t[0] == "num":
            self.next()
            return ("num", float(int(t[1], 16)) if t[1][:2].lower() == "0x" else float(t[1]))
        if t[0] == "str":
            self.next()
            return ("str", t[1])
        if self.is_op("("):
            self.next()
            e = self.expr(0)
            self.expect_op(")")
            return ("paren", e)
        if self.is_op("{"):
            return ("sel", None, self.matchers(), None)
        if t[0] != "ident":
            self.fail("expected an expression")
        name = t[1]
        low = name.lower()
        if low in ("inf", "nan"):
            self.next()
            return ("num", float(low))
        if low in AGGREGATIONS and (self.is_op("(", 1) or self.is_kw("by", "without", k=1)):
            return self.aggregation()
        if self.is_op("(", 1):
            if name not in FUNCTIONS:
                self.fail("unknown function")
            self.next()
            self.next()
            args = []
            while not self.is_op(")"):
                args.append(self.expr(0))
                if not self.is_op(")"):
                    self.expect_op(",")
            self.expect_op(")")
            return ("call", name, args)
        if low in KEYWORDS:
            self.fail("unexpected keyword")
        self.next()
        matchers = self.matchers() if self.is_op("{") else []
        return ("sel", name, matchers, None)

    def aggregation(self):
        op = self.next()[1].lower()
        mod, labels = None, []
        if self.is_kw("by", "without"):
            mod = self.next()[1].lower()
            labels = self.label_list()
        self.expect_op("(")
        param = None
        if op in AGG_WITH_PARAM:
            param = self.expr(0)
            self.expect_op(",")
        e = self.expr(0)
        self.expect_op(")")
        if mod is None and self.is_kw("by", "without"):
            mod = self.next()[1].lower()
            labels = self.label_list()
        return ("agg", op, mod, labels, param, e)

    def matchers(self):
        self.expect_op("{")
        out = []
        while not self.is_op("}"):
            t = self.next()
            if t[0] != "ident" or not _LABEL.match(t[1]):
                self.fail("expected a label name", t)
            op = self.next()
            if op[0] != "op" or op[1] not in ("=", "!=", "=~", "!~"):
                self.fail("expected a label matcher operator", op)
            v = self.next()
            if v[0] != "str":
                self.fail("expected a string", v)
            out.append((t[1], op[1], v[1]))
            if not self.is_op("}"):
                self.expect_op(",")
        self.expect_op("}")
        return out


def parse(text):
    """The expression tree of text; PromQLError when it is not PromQL."""
    return _Parser(text).parse()


def children(node):
    kind = node[0]
    if kind == "call":
        return list(node[2])
    if kind == "agg":
        return ([node[4]] if node[4] is not None else []) + [node[5]]
    if kind == "bin":
        return [node[2], node[3]]
    if kind in ("neg", "paren", "subquery", "offset", "at"):
        return [node[1]]
    return []


def selectors(node, fn=None):
    """(selector, enclosing function or None) for each vector selector:
    fn is the function whose direct argument the selector is (through
    parentheses, offset and @), e.g. "rate" for rate(x[5m])."""
    kind = node[0]
    if kind == "sel":
        yield node, fn
        return
    for child in children(node):
        inner = fn if kind in ("paren", "offset", "at") else node[1] if kind == "call" else None
        yield from selectors(child, inner)


def metric_name(sel):
    """A selector's metric name: its name, or a __name__="..." matcher."""
    if sel[1]:
        return sel[1]
    for label, op, value in sel[2]:
        if label == "__name__" and op == "=":
            return value
    return None
