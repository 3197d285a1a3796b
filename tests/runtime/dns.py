"""The rig's cluster DNS: a stand-in for CoreDNS, run in a Pod of namespace kube-system labelled
k8s-app=kube-dns, so that a NetworkPolicy's DNS egress rule decides whether Pods resolve the
head Service, as in a real cluster.

Answers A queries from a zone file (JSON, {"fqdn": "address"}, read on every query so the rig
can change it) over UDP and TCP on port 53; a known name of another type gets an empty answer,
anything else NXDOMAIN. Never forwards (nothing may leave the machine).

    python dns.py --listen 198.18.0.53 --zone zone.json
"""
from __future__ import annotations

import argparse
import json
import socket
import socketserver
import struct
import threading

A, IN = 1, 1
NOERROR, FORMERR, NXDOMAIN = 0, 1, 3


def parse_question(msg: bytes):
    """(id, flags, qname, qtype, qclass, end of the question) of a query."""
    qid, flags, qdcount = struct.unpack(">HHH", msg[:6])
    if qdcount != 1:
        raise ValueError("one question")
    labels, i = [], 12
    while msg[i]:
        n = msg[i]
        if n & 0xC0:  # no compression in a question
            raise ValueError("compressed qname")
        labels.append(msg[i + 1:i + 1 + n].decode("ascii").lower())
        i += 1 + n
    qtype, qclass = struct.unpack(">HH", msg[i + 1:i + 5])
    return qid, flags, ".".join(labels), qtype, qclass, i + 5


def answer(msg: bytes, zone_path: str, client: str = "?") -> bytes:
    try:
        qid, flags, name, qtype, qclass, end = parse_question(msg)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        print(f"{client} malformed query", flush=True)
        qid = struct.unpack(">H", msg[:2])[0] if len(msg) >= 2 else 0
        return struct.pack(">HHHHHH", qid, 0x8000 | FORMERR, 0, 0, 0, 0)
    with open(zone_path) as f:
        zone = {k.lower().rstrip("."): v for k, v in json.load(f).items()}
    addr = zone.get(name)
    rcode = NXDOMAIN if addr is None else NOERROR
    answers = b""
    if addr is not None and qtype == A and qclass == IN:
        # A pointer to the question's name (offset 12), TTL 5 s (CoreDNS's kubernetes plugin).
        answers = struct.pack(">HHHIH", 0xC00C, A, IN, 5, 4) + socket.inet_aton(addr)
    # Every query in the log: which names Ray looks up, and from where.
    said = addr if answers else "NXDOMAIN" if addr is None else "no data"
    print(f"{client} {name} type {qtype}: {said}", flush=True)
    # QR, opcode and RD from the query, AA and RA set.
    out_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
    header = struct.pack(">HHHHHH", qid, out_flags, 1, 1 if answers else 0, 0, 0)
    return header + msg[12:end] + answers


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True)
    p.add_argument("--zone", required=True)
    args = p.parse_args()
    zone = args.zone

    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            sock.sendto(answer(data, zone, f"udp {self.client_address[0]}"), self.client_address)

    class TCP(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                msg = self.rfile.read(struct.unpack(">H", head)[0])
                reply = answer(msg, zone, f"tcp {self.client_address[0]}")
                self.wfile.write(struct.pack(">H", len(reply)) + reply)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((args.listen, 53), UDP)
    tcp = socketserver.ThreadingTCPServer((args.listen, 53), TCP)
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    tcp.serve_forever()


if __name__ == "__main__":
    main()
