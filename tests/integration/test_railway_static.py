"""The static build (meson -Dstatic=true) that Dockerfile.railway drops into
the LiteLLM image: it must link, have no dynamic dependencies at all, and
run.

Built once per suite run (in the plain run; the sanitizer run skips it, the
binary does not depend on which build is under test), into a temporary
directory, offline.
"""
import os
import shutil
import subprocess

import pytest

from helpers import REPO

pytestmark = [
    pytest.mark.skipif(os.environ.get("TAILFENCE_SANITIZED") == "1",
                       reason="the static build is checked once, in the plain run"),
    pytest.mark.timeout(900),  # a full release build on a busy machine
]


@pytest.fixture(scope="module")
def static_tailfence(tmp_path_factory):
    if shutil.which("meson") is None:
        pytest.skip("meson not installed")
    build = tmp_path_factory.mktemp("static") / "build"
    r = subprocess.run(["meson", "setup", str(build), "-Dstatic=true", "--buildtype=release"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "meson setup -Dstatic=true failed:\n" + r.stdout + r.stderr
    r = subprocess.run(["meson", "compile", "-C", str(build), "tailfence:executable"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    hint = ""
    if "cannot find -lcjson" in out:
        hint = ("\nDebian 12's libcjson-dev has no static archive (libcjson.a). The "
                "Dockerfile builds one from Debian's cJSON source; this machine needs "
                "the same (or meson.build a fallback) for -Dstatic=true to link.")
    assert r.returncode == 0, "static link failed:\n" + out[-4000:] + hint
    return build / "tailfence"


def test_static_binary_has_no_dynamic_dependencies(static_tailfence):
    r = subprocess.run(["readelf", "--dynamic", "--program-headers", str(static_tailfence)],
                       capture_output=True, text=True, check=True)
    assert "NEEDED" not in r.stdout, r.stdout
    assert "INTERP" not in r.stdout, r.stdout  # no dynamic loader either
    r = subprocess.run(["ldd", str(static_tailfence)], capture_output=True, text=True)
    assert "not a dynamic executable" in (r.stdout + r.stderr), r.stdout + r.stderr


def test_static_binary_runs(static_tailfence):
    r = subprocess.run([str(static_tailfence), "--version"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("tailfence "), r.stdout
    # The configuration code (cJSON, OpenSSL, libevent) works in the static
    # binary too.
    env = {"PATH": "/usr/bin:/bin", "TAILSCALE_ADVERTISE_ROUTES": "127.0.0.0/24"}
    r = subprocess.run([str(static_tailfence), "config", "check"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    env["TAILSCALE_ADVERTISE_ROUTES"] = "127.0.0.1/24"
    r = subprocess.run([str(static_tailfence), "config", "check"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "did you mean 127.0.0.0/24" in r.stderr
