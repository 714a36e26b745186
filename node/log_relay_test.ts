import assert from "node:assert/strict";
import { LogRelay, NodeLogsUnavailable } from "./log_relay.ts";
import { LOG_WINDOW_CHUNKS, type ManagerMessage } from "./agent_protocol.ts";

function relayWith(connected = true) {
  const sent: { nodeId: string; message: ManagerMessage }[] = [];
  const relay = new LogRelay((nodeId, message) => {
    if (!connected) return undefined;
    sent.push({ nodeId, message });
    return "session-1";
  });
  return { relay, sent };
}

const line = (text: string) => ({ time: 1, stream: "stdout" as const, text });

Deno.test("log relay: asks the node, passes lines on in order, acknowledges each chunk", async () => {
  const { relay, sent } = relayWith();
  const reader = relay.read("node-a", { taskId: "t1", tail: 2, follow: false });
  const first = reader.next();
  await Promise.resolve();
  assert.deepEqual(sent[0], {
    nodeId: "node-a",
    message: { t: "logs", stream: 1, taskId: "t1", tail: 2, since: undefined, follow: false },
  });
  relay.receive("session-1", { t: "log", stream: 1, lines: [line("a"), line("b")] });
  assert.equal((await first).value?.text, "a");
  assert.equal((await reader.next()).value?.text, "b");
  assert.equal(sent.length, 1, "no acknowledgement before the chunk is passed on");
  const third = reader.next();
  await Promise.resolve();
  assert.deepEqual(sent.slice(1).map((s) => s.message), [{ t: "logs-ack", stream: 1 }]);
  relay.receive("session-1", { t: "log", stream: 1, lines: [line("c")], end: true });
  assert.equal((await third).value?.text, "c");
  assert.equal((await reader.next()).done, true);
  assert.equal(sent.length, 2, "no acknowledgement of the last chunk");
  assert.equal(relay.openStreams, 0);
});

Deno.test("log relay: frames of another session or stream are dropped", async () => {
  const { relay } = relayWith();
  const reader = relay.read("node-a", { taskId: "t1" });
  const next = reader.next();
  await Promise.resolve();
  relay.receive("session-2", { t: "log", stream: 1, lines: [line("forged")] });
  relay.receive("session-1", { t: "log", stream: 9, lines: [line("other")] });
  relay.receive("session-1", { t: "log", stream: 1, lines: [line("real")], end: true });
  assert.equal((await next).value?.text, "real");
  assert.equal((await reader.next()).done, true);
});

Deno.test("log relay: an agent's error, a lost session and an absent node fail the read", async () => {
  const { relay } = relayWith();
  const failed = relay.read("node-a", { taskId: "t1" });
  const p = failed.next();
  await Promise.resolve();
  relay.receive("session-1", { t: "log", stream: 1, lines: [], end: true, error: "disk gone" });
  await assert.rejects(
    p,
    (e: Error) =>
      e instanceof NodeLogsUnavailable && /t1 on node node-a failed: disk gone/.test(e.message),
  );

  const lost = relay.read("node-a", { taskId: "t2", follow: true });
  const q = lost.next();
  await Promise.resolve();
  relay.sessionClosed("session-1", "heartbeat timeout");
  await assert.rejects(q, /the node's session ended \(heartbeat timeout\)/);

  const { relay: offline } = relayWith(false);
  await assert.rejects(
    offline.read("node-b", { taskId: "t3" }).next(),
    /node node-b is not connected/,
  );
});

Deno.test("log relay: a reader that stops early cancels the stream on the node", async () => {
  const { relay, sent } = relayWith();
  const reader = relay.read("node-a", { taskId: "t1", follow: true });
  const next = reader.next();
  await Promise.resolve();
  relay.receive("session-1", { t: "log", stream: 1, lines: [line("x"), line("y")] });
  assert.equal((await next).value?.text, "x");
  await reader.return(undefined);
  assert.deepEqual(sent.at(-1)!.message, { t: "logs-cancel", stream: 1 });
  assert.equal(relay.openStreams, 0);
  assert.ok(LOG_WINDOW_CHUNKS >= 1);
});
