"""conftest: fixtures for the image test (tests/image/run drives it).

The image was built by tests/image/build into $TAILFENCE_IMAGE_DIR, whose
podman configuration CONTAINERS_CONF / CONTAINERS_STORAGE_CONF /
CONTAINERS_REGISTRIES_CONF point at (tests/image/lib.sh). pytest runs in a
private network namespace with only lo (`unshare --net --mount`): that
namespace is the tailnet harness's node A, and a container joins it with
--network ns:/proc/PID/ns/net. Anything else runs with --network none.

Nothing here skips: when something needed is missing the test fails and
says what.

Fixtures
  podman(*args, timeout=120, check=False) -> CompletedProcess (text)
  image       (session) the Railway image's name
  tailnet     (session) the harness's Tailnet (tests/integration/tailnet)
  results     where the container's log and timings go ($TAILFENCE_IMAGE_RESULTS,
              else a temporary directory)
"""
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from tailnet import Tailnet, missing_requirements  # noqa: E402

IMAGE = "localhost/tailfence-ci/litellm-tailfence:test"


def _podman(*args, timeout=120, check=False, **kw):
    kw.setdefault("capture_output", True)
    r = subprocess.run(["podman", *map(str, args)], text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError("podman %s exited %d:\n%s%s" % (
            " ".join(map(str, args)), r.returncode, r.stdout or "", r.stderr or ""))
    return r


@pytest.fixture(scope="session")
def podman():
    for v in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        if not os.environ.get(v):
            pytest.fail("%s is not set: run the image test through tests/image/run" % v)
    return _podman


@pytest.fixture(scope="session")
def image(podman):
    if podman("image", "exists", IMAGE).returncode != 0:
        pytest.fail("%s is not in the storage of %s: tests/image/build did not build it"
                    % (IMAGE, os.environ.get("TAILFENCE_IMAGE_DIR")))
    return IMAGE


@pytest.fixture(scope="session")
def results():
    d = os.environ.get("TAILFENCE_IMAGE_RESULTS") or tempfile.mkdtemp(prefix="tf-image-results-")
    os.makedirs(d, exist_ok=True)
    return pathlib.Path(d)


@pytest.fixture(scope="session")
def tailnet(tmp_path_factory):
    why = missing_requirements()
    if why:
        pytest.fail("the tailnet harness cannot run: " + "; ".join(why))
    tn = Tailnet(str(tmp_path_factory.mktemp("tailnet")), log=lambda m: print("tailnet: " + m))
    tn.start()
    yield tn
    tn.close()
