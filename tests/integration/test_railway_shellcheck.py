"""shellcheck over every shell script in the repository.

A shell script is a file whose first line is a #! for sh, bash or dash, or
a *.sh file. Build directories, .git and subprojects are not looked at.
"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from helpers import REPO

SHEBANG = re.compile(rb"^#!\s*(/usr)?/bin/(env\s+)?(sh|bash|dash)\b")
SKIP_DIRS = {".git", "subprojects", "node_modules", "__pycache__", "build-results"}


def shell_scripts():
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames
                       if d not in SKIP_DIRS and not d.startswith("build")]
        for name in filenames:
            p = pathlib.Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            try:
                with open(p, "rb") as f:
                    head = f.readline(200)
            except OSError:
                continue
            if name.endswith(".sh") or SHEBANG.match(head):
                found.append(p)
    return sorted(found)


def test_the_railway_scripts_are_found():
    # Guards the finder itself: if it stopped matching, the test below
    # would pass on nothing.
    names = {p.relative_to(REPO).as_posix() for p in shell_scripts()}
    assert {"contrib/railway/entrypoint", "contrib/railway/healthcheck"} <= names


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", [p.relative_to(REPO).as_posix() for p in shell_scripts()])
def test_shellcheck_clean(script):
    r = subprocess.run(["shellcheck", "--external-sources", script], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
