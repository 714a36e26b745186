/**
 * `shoal debug` against a real node started in-process, and `shoal log` on its data dir once
 * stopped: the real `./shoal` command, its output and exit codes.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { startNode } from "../../node/daemon.ts";
import { ServiceSpec, TaskState } from "../../events/schema.ts";
import type { Manager } from "../../actors/manager.ts";

const root = new URL("../../", import.meta.url).pathname;

async function shoal(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(`${root}shoal`, { args, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function running(m: Manager, name: string): number {
  const svc = m.state.serviceByName(name);
  if (!svc) return 0;
  return [...m.state.tasksOf(svc.id)].filter((t) =>
    t.status.state === TaskState.running && t.desiredState === TaskState.running
  ).length;
}

function taskRows(out: string): number {
  const tasks = out.slice(out.indexOf("TASKS"));
  return tasks.split("\n").filter((l) => /^\S+\s+web\.\d/.test(l)).length;
}

Deno.test({
  name: "shoal debug and shoal log on a real node",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "shoal-debug-" });
    const node = await startNode({
      dataDir,
      listenAddr: "127.0.0.1:0",
      synchronous: "off",
      docker: false,
    });
    const m = node.manager;
    let closed = false;
    try {
      const spec = (replicas: number) =>
        ServiceSpec.parse({
          name: "web",
          task: {
            runtime: {
              kind: "process",
              command: "/bin/sleep",
              args: ["600"],
              stopGracePeriod: 1_000,
            },
          },
          mode: { kind: "replicated", replicas },
        });
      await m.execute({ kind: "CreateService", spec: spec(1) }, { by: "user:service.create" });
      await until("1 running task", () => running(m, "web") === 1);
      const before = m.state.index;
      await m.execute(
        { kind: "ScaleService", service: "web", replicas: 3 },
        { by: "user:service.scale" },
      );
      await until("3 running tasks", () => running(m, "web") === 3);
      const host = ["--host", node.apiUrl];

      const then = await shoal([...host, "debug", "state", "--at", String(before)]);
      assert.equal(then.code, 0, then.err);
      const now = await shoal([...host, "debug", "state"]);
      assert.equal(now.code, 0, now.err);
      assert.match(then.out, new RegExp(`State at index ${before} `));
      assert.match(now.out, /NODES[\s\S]*SERVICES[\s\S]*TASKS/);
      assert.equal(taskRows(then.out), 1, then.out);
      assert.equal(taskRows(now.out), 3, now.out);

      const json = await shoal([
        ...host,
        "debug",
        "state",
        "--at",
        String(before),
        "--format",
        "json",
      ]);
      assert.equal(json.code, 0, json.err);
      assert.equal(JSON.parse(json.out).tasks.length, 1);

      const why = await shoal([...host, "debug", "why", "task", "web.1"]);
      assert.equal(why.code, 0, why.err);
      assert.match(why.out, /scheduler/);

      const diff = await shoal([...host, "debug", "diff", String(before)]);
      assert.equal(diff.code, 0, diff.err);
      assert.match(diff.out, /web/);

      const replay = await shoal([...host, "debug", "replay", "--from", "1", "--to", "3"]);
      assert.equal(replay.code, 0, replay.err);
      assert.ok(replay.out.trim().length > 0);

      const bisect = await shoal([...host, "debug", "bisect", "--until", "running(web) >= 3"]);
      assert.equal(bisect.code, 0, bisect.err);
      const found = Number(/first holds at index (\d+)/.exec(bisect.out)?.[1]);
      assert.ok(found > before && found <= m.state.index, bisect.out);

      const bad = await shoal([...host, "debug", "bisect", "--until", "running(web < 3"]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.err, /Error response from daemon: .*column \d+/);

      const missing = await shoal([...host, "debug", "why", "service", "nope"]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.err, /Error response from daemon/);

      const last = m.state.index;
      await node.close();
      closed = true;

      const dump = await shoal(["log", "dump-wal", "--data-dir", dataDir]);
      assert.equal(dump.code, 0, dump.err);
      // A Raft member's log: the bootstrap conf change and the leader's empty entry first.
      assert.match(dump.out, /^raft=1 term=1 conf change addNode node=1\n/);
      assert.match(dump.out, /^index=1 term=\d+ time=\S+ by=user:swarm\.init raft=\d+$/m);
      assert.match(dump.out, /ServiceCreated id=\S+ by=user:service\.create/);
      const lines = await shoal([
        "log",
        "dump-wal",
        "--data-dir",
        dataDir,
        "--start",
        "2",
        "--end",
        "4",
        "--format",
        "json",
      ]);
      assert.equal(lines.code, 0, lines.err);
      assert.deepEqual(
        lines.out.trim().split("\n").map((l) => JSON.parse(l).index),
        [2, 3, 4],
      );

      const ok = await shoal(["log", "verify", "--data-dir", dataDir]);
      assert.equal(ok.code, 0, ok.err);
      const n = Number(/^log ok: (\d+) entries/.exec(ok.out)?.[1]);
      assert.ok(n >= last, ok.out);

      // Log index 3 is the third Raft entry that carries data.
      const db = new DatabaseSync(`${dataDir}/raft.db`);
      const row = db.prepare(
        "SELECT idx, data FROM raft_entries WHERE type = 0 AND length(data) > 0 ORDER BY idx " +
          "LIMIT 1 OFFSET 2",
      ).get() as { idx: number; data: Uint8Array };
      const flipped = row.data.slice();
      flipped[5] ^= 0xff;
      db.prepare("UPDATE raft_entries SET data = ? WHERE idx = ?").run(flipped, row.idx);
      db.close();

      const corrupt = await shoal(["log", "verify", "--data-dir", dataDir]);
      assert.equal(corrupt.code, 1);
      assert.match(corrupt.err, /index 3/);
      assert.match(corrupt.err, /checksum/i);

      const none = await shoal(["log", "verify", "--data-dir", `${dataDir}/nowhere`]);
      assert.notEqual(none.code, 0);
      assert.match(none.err, /no log at/);
    } finally {
      if (!closed) await node.close();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
