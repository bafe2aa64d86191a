"""webserver: the HTTP server that stands behind the tailnet's subnet router.

Run inside namespace B by the harness (tailnet/harness.py):

    /usr/bin/python3 webserver.py --label LABEL --hits FILE HOST:PORT [HOST:PORT ...]

Listens on every HOST:PORT (IPv4 or IPv6 literals). Every request, whatever
the method or path, is answered 200 with a JSON body naming this server:
{"server": LABEL, "local": "HOST:PORT", "client": "IP", "path": ..., "method": ...}.
Each request is also appended to FILE as one JSON line
{"client", "client_port", "local", "local_port", "method", "path", "host"}
before the answer is sent, so a caller that got the answer finds the hit.
Prints "ready" on stdout once every socket listens.
"""
import argparse
import http.server
import json
import socket
import sys
import threading

_lock = threading.Lock()


def split_hostport(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tailnet-web"

    def log_message(self, *args):
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        local = self.connection.getsockname()
        client = self.client_address
        hit = {"client": client[0], "client_port": client[1], "local": local[0],
               "local_port": local[1], "method": self.command, "path": self.path,
               "host": self.headers.get("Host")}
        with _lock:
            with open(self.server.hits_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(hit) + "\n")
        body = json.dumps({"server": self.server.label,
                           "local": "%s:%d" % (local[0], local[1]) if ":" not in local[0]
                           else "[%s]:%d" % (local[0], local[1]),
                           "client": client[0], "path": self.path,
                           "method": self.command}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _answer


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--hits", required=True)
    ap.add_argument("listen", nargs="+")
    args = ap.parse_args()
    servers = []
    for hp in args.listen:
        host, port = split_hostport(hp)
        cls = Server6 if ":" in host else Server
        srv = cls((host, port), Handler)
        srv.label = args.label
        srv.hits_path = args.hits
        servers.append(srv)
    open(args.hits, "a").close()
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    sys.exit(main())
