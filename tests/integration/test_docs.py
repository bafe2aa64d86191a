"""
test_docs: the examples in README.md and docs/*.md are run, and what they
print is compared with what the documents show.

The convention, for whoever writes a document:

- A ```console block is a terminal session. A line starting with "$ " is a
  command (a line ending in "\\" goes on with the next one); every other
  line is what the commands before it print. The suite runs the commands
  one after another in one non-interactive bash, in an empty directory,
  inside a network namespace of the test's own (`unshare --net`, only
  loopback up), with Debian's root PATH and `tailfence` on it (the build
  under test). It prints "$ COMMAND" before each command, takes stdout
  and stderr together, and compares the whole with the block. A
  non-interactive shell prints no job-control lines ("[1] 4242"), so the
  block shows none.
- A block right after the line
      <!-- docs-test: output of the script above -->
  is what the fenced ```sh block before it prints when pasted into a root
  shell at the top of the repository after the build: the suite runs that
  block with bash in a directory whose build/tailfence is the build under
  test (inside the test's namespace, like the other examples).
- A block right after the line
      <!-- docs-test: not run: REASON -->
  is shown and not run, for REASON (required): it needs what one machine's
  loopback cannot have (a real tailnet, a Railway container), or it shows a
  made-up trail. Anything else that shows a session is run.
- Every fenced block with a line starting with "$ " must be a ```console
  block (run, or marked not run), so no session escapes this test by the
  way it is fenced.

When a change to the daemon changes what an example prints on purpose, run
this file with TAILFENCE_DOCS_UPDATE=1: each drifted block is rewritten in
its document with what it prints now (then read the diff before committing).

Before comparing, both sides are masked alike (mask()): timestamps, client
ports (5 digits), pids, durations, hex hashes, temporary paths and trailing
whitespace. Everything else must match: a changed reason, a record field,
a byte count or a line more or less fails the test with a diff.
"""

import difflib
import glob
import os
import re
import signal
import subprocess

import pytest

from helpers import sanitizer_env as _sanitizer_env

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))

# The PATH of a root shell on a fresh Debian machine.
DEBIAN_ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MARK_OUTPUT = "output of the script above"
MARK_NOT_RUN = "not run:"
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(\s*)(`{3,})(\S*)\s*$")


class Block:
    """One fenced block: file, line of the opening fence, info string
    (console, sh, ...), its lines, and the docs-test marker before it."""

    def __init__(self, path, line, lang, lines, marker):
        self.path = path
        self.line = line
        self.lang = lang
        self.lines = lines
        self.marker = marker

    @property
    def where(self):
        return "%s:%d" % (self.path, self.line)

    @property
    def text(self):
        return "".join(l + "\n" for l in self.lines)

    def has_prompt(self):
        return any(l.lstrip().startswith("$ ") for l in self.lines)


def blocks(path):
    """The fenced blocks of a Markdown file, with the marker (the text of a
    <!-- docs-test: ... --> comment) on the last non-blank line before each."""
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, lang = m.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() != ticks:
            j += 1
        body = [l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j]]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mm = _MARKER.match(lines[k].strip()) if k >= 0 else None
        out.append(Block(path, i + 1, lang, body, mm.group(1) if mm else None))
        i = j + 1
    return out


def all_blocks():
    return [b for p in DOCS for b in blocks(p)]


def runnable():
    """(id, kind, block, script block or None) for every example the suite runs."""
    cases = []
    prev = None
    for b in all_blocks():
        if b.marker == MARK_OUTPUT:
            cases.append(pytest.param("script", b, prev, id=b.where))
        elif b.lang == "console" and not (b.marker or "").startswith(MARK_NOT_RUN):
            cases.append(pytest.param("console", b, None, id=b.where))
        prev = b
    return cases


# ------------------------------------------------------------------ masking

_MASKS = [
    # 2026-12-01T23:14:20.951Z, 2026-12-01T23:00Z (an hour), 2026-12-01 alone
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z"), "<TIME>"),
    # an HTTP server's access log: [02/Dec/2026 00:08:16]
    (re.compile(r"\[\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d\]"), "[<TIME>]"),
    (re.compile(r'"pid":\d+'), '"pid":<PID>'),
    (re.compile(r"\bpid \d+"), "pid <PID>"),
    (re.compile(r"/proc/\d+/"), "/proc/<PID>/"),
    (re.compile(r'"duration_ms":\d+'), '"duration_ms":<MS>'),
    (re.compile(r"\b\d+\.\d{3} s\b"), "<SECONDS> s"),
    (re.compile(r"\b\d+\.\ds\b"), "<SECONDS>s"),
    # ephemeral ports: 5 digits after an address (127.0.0.1:53532, [::1]:40000)
    (re.compile(r"(?<=[0-9\]]:)\d{5}\b"), "<PORT>"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "<HEX>"),
    (re.compile(r"/tmp/[A-Za-z0-9_.-]+"), "/tmp/<TMP>"),
    # one event loop per CPU by default: the count is the machine's
    (re.compile(r"\b\d+ event loops? \(threads\)"), "<N> event loops (threads)"),
]


def mask(text):
    out = []
    for line in text.split("\n"):
        for rx, rep in _MASKS:
            line = rx.sub(rep, line)
        out.append(line.rstrip())
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ running

def commands(block):
    """The commands of a console block, each as its lines."""
    cmds = []
    cur = None
    for line in block.lines:
        if cur is not None and cur[-1].endswith("\\"):
            cur.append(line)
            continue
        if line.startswith("$ "):
            cur = [line[2:]]
            cmds.append(cur)
    return ["\n".join(c) for c in cmds]


def _quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def transcript_script(block):
    """A bash script printing "$ COMMAND" before running each command."""
    parts = []
    for cmd in commands(block):
        shown = "\n".join(("$ " if i == 0 else "") + l for i, l in enumerate(cmd.split("\n")))
        parts.append("printf '%%s\\n' %s\n%s\n" % (_quote(shown), cmd))
    return "".join(parts)


def _session_pids(sid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                stat = f.read().decode("latin-1")
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid:  # field 6: session id
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode("latin-1").strip()
                pids.append((int(d), cmd))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def run_bash(script, cwd, env, timeout=90):
    """Runs the bash script (a file) inside a new network namespace (only lo
    up) in a session of its own, stdin /dev/null. Returns (output,
    leftovers): stdout and stderr together, and the processes it left
    running (killed)."""
    argv = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec bash "$0"', script]
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise AssertionError("the example did not finish within %ds; it printed:\n%s"
                             % (timeout, out.decode("utf-8", "replace")))
    left = _session_pids(p.pid)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return out.decode("utf-8", "replace"), left


def _env(bindir, home):
    """A root shell's environment on a fresh Debian machine, plus the
    sanitizers' settings (a report would show in the output and fail)."""
    return _sanitizer_env({"PATH": bindir + ":" + DEBIAN_ROOT_PATH, "HOME": home, "LANG": "C.UTF-8",
                           "TERM": "dumb", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash"})


def _rewrite(block, got):
    """Replaces the block's lines in its document with got."""
    path = os.path.join(REPO, block.path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = block.line  # the line after the opening fence (block.line is 1-based)
    end = start + len(block.lines)
    assert lines[start:end] == block.lines, "%s moved while it ran" % block.where
    # A document's lines end in LF; HTTP replies end theirs in CRLF.
    lines[start:end] = [line.rstrip("\r") for line in got.rstrip("\n").split("\n")]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def compare(block, got):
    want_m, got_m = mask(block.text), mask(got)
    if want_m == got_m:
        return
    if os.environ.get("TAILFENCE_DOCS_UPDATE") == "1":
        _rewrite(block, got)
        return
    diff = "".join(difflib.unified_diff(
        want_m.splitlines(True), got_m.splitlines(True),
        "%s (the document, masked)" % block.where, "what it prints now (masked)"))
    raise AssertionError("%s drifted from what the commands print:\n%s\nunmasked output:\n%s"
                         % (block.where, diff, got))


# -------------------------------------------------------------------- tests

@pytest.mark.parametrize("kind,block,script", runnable())
def test_doc_example(kind, block, script, tailfence_bin, tmp_path):
    """The example prints what the document shows."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(tailfence_bin, bindir / "tailfence")
    work = tmp_path / "work"
    work.mkdir()
    if kind == "script":
        assert script is not None and script.lang == "sh", (
            "%s: '<!-- docs-test: %s -->' must follow a ```sh block" % (block.where, MARK_OUTPUT))
        (work / "build").mkdir()
        os.symlink(tailfence_bin, work / "build" / "tailfence")
        code = script.text
    else:
        code = transcript_script(block)
        assert code, "%s: a console block without a single \"$ \" command" % block.where
    script_path = tmp_path / "example.sh"
    script_path.write_text(code)
    out, left = run_bash(str(script_path), str(work), _env(str(bindir), str(tmp_path)))
    compare(block, out)
    assert not left, "%s leaves processes running after it ends:\n%s" % (
        block.where, "\n".join("%d %s" % pc for pc in left))


def test_every_session_is_run_or_marked():
    """A block showing a session is a ```console block; a not-run one says why."""
    problems = []
    for b in all_blocks():
        if b.has_prompt() and b.lang != "console":
            problems.append("%s: shows a session (\"$ \" lines) in a ```%s block: make it ```console "
                            "(and mark it if it cannot run here)" % (b.where, b.lang or ""))
        if b.marker is not None:
            if b.marker.startswith(MARK_NOT_RUN):
                if not b.marker[len(MARK_NOT_RUN):].strip():
                    problems.append("%s: 'not run' without a reason" % b.where)
            elif b.marker != MARK_OUTPUT:
                problems.append("%s: unknown docs-test marker %r" % (b.where, b.marker))
    assert not problems, "\n".join(problems)


def test_readme_walkthrough_is_run():
    """The README's walk-through is among the examples run (so this file
    cannot pass by finding nothing)."""
    ids = [c.id for c in runnable()]
    assert any(i.startswith("README.md:") for i in ids), ids
    assert len(ids) >= 2, ids


def test_mask_keeps_what_matters():
    """The masks hide what changes from run to run and nothing else."""
    a = ('{"v":1,"ts":"2026-11-27T23:02:29.775Z","type":"close","conn":1,"client":"127.0.0.1:53532",'
         '"bytes_up":97,"duration_ms":4,"end":"denied","pid":812}')
    b = ('{"v":1,"ts":"2025-01-02T03:04:05.006Z","type":"close","conn":1,"client":"127.0.0.1:40001",'
         '"bytes_up":97,"duration_ms":1234,"end":"denied","pid":4242}')
    assert mask(a) == mask(b)
    for field, other in (('"conn":1', '"conn":2'), ('"bytes_up":97', '"bytes_up":98'),
                         ('"end":"denied"', '"end":"client_eof"'), ("127.0.0.1:", "127.0.1.1:")):
        assert mask(a) != mask(b.replace(field, other)), field
    assert mask("listening on 127.0.0.1:1080") != mask("listening on 127.0.0.1:1081")


# ------------------------------------------------------------------ links

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(path):
    out = set()
    with open(path, encoding="utf-8") as f:
        in_fence = False
        for line in f:
            if line.lstrip().startswith("```"):
                in_fence = not in_fence
            elif not in_fence and line.startswith("#"):
                out.add(_slug(line.lstrip("#")))
    return out


def test_docs_point_only_at_what_the_repository_has():
    """Every relative link of README.md and docs/*.md reaches a file of the
    repository (and a heading in it, for #anchors); nothing sends the reader
    to a document the repository does not hold."""
    problems = []
    for doc in DOCS:
        path = os.path.join(REPO, doc)
        text = open(path, encoding="utf-8").read()
        for m in _LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not dest.startswith(REPO + os.sep) or not os.path.exists(dest):
                problems.append("%s: link to %s, which is not in the repository" % (doc, target))
            elif anchor and dest.endswith(".md") and anchor not in _anchors(dest):
                problems.append("%s: link to %s: no such heading" % (doc, target))
        for word in ("../shared", "DESIGN.md", "subnet-routing-guide"):
            if word in text:
                problems.append("%s: names %s, which is not part of the project" % (doc, word))
    assert not problems, "\n".join(problems)
