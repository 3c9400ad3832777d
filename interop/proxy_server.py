#!/usr/bin/env python3
"""proxy.py (from PyPI, pinned in requirements.txt) as an HTTP CONNECT proxy for tether's
proxy tests (tests/tests/tls_proxy.rs).

Usage: proxy_server.py [--exit-with-stdin] [PROXY.PY FLAGS...]

Starts proxy.py embedded, on 127.0.0.1 and a free port, with one acceptor, and prints
`READY <port>` once listening. Other flags go to proxy.py as they are (for example
`--basic-auth user:pass`). Exits, shutting proxy.py's acceptor process down, on SIGTERM or
SIGINT, and with `--exit-with-stdin` also when its standard input closes (so a test that
dies does not leave it behind). proxy.py's own log lines go to stderr.
"""

import os
import signal
import sys
import threading

import proxy


def wait_for_eof(stop):
    while os.read(0, 4096):
        pass
    stop.set()


def main(args):
    exit_with_stdin = "--exit-with-stdin" in args
    args = [a for a in args if a != "--exit-with-stdin"]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    flags = [
        "--hostname", "127.0.0.1",
        "--port", "0",
        "--num-acceptors", "1",
        "--num-workers", "1",
        "--log-level", "WARNING",
        "--log-file", "/dev/stderr",
    ] + args
    with proxy.Proxy(flags) as running:
        print(f"READY {running.flags.port}", flush=True)
        if exit_with_stdin:
            # Watched only now, after proxy.py forked its acceptor, and with os.read: a
            # child forked while a thread holds sys.stdin's lock deadlocks when
            # multiprocessing closes stdin in it.
            threading.Thread(target=wait_for_eof, args=(stop,), daemon=True).start()
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
