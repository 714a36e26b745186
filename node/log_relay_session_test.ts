/**
 * Log streams over a real agent session (dispatcher and RemoteSession in one process, TLS on
 * loopback): every line arrives in order, a slow reader holds the agent back to the window, and a
 * reader that stops early ends the agent's read.
 */
import assert from "node:assert/strict";
import { join, runWorker, testSwarm, until } from "./_test_swarm.ts";
import { LOG_CHUNK_LINES, LOG_WINDOW_CHUNKS } from "./agent_protocol.ts";
import type { LogLine, LogReadOptions } from "../actors/agent/log_capture.ts";

Deno.test("log relay over a session: order, flow control and cancellation", async () => {
  const swarm = await testSwarm();
  const worker = runWorker(swarm, await join(swarm, "w"), "w");
  try {
    await until("the session is open", () => worker.session.connected);
    const total = 20 * LOG_CHUNK_LINES;
    let produced = 0;
    const reads: { taskId: string; options: LogReadOptions }[] = [];
    let finished = 0;
    worker.session.serveLogs((taskId, options) => {
      reads.push({ taskId, options });
      return (async function* (): AsyncGenerator<LogLine> {
        try {
          for (let i = 0; i < total && !options.signal?.aborted; i++) {
            produced++;
            yield { time: i, stream: i % 2 ? "stderr" : "stdout", text: `line ${i}` };
          }
        } finally {
          finished++;
        }
      })();
    });
    const nodeId = worker.joined.nodeId;

    // A slow reader: after the first line the agent may run ahead by the window only.
    const slow = swarm.dispatcher.logs.read(nodeId, { taskId: "t1", tail: 7, since: 3 });
    const first = await slow.next();
    assert.equal(first.value?.text, "line 0");
    assert.deepEqual(reads[0], {
      taskId: "t1",
      options: { tail: 7, since: 3, follow: false, signal: reads[0].options.signal },
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(
      produced <= (LOG_WINDOW_CHUNKS + 1) * LOG_CHUNK_LINES + 1,
      `the agent read ${produced} lines ahead of a reader that took one`,
    );
    let expected = 1;
    for await (const line of slow) {
      assert.equal(line.text, `line ${expected}`);
      assert.equal(line.stream, expected % 2 ? "stderr" : "stdout");
      expected++;
    }
    assert.equal(expected, total, "every line, in order");
    await until("the agent's stream ends", () => worker.session.openLogStreams === 0);

    // A reader that stops early cancels the agent's read.
    produced = 0;
    const early = swarm.dispatcher.logs.read(nodeId, { taskId: "t2", follow: true });
    assert.equal((await early.next()).value?.text, "line 0");
    await early.return(undefined);
    await until("the agent's read is cancelled", () => worker.session.openLogStreams === 0);
    assert.ok(produced < total, "the agent stopped reading");
    assert.equal(swarm.dispatcher.logs.openStreams, 0);
    await until("both reads finished", () => finished === 2);
  } finally {
    await worker.stop();
    await swarm.close();
  }
});

Deno.test("log relay over a session: the agent's failure reaches the reader", async () => {
  const swarm = await testSwarm();
  const worker = runWorker(swarm, await join(swarm, "w"), "w");
  try {
    await until("the session is open", () => worker.session.connected);
    const nodeId = worker.joined.nodeId;
    // Before the worker serves logs, asking is an error naming why.
    await assert.rejects(
      swarm.dispatcher.logs.read(nodeId, { taskId: "t1" }).next(),
      /failed: this node's agent is not running yet/,
    );
    worker.session.serveLogs(() => {
      return (async function* (): AsyncGenerator<LogLine> {
        yield { time: 1, stream: "stdout", text: "before" };
        throw new Error("the log file is unreadable");
      })();
    });
    const lines: string[] = [];
    await assert.rejects(async () => {
      for await (const l of swarm.dispatcher.logs.read(nodeId, { taskId: "t1" })) {
        lines.push(l.text);
      }
    }, /task t1 on node .* failed: the log file is unreadable/);
    assert.deepEqual(lines, ["before"]);
  } finally {
    await worker.stop();
    await swarm.close();
  }
});
