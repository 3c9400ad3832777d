#!/usr/bin/env python3
"""A WebSocket client on the Python `websockets` library (17.x), for tether's server tests.

Usage: python_client.py URL CODE REASON [MESSAGES]

Connects to URL with the library's defaults (it offers permessage-deflate, which a tether
server declines), sends MESSAGES (default 3) text messages `python <i>` one at a time and
checks that each comes back unchanged, then closes with CODE and REASON and waits for the
server's answering close frame. Prints `ECHOED <n>`, then `CLOSED <code>` with the code of
the server's close frame (`none` if none arrived), and exits 0; exits 1 if an echo
differs or anything fails, and is stopped by SIGALRM after 10 s at most.
"""

import signal
import sys

from websockets.sync.client import connect


def main() -> int:
    url, code, reason = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    signal.alarm(10)
    with connect(url, open_timeout=5, close_timeout=5) as ws:
        for i in range(count):
            sent = f"python {i}"
            ws.send(sent)
            got = ws.recv(timeout=5)
            if got != sent:
                print(f"sent {sent!r}, echoed {got!r}", file=sys.stderr)
                return 1
        print(f"ECHOED {count}", flush=True)
        ws.close(code, reason)
        rcvd = ws.protocol.close_rcvd
        print(f"CLOSED {rcvd.code if rcvd else 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
