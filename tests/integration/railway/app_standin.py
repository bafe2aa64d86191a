#!/usr/bin/python3
"""Stands in for LiteLLM in the Railway entrypoint tests.

Uses only what the entrypoint exported: urllib honours http_proxy/no_proxy
(like LiteLLM's HTTP clients with trust_env), curl is pointed at ALL_PROXY
(socks5h, like proxychains or a SOCKS-aware client). For every URL given in
APP_URLS (space-separated) it prints one line
    APP http URL STATUS BODY        (STATUS: HTTP status, or "error:<text>")
    APP socks URL CURL_EXIT BODY
then "APP READY", and waits for SIGTERM ("APP TERM", exit APP_TERM_STATUS,
default 0). With APP_EXIT_NOW=N it exits with N right after the requests.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request


def say(*parts):
    # One write(2) per line: tailfence's audit records share this stdout,
    # and print() under PYTHONUNBUFFERED writes each part on its own.
    os.write(1, (" ".join(str(p) for p in parts) + "\n").encode())


def via_http_proxy(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())
    try:
        with opener.open(url, timeout=15) as r:
            return str(r.status), r.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        return str(e.code), ""
    except OSError as e:
        return "error:" + type(e).__name__, ""


def via_socks(url):
    if not os.environ.get("ALL_PROXY"):
        return "no-ALL_PROXY", ""
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "--proxy", os.environ["ALL_PROXY"],
         "--noproxy", "", url],
        capture_output=True, text=True)
    return str(r.returncode), r.stdout.strip()


def main():
    keys = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
            "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
            "AIOHTTP_TRUST_ENV", "TAILSCALE_AUTH_KEY")
    say("APPENV", json.dumps({k: os.environ.get(k) for k in keys}))
    for url in os.environ.get("APP_URLS", "").split():
        say("APP http", url, *via_http_proxy(url))
        say("APP socks", url, *via_socks(url))
    if "APP_EXIT_NOW" in os.environ:
        say("APP EXIT", os.environ["APP_EXIT_NOW"])
        sys.exit(int(os.environ["APP_EXIT_NOW"]))

    def on_term(signum, frame):
        say("APP TERM")
        sys.exit(int(os.environ.get("APP_TERM_STATUS", "0")))

    signal.signal(signal.SIGTERM, on_term)
    say("APP READY")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
