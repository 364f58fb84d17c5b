#!/usr/bin/env python3
"""A wire with a delay: relays Ethernet frames between two interfaces
(AF_PACKET) and holds each for DELAY_MS before sending it on (frames from
IF_B back to IF_A for BACK_MS, DELAY_MS if not given), for at most SECONDS.
The kernel has no netem here; this stands in for it on one link of
scripts/lab. At the end it says the median time it really held frames each
way (the wire's truth, its own scheduling included). Standard library only.

    lab-relay.py IF_A IF_B DELAY_MS SECONDS [BACK_MS]
"""
import heapq
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main():
    left, right, delay_ms, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    back_ms = float(sys.argv[5]) if len(sys.argv) > 5 else delay_ms
    sockets = {}
    for name in (left, right):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        s.setblocking(False)
        sockets[name] = s
    other = {sockets[left]: sockets[right], sockets[right]: sockets[left]}
    delay = {sockets[left]: delay_ms / 1000.0, sockets[right]: back_ms / 1000.0}
    due = []  # (send time, sequence, socket, frame, received at)
    held = {sockets[left]: [], sockets[right]: []}
    sequence = 0
    end = time.monotonic() + seconds
    relayed = 0
    # stopped early (the lab is done): say what was held all the same
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while time.monotonic() < end:
            wait = 0.05 if not due else max(0.0, min(0.05, due[0][0] - time.monotonic()))
            readable, _, _ = select.select(list(other), [], [], wait)
            for s in readable:
                while True:
                    try:
                        frame, address = s.recvfrom(65535)
                    except BlockingIOError:
                        break
                    # our own sends show up as outgoing on the far side: skip them
                    if address[2] == PACKET_OUTGOING:
                        continue
                    received = time.monotonic()
                    heapq.heappush(due, (received + delay[s], sequence, other[s], frame, received))
                    sequence += 1
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, out, frame, received = heapq.heappop(due)
                out.send(frame)
                held[out].append(time.monotonic() - received)
                relayed += 1
    finally:
        median = lambda v: sorted(v)[len(v) // 2] * 1000 if v else float("nan")
        print(f"lab-relay: {relayed} frames relayed with {delay_ms} ms one way, {back_ms} ms back", file=sys.stderr)
        # frames sent out of the right interface went one way, out of the left back
        print(f"lab-relay: held one way {median(held[sockets[right]]):.4f} ms, "
              f"back {median(held[sockets[left]]):.4f} ms (medians)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
