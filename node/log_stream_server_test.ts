import assert from "node:assert/strict";
import type { LogLine, LogReadOptions } from "../actors/agent/log_capture.ts";
import type { LogChunk, LogsRequest } from "./agent_protocol.ts";
import { LogStreamServer } from "./log_stream_server.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function line(i: number): LogLine {
  return { time: 1_000 + i, stream: i % 2 ? "stderr" : "stdout", text: `line ${i}` };
}

/** A sink that records frames. */
function sink() {
  const frames: LogChunk[] = [];
  return { frames, closed: false, send: (c: LogChunk) => frames.push(c) };
}

function request(stream: number, follow = false): LogsRequest {
  return { t: "logs", stream, taskId: "task1", follow };
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

Deno.test("LogStreamServer: frames of at most chunkLines, no more than the window unacknowledged", async () => {
  const server = new LogStreamServer({ window: 2, chunkLines: 3, flushMs: 5 });
  const out = sink();
  const seen: { taskId: string; options: LogReadOptions }[] = [];
  const reader = async function* (taskId: string, options: LogReadOptions) {
    seen.push({ taskId, options });
    for (let i = 0; i < 10; i++) yield line(i);
  };
  const done = server.serve(out, { ...request(7), tail: 10, since: 5 }, reader);
  await until("two frames", () => out.frames.length === 2);
  await sleep(30);
  assert.equal(out.frames.length, 2, "a third frame waits for an acknowledgement");
  assert.equal(server.openStreams, 1);
  assert.deepEqual(out.frames.map((f) => f.lines.map((l) => l.text)), [
    ["line 0", "line 1", "line 2"],
    ["line 3", "line 4", "line 5"],
  ]);
  assert.equal(seen[0].taskId, "task1");
  assert.equal(seen[0].options.tail, 10);
  assert.equal(seen[0].options.since, 5);
  assert.equal(seen[0].options.follow, false);
  server.ack(7);
  await until("a third frame", () => out.frames.length === 3);
  server.ack(7);
  server.ack(7);
  await done;
  const last = out.frames.at(-1)!;
  assert.equal(last.end, true);
  assert.equal(last.error, undefined);
  assert.deepEqual(out.frames.flatMap((f) => f.lines.map((l) => l.text)), [
    ...Array.from({ length: 10 }, (_, i) => `line ${i}`),
  ]);
  assert.ok(out.frames.every((f) => f.stream === 7 && f.lines.length <= 3));
  assert.deepEqual(out.frames[0].lines[1], { time: 1_001, stream: "stderr", text: "line 1" });
  assert.equal(server.openStreams, 0);
});

Deno.test("LogStreamServer: lines gathered so far go out when the reader pauses", async () => {
  const server = new LogStreamServer({ flushMs: 10 });
  const out = sink();
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const done = server.serve(out, request(1, true), async function* () {
    yield line(0);
    yield line(1);
    await gate; // a follower waiting for more output
    yield line(2);
  });
  await until("the first lines, before the output ends", () => out.frames.length === 1);
  assert.deepEqual(out.frames[0].lines.map((l) => l.text), ["line 0", "line 1"]);
  assert.equal(out.frames[0].end, undefined);
  release();
  await done;
  assert.deepEqual(out.frames.slice(1).map((f) => [f.lines.map((l) => l.text), f.end]), [
    [["line 2"], true],
  ]);
});

Deno.test("LogStreamServer: a failing reader ends the stream with its error", async () => {
  const server = new LogStreamServer({ flushMs: 5 });
  const out = sink();
  await server.serve(out, request(2), async function* () {
    yield line(0);
    throw new Error("task task1 is not known to manager m1");
  });
  const last = out.frames.at(-1)!;
  assert.equal(last.end, true);
  assert.equal(last.error, "task task1 is not known to manager m1");
  assert.deepEqual(out.frames.flatMap((f) => f.lines.map((l) => l.text)), ["line 0"]);

  const none = sink();
  await server.serve(none, request(3), undefined, "node n1's agent is not running yet");
  assert.deepEqual(none.frames, [{
    t: "log",
    stream: 3,
    lines: [],
    end: true,
    error: "node n1's agent is not running yet",
  }]);
});

Deno.test("LogStreamServer: cancel and a closed connection stop the stream and its reader", async () => {
  for (const how of ["cancel", "cancelAll", "closed"] as const) {
    const server = new LogStreamServer({ window: 1, chunkLines: 1, flushMs: 5 });
    const out = sink();
    let returned = false;
    let signal: AbortSignal | undefined;
    const done = server.serve(out, request(4, true), async function* (_id, options) {
      signal = options.signal;
      try {
        for (let i = 0;; i++) yield line(i);
      } finally {
        returned = true;
      }
    });
    await until("the first frame", () => out.frames.length === 1);
    if (how === "cancel") server.cancel(4);
    else if (how === "cancelAll") server.cancelAll();
    else {
      out.closed = true;
      server.ack(4); // wakes the stream, which finds the connection closed
    }
    await done;
    assert.equal(out.frames.length, 1, `${how}: nothing more is sent, not even an end`);
    assert.equal(server.openStreams, 0, how);
    assert.equal(signal?.aborted, true, `${how}: the reader's signal aborts`);
    await until(`${how}: the reader is returned`, () => returned);
  }
});

Deno.test("LogStreamServer: a request reusing an open stream's id replaces it", async () => {
  const server = new LogStreamServer({ flushMs: 5 });
  const out = sink();
  let first: AbortSignal | undefined;
  // deno-lint-ignore require-yield
  const done = server.serve(out, request(5, true), async function* (_id, options) {
    first = options.signal;
    // No output until the stream is stopped (a reader ends when its signal aborts).
    await new Promise((resolve) => options.signal!.addEventListener("abort", resolve));
  });
  await until("the first reader", () => first !== undefined);
  await server.serve(out, request(5), async function* () {
    yield line(9);
  });
  await done;
  assert.equal(first?.aborted, true);
  assert.deepEqual(out.frames.map((f) => [f.lines.map((l) => l.text), f.end]), [
    [["line 9"], true],
  ]);
  assert.equal(server.openStreams, 0);
});
