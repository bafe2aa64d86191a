"""dnsserver: a tiny authoritative DNS server (UDP and TCP), plus the DNS
message codec the harness uses to read tailscaled's answers.

Run inside namespace B by the harness (tailnet/harness.py):

    /usr/bin/python3 dnsserver.py --queries FILE --record NAME TYPE VALUE ... HOST:PORT

Answers A and AAAA questions from the --record list (TTL 60, authoritative).
A name with records but none of the asked type gets an empty NOERROR answer;
any other name NXDOMAIN. Every question is appended to FILE as one JSON line
{"name" (lower case, no trailing dot), "type" ("A", "AAAA", or the number),
"transport" ("udp"/"tcp"), "client", "client_port"} before the answer is
sent. Prints "ready" on stdout once both sockets listen.

Importable: parse_message(data) and build_query(name, qtype) need nothing but
the standard library.
"""
import argparse
import json
import socket
import socketserver
import struct
import sys
import threading

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
         "AAAA": 28, "SRV": 33, "HTTPS": 65, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def type_name(t):
    return TYPE_NAMES.get(t, str(t))


# ------------------------------------------------------------------ codec

def _read_name(data, off):
    """The name at off (following compression pointers) and the offset just
    past it in the original position."""
    labels = []
    end = None
    seen = 0
    while True:
        if off >= len(data):
            raise ValueError("name runs past the message")
        n = data[off]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            seen += 1
            if seen > 64:
                raise ValueError("compression loop")
            continue
        off += 1
        if n == 0:
            break
        labels.append(data[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if end is not None else off)


def _encode_name(name):
    out = bytearray()
    for label in name.strip(".").split("."):
        if label:
            b = label.encode("ascii")
            out.append(len(b))
            out += b
    out.append(0)
    return bytes(out)


def _rdata_text(rtype, rdata, data, off):
    if rtype == 1 and len(rdata) == 4:
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rtype == 28 and len(rdata) == 16:
        return socket.inet_ntop(socket.AF_INET6, rdata)
    if rtype in (2, 5, 12):
        return _read_name(data, off)[0]
    return rdata.hex()


def parse_message(data):
    """Decodes a DNS message into {"id", "qr", "aa", "tc", "rd", "ra", "rcode"
    (name, e.g. "NXDOMAIN"), "questions": [{"name", "type"}], "answers":
    [{"name", "type", "ttl", "data"}]} (A/AAAA data as address text)."""
    if len(data) < 12:
        raise ValueError("DNS message of %d bytes" % len(data))
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", data[:12])
    msg = {"id": qid, "qr": bool(flags & 0x8000), "aa": bool(flags & 0x0400),
           "tc": bool(flags & 0x0200), "rd": bool(flags & 0x0100), "ra": bool(flags & 0x0080),
           "rcode": RCODES.get(flags & 0xF, str(flags & 0xF)), "questions": [], "answers": []}
    off = 12
    for _ in range(qd):
        name, off = _read_name(data, off)
        qtype, _qclass = struct.unpack("!HH", data[off:off + 4])
        off += 4
        msg["questions"].append({"name": name.lower(), "type": type_name(qtype)})
    for _ in range(an):
        name, off = _read_name(data, off)
        rtype, _rclass, ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        rdata = data[off:off + rdlen]
        msg["answers"].append({"name": name.lower(), "type": type_name(rtype), "ttl": ttl,
                               "data": _rdata_text(rtype, rdata, data, off)})
        off += rdlen
    return msg


def build_query(name, qtype="A", qid=0x1234):
    """A recursion-desired query for name."""
    t = TYPES[qtype] if isinstance(qtype, str) else qtype
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack("!HH", t, 1)


def build_answer(query, records):
    """The answer to query (bytes) from records {(name, type): [value...]}.
    Returns (answer bytes, question dict or None)."""
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!6H", query[:12])
    rd = flags & 0x0100
    if qd != 1 or flags & 0x8000:
        return struct.pack("!6H", qid, 0x8000 | rd | 1, 0, 0, 0, 0), None  # FORMERR
    name, off = _read_name(query, 12)
    qtype, qclass = struct.unpack("!HH", query[off:off + 4])
    question = query[12:off + 4]
    key = name.lower().rstrip(".")
    names = {n for (n, _t) in records}
    answers = records.get((key, type_name(qtype)), []) if qclass == 1 else []
    rcode = 0 if key in names else 3
    out = bytearray(struct.pack("!6H", qid, 0x8000 | 0x0400 | rd | rcode, 1, len(answers), 0, 0))
    out += question
    for value in answers:
        if qtype == 1:
            rdata = socket.inet_pton(socket.AF_INET, value)
        else:
            rdata = socket.inet_pton(socket.AF_INET6, value)
        out += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rdata)) + rdata
    return bytes(out), {"name": key, "type": type_name(qtype)}


# ----------------------------------------------------------------- server

class State:
    def __init__(self, records, queries_path):
        self.records = records
        self.queries_path = queries_path
        self.lock = threading.Lock()

    def answer(self, query, transport, client):
        try:
            out, q = build_answer(query, self.records)
        except (ValueError, struct.error, IndexError):
            return None
        if q is not None:
            q.update(transport=transport, client=client[0], client_port=client[1])
            with self.lock:
                with open(self.queries_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(q) + "\n")
        return out


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = self.server.state.answer(data, "udp", self.client_address)
        if out is not None:
            sock.sendto(out, self.client_address)


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        conn.settimeout(30)
        f = conn.makefile("rb")
        while True:
            head = f.read(2)
            if len(head) < 2:
                return
            (n,) = struct.unpack("!H", head)
            query = f.read(n)
            if len(query) < n:
                return
            out = self.server.state.answer(query, "tcp", self.client_address)
            if out is None:
                return
            conn.sendall(struct.pack("!H", len(out)) + out)


class UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", required=True)
    ap.add_argument("--record", nargs=3, action="append", default=[],
                    metavar=("NAME", "TYPE", "VALUE"))
    ap.add_argument("listen")
    args = ap.parse_args()
    records = {}
    for name, rtype, value in args.record:
        rtype = rtype.upper()
        if rtype not in ("A", "AAAA"):
            ap.error("only A and AAAA records: %s %s" % (name, rtype))
        records.setdefault((name.lower().rstrip("."), rtype), []).append(value)
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    state = State(records, args.queries)
    open(args.queries, "a").close()
    UDPServer.address_family = TCPServer.address_family = family
    udp = UDPServer((host, int(port)), UDPHandler)
    tcp = TCPServer((host, int(port)), TCPHandler)
    udp.state = tcp.state = state
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    print("ready", flush=True)
    tcp.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
