"""contrib/examples/*.json: the three scenarios of docs/railway.md are
valid tailfence configurations and allow what their comments say, nothing
more.

The addresses (10.0.0.100 and so on) are the examples'; they appear here only
as policy questions to `tailfence check`, which decides without resolving or
dialing anything (IP literals), inside the suite's private network
namespace.
"""
import subprocess

import pytest

from helpers import REPO

EXAMPLES = REPO / "contrib" / "examples"

# (example, destination, allowed?)
CASES = [
    ("onprem-database", "10.0.0.100:5432", True),
    ("onprem-database", "10.0.0.100:22", False),
    ("onprem-database", "10.0.0.101:5432", False),
    ("multicloud-vpc", "10.0.1.50:8080", True),
    ("multicloud-vpc", "10.0.2.7:443", True),
    ("multicloud-vpc", "10.0.2.7:80", False),
    ("multicloud-vpc", "10.1.0.1:443", False),
    ("railway-network", "10.0.0.5:443", False),
]


def env(routes=""):
    return {"PATH": "/usr/bin:/bin", "TAILSCALE_ADVERTISE_ROUTES": routes}


@pytest.mark.parametrize("name", ["onprem-database", "railway-network", "multicloud-vpc"])
def test_example_is_valid(tailfence_bin, name):
    r = subprocess.run([tailfence_bin, "config", "check", str(EXAMPLES / (name + ".json"))],
                       env=env(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name,dst,allowed", CASES)
def test_example_decides(tailfence_bin, name, dst, allowed):
    # railway-network advertises a subnet; the others accept routes and
    # advertise none.
    routes = "10.0.0.0/24" if name == "railway-network" else ""
    r = subprocess.run([tailfence_bin, "check", "--config", str(EXAMPLES / (name + ".json")), dst],
                       env=env(routes), capture_output=True, text=True, timeout=30)
    assert r.returncode == (0 if allowed else 1), r.stdout + r.stderr
