#!/usr/bin/env python3
"""Bounded UDP traffic for the labs: `serve PORT SECONDS` echoes
datagrams back; `send HOST PORT FLOWS PACKETS RATE` sends PACKETS unique
datagrams on each of FLOWS source ports at RATE packets/s in all, and
collects the echoes; `sink PORT SECONDS` reads and discards; `steady HOST
PORT MBPS SECONDS` sends 1400-octet datagrams at a steady bit rate and
prints when it started and stopped (ns). Standard library only."""
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


def sink(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s.recv(4096)
        except socket.timeout:
            pass


def steady(host, port, mbps, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    payload = os.urandom(1400)
    # octets on the wire per datagram: payload, UDP, IPv4, Ethernet
    gap = (1400 + 8 + 20 + 14) * 8 / (mbps * 1e6)
    started = time.time_ns()
    start = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = start + sent * gap
        if now < due:
            time.sleep(min(due - now, 0.01))
            continue
        s.send(payload)
        sent += 1
    print(f"{started} {time.time_ns()} {sent}")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1] == "sink":
        sink(int(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1] == "steady":
        steady(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
