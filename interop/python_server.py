#!/usr/bin/env python3
"""A HelloAck peer on the Python `websockets` library (17.x), for tether's interop tests.

Usage: python_server.py PORT [--exit-with-stdin] [--tls CERT_PEM KEY_PEM]

Binds 127.0.0.1:PORT only (0: any free port), prints `READY <port>` once listening,
`CONNECTION <n>` for the n-th accepted WebSocket and `CLOSED <n> <code>` when it ends,
with the close code the client sent (1006: no close frame arrived), exits on SIGTERM or SIGINT, and with
`--exit-with-stdin` also when its standard input closes (so a test that dies does not
leave it behind). With `--tls` it serves `wss://` with that certificate (chain) and key,
through Python's `ssl` module. The HelloAck profile (docs/protocols.md), one JSON object per text frame:

- `{"type":"hello",...}` -> `{"type":"hello_ack"}`
- `{"type":"request","id":n,"method":m,"params":p}` -> `{"type":"response","id":n,"result":p}`
  - method "slow": the response comes 200 ms later (other requests are not held up);
  - method "close4001": after the response, the server closes the connection with
    4001 "auth revoked";
  - method "count" (a stream): events `{"type":"event","stream":"<id>","seq":k,
    "state":"delta","text":"<k> "}` for k = 1..COUNT, one every TICK, then the final at
    COUNT + 1; the response `{"streaming":true}` follows the first event.
- The recovery dialect (docs/protocols.md): every `hello_ack` carries
  `"session": "interop"`; a hello with `"resume"` whose session is `"interop"` is
  answered `"recovered": true` and each of its streams carries on after its position
  (an event's content depends only on its seq, so a restarted server resumes too); any
  other session is answered `"recovered": false`.
  - method "headers": the result is the upgrade request's headers (names in lower
    case) and the subprotocol selected, `{"headers": {...}, "subprotocol": s}`.
- The upgrade, by request path:
  - `/reject/CODE` is answered with HTTP CODE (with `Retry-After: 7` for 503);
  - `/sub/bogus` selects subprotocol `bogus` whatever the client offered;
  - `/sub/none` selects no subprotocol;
  - any other path selects the first of `chat.v2`, `chat.v1` the client offered, or
    none.
- anything else is ignored.
"""

import asyncio
import json
import signal
import ssl
import sys
import threading

from http import HTTPStatus

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


COUNT = 40
TICK = 0.025
SESSION = "interop"


def count_event(key, seq):
    if seq > COUNT:
        return {"type": "event", "stream": key, "seq": seq, "state": "final"}
    return {"type": "event", "stream": key, "seq": seq, "state": "delta", "text": f"{seq} "}


async def count(ws, key, start, request_id=None):
    """Sends stream `key` from `start` to its final, one event per TICK."""
    try:
        for seq in range(start, COUNT + 2):
            await ws.send(json.dumps(count_event(key, seq)))
            if request_id is not None and seq == start:
                response = {"type": "response", "id": request_id, "result": {"streaming": True}}
                await ws.send(json.dumps(response))
            await asyncio.sleep(TICK)
    except ConnectionClosed:
        pass


def ack_for(hello):
    ack = {"type": "hello_ack", "session": SESSION}
    resume = hello.get("resume")
    streams = {}
    if isinstance(resume, dict):
        ok = resume.get("session") == SESSION
        ack["recovered"] = ok
        if ok and isinstance(resume.get("streams"), dict):
            streams = resume["streams"]
    return ack, streams


SUBPROTOCOLS = ["chat.v2", "chat.v1"]


def select_subprotocol(connection, offered):
    path = connection.request.path
    if path == "/sub/bogus":
        return "bogus"
    if path == "/sub/none":
        return None
    for p in SUBPROTOCOLS:
        if p in offered:
            return p
    return None


def process_request(connection, request):
    if request.path.startswith("/reject/"):
        code = int(request.path.split("/")[2])
        response = connection.respond(HTTPStatus(code), "rejected\n")
        if code == 503:
            response.headers["Retry-After"] = "7"
        return response
    return None


async def answer(ws, frame):
    if frame.get("method") == "slow":
        await asyncio.sleep(0.2)
    result = frame.get("params")
    if frame.get("method") == "headers":
        headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        result = {"headers": headers, "subprotocol": ws.subprotocol}
    response = {"type": "response", "id": frame.get("id"), "result": result}
    try:
        await ws.send(json.dumps(response))
        if frame.get("method") == "close4001":
            await ws.close(4001, "auth revoked")
    except ConnectionClosed:
        pass


connections = 0


async def handler(ws):
    global connections
    connections += 1
    n = connections
    print(f"CONNECTION {n}", flush=True)
    tasks = set()
    try:
        async for message in ws:
            if not isinstance(message, str):
                continue
            try:
                frame = json.loads(message)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "hello":
                ack, streams = ack_for(frame)
                await ws.send(json.dumps(ack))
                for key, position in streams.items():
                    start = (position if isinstance(position, int) else 0) + 1
                    task = asyncio.create_task(count(ws, key, start))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            elif kind == "request" and frame.get("method") == "count":
                key = str(frame.get("id"))
                task = asyncio.create_task(count(ws, key, 1, frame.get("id")))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif kind == "request":
                # Each request on its own task, so a slow one does not hold up the rest.
                task = asyncio.create_task(answer(ws, frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    except ConnectionClosed:
        pass
    finally:
        for task in tasks:
            task.cancel()
        # The close code the client sent (1006 when no close frame arrived).
        rcvd = ws.close_code
        print(f"CLOSED {n} {rcvd}", flush=True)


def stop_on_stdin_eof(loop, stop):
    def wait():
        while sys.stdin.buffer.read(4096):
            pass
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

    threading.Thread(target=wait, daemon=True).start()


async def main(port, exit_with_stdin, tls):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    if exit_with_stdin:
        stop_on_stdin_eof(loop, stop)
    # Pings are the client's business here: the server only answers them.
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    async with serve(
        handler,
        "127.0.0.1",
        port,
        ping_interval=None,
        ssl=context,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"READY {bound}", flush=True)
        await stop


if __name__ == "__main__":
    args = sys.argv[1:]
    exit_with_stdin = "--exit-with-stdin" in args
    args = [a for a in args if a != "--exit-with-stdin"]
    tls = None
    if "--tls" in args:
        i = args.index("--tls")
        tls = tuple(args[i + 1 : i + 3])
        del args[i : i + 3]
    if len(args) != 1 or not args[0].isdigit() or (tls is not None and len(tls) != 2):
        sys.exit("usage: python_server.py PORT [--exit-with-stdin] [--tls CERT_PEM KEY_PEM]")
    asyncio.run(main(int(args[0]), exit_with_stdin, tls))
