"""
Issue 2: real applications pointed at tailfence the way the README tells
users to: psql under proxychains4 (with proxy_dns) against a real PostgreSQL
through tailfence and tailscaled, python3-httpx with HTTPS_PROXY and with
ALL_PROXY=socks5://, python3-aiohttp with trust_env=True.
"""

import json
import subprocess

import pytest

from helpers import clean_env, run_python


def proxychains_conf(tmp_path, port):
    path = tmp_path / "proxychains.conf"
    path.write_text("strict_chain\nproxy_dns\nremote_dns_subnet 224\nquiet_mode\n"
                    "tcp_read_time_out 15000\ntcp_connect_time_out 8000\n\n"
                    "[ProxyList]\nsocks5 127.0.0.1 %d\n" % port)
    return str(path)


def psql_via_proxychains(conf, dsn, sql):
    return subprocess.run(["proxychains4", "-q", "-f", conf, "psql", "-X", "-At", dsn, "-c", sql],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env=clean_env(PGCONNECT_TIMEOUT="10"))


def test_psql_through_proxychains_tailfence_tailscaled(tailfence, tailscaled, postgres, tmp_path):
    d = tailfence(upstream=tailscaled.socks5_url)
    conf = proxychains_conf(tmp_path, d.port)
    p = psql_via_proxychains(conf, postgres.dsn(), "select string_agg(name, ',' order by id) from items")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "alpha,beta,gamma"
    dec = d.wait_audit(type="decision", verdict="allow", port=postgres.port)[0]
    assert dec["proto"] == "socks5" and dec["addr"] == "127.0.0.1"
    assert dec["upstream"] == tailscaled.socks5_url, dec
    close = d.wait_close(dec["conn"])
    assert close["bytes_up"] > 0 and close["bytes_down"] > 0


def test_psql_database_url_by_name_with_proxy_dns(tailfence, tailscaled, postgres, tmp_path, hosts_file):
    # proxychains4's proxy_dns hands the name to tailfence, which resolves it
    # (here from its hosts file) and checks the address.
    d = tailfence("--hosts-file", hosts_file({"db.test": "127.0.0.1"}), upstream=tailscaled.socks5_url)
    conf = proxychains_conf(tmp_path, d.port)
    database_url = postgres.dsn(host="db.test")
    p = psql_via_proxychains(conf, database_url, "insert into items values (100, 'via-proxy') "
                             "on conflict (id) do update set name = excluded.name returning name")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "via-proxy"
    dec = d.wait_audit(type="decision", verdict="allow", port=postgres.port)[0]
    assert dec["host"] == "db.test" and dec["addr"] == "127.0.0.1", dec


def test_psql_to_a_port_outside_the_allowlist_is_refused(tailfence, tailscaled, postgres, tmp_path):
    d = tailfence(upstream=tailscaled.socks5_url, allow=("127.0.0.0/24:1-1023",))
    conf = proxychains_conf(tmp_path, d.port)
    p = psql_via_proxychains(conf, postgres.dsn(), "select 1")
    assert p.returncode != 0, p.stdout
    d.wait_audit(type="decision", verdict="deny", port=postgres.port)


HTTPX = """
import sys, httpx
r = httpx.get(sys.argv[1] if len(sys.argv) > 1 else URL, verify=CA, timeout=20)
print(r.status_code)
print(r.text)
"""

AIOHTTP = """
import asyncio, ssl, aiohttp
async def main():
    ctx = ssl.create_default_context(cafile=CA)
    async with aiohttp.ClientSession(trust_env=True) as s:
        async with s.get(URL, ssl=ctx, timeout=aiohttp.ClientTimeout(total=20)) as r:
            print(r.status)
            print(await r.text())
asyncio.run(main())
"""


def run_client(template, url, ca, env):
    code = "URL = %r\nCA = %r\n" % (url, ca) + template
    p = run_python(code, env=clean_env(**env))
    assert p.returncode == 0, p.stderr[-3000:]
    status, _, body = p.stdout.partition("\n")
    return int(status), json.loads(body)


@pytest.mark.parametrize("upstream", ["tailscaled-socks5", "tailscaled-http"])
def test_httpx_https_proxy(upstream, tailfence, upstream_url, https_origin, tls_cert):
    d = tailfence(upstream=upstream_url(upstream))
    status, req = run_client(HTTPX, https_origin.url + "httpx", tls_cert[0], {"HTTPS_PROXY": d.url("http")})
    assert status == 200 and req["tls"] and req["path"] == "/httpx"
    d.wait_audit(type="decision", verdict="allow", proto="http-connect", port=https_origin.port)


@pytest.mark.parametrize("origin", ["http", "https"])
def test_httpx_all_proxy_socks5(origin, tailfence, tailscaled, request, tls_cert):
    o = request.getfixturevalue(origin + "_origin")
    d = tailfence(upstream=tailscaled.socks5_url)
    status, req = run_client(HTTPX, o.url + "socks", tls_cert[0], {"ALL_PROXY": d.url("socks5")})
    assert status == 200 and req["path"] == "/socks"
    d.wait_audit(type="decision", verdict="allow", proto="socks5", port=o.port)


def test_aiohttp_trust_env_https_proxy(tailfence, tailscaled, https_origin, tls_cert):
    d = tailfence(upstream=tailscaled.socks5_url)
    status, req = run_client(AIOHTTP, https_origin.url + "aiohttp", tls_cert[0],
                             {"HTTPS_PROXY": d.url("http")})
    assert status == 200 and req["tls"] and req["path"] == "/aiohttp"
    d.wait_audit(type="decision", verdict="allow", proto="http-connect", port=https_origin.port)


def test_aiohttp_trust_env_http_proxy(tailfence, tailscaled, http_origin, tls_cert):
    d = tailfence(upstream=tailscaled.socks5_url)
    status, req = run_client(AIOHTTP, http_origin.url + "plain", tls_cert[0],
                             {"HTTP_PROXY": d.url("http")})
    assert status == 200 and req["path"] == "/plain"
    d.wait_audit(type="decision", verdict="allow", proto="http", port=http_origin.port)


def test_aiohttp_denied_gets_403(tailfence, tailscaled, origins, tls_cert):
    denied = origins.https("127.0.1.1")
    d = tailfence(upstream=tailscaled.socks5_url)
    code = "URL = %r\nCA = %r\n" % (denied.url, tls_cert[0]) + AIOHTTP
    p = run_python(code, env=clean_env(HTTPS_PROXY=d.url("http")))
    assert p.returncode != 0
    assert "403" in p.stderr, p.stderr[-2000:]
    assert denied.count == 0
