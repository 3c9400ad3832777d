// A fake OpenAI-compatible model server for the OpenClaw interop suite
// (tests/tests/openclaw.rs): the gateway's config points a provider at it, so that
// `chat.send` runs stream real deltas without a real model.
//
//   node fake-model.mjs [--port N] [--exit-with-stdin]
//
// Binds 127.0.0.1 only (port 0 or no --port: any free port), prints `READY <port>` once
// listening, exits on SIGTERM or SIGINT (and, with --exit-with-stdin, when stdin closes,
// so a test killed outright leaves no server behind). Node 20+, no dependencies.
//
// What it answers:
//
// - GET  /v1/models: one model, `fake`.
// - POST /v1/chat/completions: the reply is dictated by the current turn's user messages
//   (those after the last assistant message: the gateway appends context messages of
//   its own). A line `TETHER-STREAM {"reply": "...", "chunk": 3, "delayMs": 20}` (the
//   JSON on the same line as the marker; anything may surround it) makes the model
//   answer exactly `reply`, streamed `chunk` code points per delta (default 4), one
//   delta every `delayMs` milliseconds (default 10); `{"status": 400, "reply": "why"}`
//   makes it refuse with that HTTP status. Any other prompt is answered `ok`. With
//   `"stream": true` the answer is server-sent events in the chat.completion.chunk
//   format, ending with a `finish_reason: "stop"` chunk and `data: [DONE]`; otherwise
//   one chat.completion.
// - GET  /tether/log: every completion so far as JSON,
//   `[{"n", "stream", "reply", "chunks", "sent", "state"}]` where `state` is `streaming`,
//   `done`, `aborted` (the caller went away before the last chunk) or `refused <status>`.
//
// With FAKE_MODEL_DUMP=<file>, every request body is appended to that file (one JSON
// object a line), to see what the gateway sends.
import fs from "node:fs";
import http from "node:http";

const MARKER = "TETHER-STREAM";
const MODEL = "fake";

const args = process.argv.slice(2);
const portArg = args.indexOf("--port");
const port = portArg >= 0 ? Number(args[portArg + 1]) : 0;
const log = [];

/** The text of a chat message's `content` (a string or an array of parts). */
function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((p) => (typeof p === "string" ? p : (p && p.text) || "")).join("");
  }
  return "";
}

/** The directive of the last user message, or the default `ok` answer. */
function directive(body) {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  // The current turn: the user messages after the last assistant message (the gateway
  // adds context messages of its own after the user's).
  const lastAssistant = messages.findLastIndex((m) => m && m.role === "assistant");
  const text = messages
    .slice(lastAssistant + 1)
    .filter((m) => m && m.role === "user")
    .map((m) => textOf(m.content))
    .join("\n");
  const at = text.lastIndexOf(MARKER);
  if (at >= 0) {
    const line = text.slice(at + MARKER.length).split("\n")[0].trim();
    try {
      const d = JSON.parse(line);
      if (Number.isInteger(d.status) && d.status >= 400) {
        return { status: d.status, reply: typeof d.reply === "string" ? d.reply : "refused", chunk: 4, delayMs: 0 };
      }
      if (typeof d.reply === "string") {
        return {
          reply: d.reply,
          chunk: Math.max(1, Number(d.chunk) || 4),
          delayMs: Math.max(0, Number(d.delayMs) || 10),
        };
      }
    } catch {
      // Not a directive after all: the default answer.
    }
  }
  return { reply: "ok", chunk: 4, delayMs: 0 };
}

/** `reply` cut into chunks of `n` code points (never inside a surrogate pair). */
function chunks(reply, n) {
  const points = Array.from(reply);
  const out = [];
  for (let i = 0; i < points.length; i += n) out.push(points.slice(i, i + n).join(""));
  return out;
}

function json(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function completion(req, res, body) {
  if (process.env.FAKE_MODEL_DUMP) fs.appendFileSync(process.env.FAKE_MODEL_DUMP, `${JSON.stringify(body)}\n`);
  const { status, reply, chunk, delayMs } = directive(body);
  const entry = { n: log.length + 1, stream: body.stream === true, reply, chunks: 0, sent: "", state: "streaming" };
  log.push(entry);
  if (status) {
    entry.state = `refused ${status}`;
    json(res, status, { error: { message: reply, type: "invalid_request_error", code: "tether_refused" } });
    return;
  }
  const id = `chatcmpl-tether-${entry.n}`;
  const created = Math.floor(Date.now() / 1000);
  const usage = { prompt_tokens: 1, completion_tokens: Array.from(reply).length, total_tokens: 1 + Array.from(reply).length };
  if (!entry.stream) {
    entry.chunks = 1;
    entry.sent = reply;
    entry.state = "done";
    json(res, 200, {
      id,
      object: "chat.completion",
      created,
      model: MODEL,
      choices: [{ index: 0, message: { role: "assistant", content: reply }, finish_reason: "stop" }],
      usage,
    });
    return;
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  const event = (choice, extra = {}) =>
    res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: MODEL, choices: [choice], ...extra })}\n\n`);
  const parts = chunks(reply, chunk);
  let i = 0;
  let timer = null;
  const gone = () => {
    if (entry.state === "streaming") entry.state = "aborted";
    if (timer) clearTimeout(timer);
  };
  res.on("close", gone);
  event({ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null });
  const next = () => {
    timer = null;
    if (entry.state !== "streaming") return;
    if (i < parts.length) {
      event({ index: 0, delta: { content: parts[i] }, finish_reason: null });
      entry.sent += parts[i];
      entry.chunks += 1;
      i += 1;
      timer = setTimeout(next, delayMs);
      return;
    }
    event({ index: 0, delta: {}, finish_reason: "stop" }, { usage });
    res.write("data: [DONE]\n\n");
    entry.state = "done";
    res.end();
  };
  timer = setTimeout(next, delayMs);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (req.method === "GET" && url.pathname.endsWith("/models")) {
    json(res, 200, { object: "list", data: [{ id: MODEL, object: "model", created: 0, owned_by: "tether" }] });
    return;
  }
  if (req.method === "GET" && url.pathname === "/tether/log") {
    json(res, 200, log);
    return;
  }
  if (req.method === "POST" && url.pathname.endsWith("/chat/completions")) {
    const parts = [];
    req.on("data", (d) => parts.push(d));
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(parts).toString("utf8"));
      } catch {
        json(res, 400, { error: { message: "invalid JSON", type: "invalid_request_error" } });
        return;
      }
      completion(req, res, body);
    });
    return;
  }
  json(res, 404, { error: { message: `no route ${req.method} ${url.pathname}`, type: "not_found" } });
});

const stop = () => {
  server.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (args.includes("--exit-with-stdin")) {
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.resume();
}

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
