#!/usr/bin/env python3
"""Bounded UDP traffic for scripts/lab: `serve PORT SECONDS` echoes
datagrams back; `send HOST PORT FLOWS PACKETS RATE` sends PACKETS unique
datagrams on each of FLOWS source ports at RATE packets/s in all, and
collects the echoes. Standard library only."""
import os
import socket
import sys
import time


def serve(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.2)
    end = time.monotonic() + seconds
    echoed = 0
    while time.monotonic() < end:
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            continue
        s.sendto(data, peer)
        echoed += 1
    print(f"lab-traffic: echoed {echoed}", file=sys.stderr)


def drain(socks):
    """Echoes waiting on the sockets, read without blocking."""
    n = 0
    for s in socks:
        try:
            while s.recv(2048):
                n += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
    return n


def send(host, port, flows, packets, rate):
    socks = []
    for _ in range(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((host, port))
        socks.append(s)
    gap = 1.0 / rate
    sent = received = 0
    start = time.monotonic()
    for i in range(packets):
        for f, s in enumerate(socks):
            payload = f"{f}:{i}:".encode() + os.urandom(16 + (i % 200))
            s.send(payload)
            sent += 1
            next_at = start + sent * gap
            while time.monotonic() < next_at:
                time.sleep(max(0.0, next_at - time.monotonic()) / 2)
        received += drain(socks)
    time.sleep(0.5)
    received += drain(socks)
    print(f"lab-traffic: sent {sent}, echoes received {received}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), float(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
