#!/usr/bin/env python3
"""Readiness probe for the stack's Kafka broker (stdlib only).

Sends a Metadata v4 request and succeeds (exit 0) when the broker answers with
at least one broker and a known controller.  Usage: kafka_probe.py HOST PORT
"""
import socket
import struct
import sys


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def probe(host, port, timeout=3.0):
    client_id = b"logflow-stack-probe"
    # Request header v1: api_key, api_version, correlation_id, client_id
    header = struct.pack(">hhih", 3, 4, 42, len(client_id)) + client_id
    # Metadata v4 body: topics = null (all), allow_auto_topic_creation = false
    body = struct.pack(">i?", -1, False)
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        data = recv_exact(sock, size)
    pos = 0
    (corr,) = struct.unpack_from(">i", data, pos); pos += 4
    if corr != 42:
        raise ValueError("bad correlation id")
    pos += 4  # throttle_time_ms
    (nbrokers,) = struct.unpack_from(">i", data, pos); pos += 4
    for _ in range(nbrokers):
        pos += 4  # node_id
        (hlen,) = struct.unpack_from(">h", data, pos); pos += 2 + hlen
        pos += 4  # port
        (rlen,) = struct.unpack_from(">h", data, pos); pos += 2 + max(rlen, 0)
    (clen,) = struct.unpack_from(">h", data, pos); pos += 2 + max(clen, 0)
    (controller,) = struct.unpack_from(">i", data, pos)
    return nbrokers, controller


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9092
    try:
        nbrokers, controller = probe(host, port)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    if nbrokers < 1 or controller < 0:
        print(f"not ready: brokers={nbrokers} controller={controller}", file=sys.stderr)
        return 1
    print(f"ok brokers={nbrokers} controller={controller}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
