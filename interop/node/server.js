#!/usr/bin/env node
// A HelloAck peer on the Node `ws` library (8.x), for tether's interop tests.
//
// Usage: node server.js PORT [--exit-with-stdin]
//
// Binds 127.0.0.1:PORT only (0: any free port), prints `READY <port>` once listening,
// `CONNECTION <n>` for the n-th accepted WebSocket and `CLOSED <n> <code>` when it ends,
// with the close code the client sent (1006: no close frame arrived), exits on SIGTERM or SIGINT, and with
// `--exit-with-stdin` also when its standard input closes (so a test that dies does not
// leave it behind). The HelloAck profile (docs/protocols.md), one JSON object per text frame:
//
// - {"type":"hello",...} -> {"type":"hello_ack"}
// - {"type":"request","id":n,"method":m,"params":p} -> {"type":"response","id":n,"result":p}
//   - method "slow": the response comes 200 ms later (other requests are not held up);
//   - method "close4001": after the response, the server closes the connection with
//     4001 "auth revoked";
//   - method "count" (a stream): events {"type":"event","stream":"<id>","seq":k,
//     "state":"delta","text":"<k> "} for k = 1..COUNT, one every TICK ms, then the final
//     at COUNT + 1; the response {"streaming":true} follows the first event.
// - The recovery dialect (docs/protocols.md): every hello_ack carries
//   "session": "interop"; a hello with "resume" whose session is "interop" is answered
//   "recovered": true and each of its streams carries on after its position (an event's
//   content depends only on its seq, so a restarted server resumes too); any other
//   session is answered "recovered": false.
// - anything else is ignored.
'use strict';

const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const exitWithStdin = args.includes('--exit-with-stdin');
const positional = args.filter((a) => a !== '--exit-with-stdin');
const port = Number(positional[0]);
if (positional.length !== 1 || !/^[0-9]+$/.test(positional[0]) || port > 65535) {
  console.error('usage: node server.js PORT [--exit-with-stdin]');
  process.exit(2);
}

function answer(ws, frame) {
  const response = { type: 'response', id: frame.id, result: frame.params ?? null };
  if (ws.readyState !== ws.OPEN) return;
  ws.send(JSON.stringify(response));
  if (frame.method === 'close4001') ws.close(4001, 'auth revoked');
}

const COUNT = 40;
const TICK = 25;
const SESSION = 'interop';

function countEvent(key, seq) {
  if (seq > COUNT) return { type: 'event', stream: key, seq, state: 'final' };
  return { type: 'event', stream: key, seq, state: 'delta', text: `${seq} ` };
}

// Sends stream `key` from `start` to its final, one event per TICK.
function count(ws, timers, key, start, requestId) {
  let seq = start;
  const step = () => {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(JSON.stringify(countEvent(key, seq)));
    if (requestId !== undefined && seq === start) {
      ws.send(JSON.stringify({ type: 'response', id: requestId, result: { streaming: true } }));
    }
    seq += 1;
    if (seq <= COUNT + 1) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        step();
      }, TICK);
      timers.add(timer);
    }
  };
  step();
}

function ackFor(hello) {
  const ack = { type: 'hello_ack', session: SESSION };
  const resume = hello.resume;
  let streams = {};
  if (resume !== null && typeof resume === 'object' && !Array.isArray(resume)) {
    const ok = resume.session === SESSION;
    ack.recovered = ok;
    if (ok && resume.streams !== null && typeof resume.streams === 'object') streams = resume.streams;
  }
  return { ack, streams };
}

const wss = new WebSocketServer({ host: '127.0.0.1', port });

let connections = 0;

wss.on('connection', (ws) => {
  connections += 1;
  const n = connections;
  process.stdout.write(`CONNECTION ${n}\n`);
  const timers = new Set();
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let frame;
    try {
      frame = JSON.parse(data.toString('utf8'));
    } catch {
      return;
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) return;
    if (frame.type === 'hello') {
      const { ack, streams } = ackFor(frame);
      ws.send(JSON.stringify(ack));
      for (const [key, position] of Object.entries(streams)) {
        const start = (Number.isInteger(position) ? position : 0) + 1;
        count(ws, timers, key, start, undefined);
      }
    } else if (frame.type === 'request' && frame.method === 'count') {
      count(ws, timers, String(frame.id), 1, frame.id);
    } else if (frame.type === 'request') {
      if (frame.method === 'slow') {
        const timer = setTimeout(() => {
          timers.delete(timer);
          answer(ws, frame);
        }, 200);
        timers.add(timer);
      } else {
        answer(ws, frame);
      }
    }
  });
  ws.on('close', (code) => {
    process.stdout.write(`CLOSED ${n} ${code}\n`);
    for (const timer of timers) clearTimeout(timer);
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  process.stdout.write(`READY ${wss.address().port}\n`);
});

wss.on('error', (err) => {
  console.error(`server error: ${err.message}`);
  process.exit(1);
});

function stop() {
  for (const client of wss.clients) client.terminate();
  wss.close(() => process.exit(0));
  // Do not linger if a socket refuses to go.
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (exitWithStdin) {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}
