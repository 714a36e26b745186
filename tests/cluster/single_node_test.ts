/**
 * A single-node swarm orchestrating real processes end to end: the fold, the orchestrator,
 * allocator and scheduler, the agent and the process executor, on a real SQLite log.
 */
import assert from "node:assert/strict";
import { startNode } from "../../node/daemon.ts";
import { ServiceSpec, TaskState } from "../../events/schema.ts";
import type { Manager } from "../../actors/manager.ts";

async function until<T>(what: string, fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function running(m: Manager, name: string) {
  const svc = m.state.serviceByName(name);
  if (!svc) return [];
  return [...m.state.tasksOf(svc.id)].filter((t) =>
    t.status.state === TaskState.running && t.desiredState === TaskState.running
  );
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

function pidOf(m: Manager, taskId: string): number {
  const id = m.state.tasks.get(taskId)?.status.runtimeId ?? "";
  const pid = Number(/(\d+)/.exec(id)?.[1]);
  assert.ok(pid > 1, `task ${taskId} reports no pid (runtimeId "${id}")`);
  return pid;
}

Deno.test("a single node runs, scales, restarts and stops process tasks", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-node-" });
  const node = await startNode({ dataDir, listenAddr: "127.0.0.1:0", synchronous: "normal" });
  const m = node.manager;
  try {
    await m.execute({
      kind: "CreateService",
      spec: ServiceSpec.parse({
        name: "sleepy",
        task: {
          runtime: {
            kind: "process",
            command: "/bin/sleep",
            args: ["600"],
            stopGracePeriod: 2_000,
          },
          restart: { condition: "any", delay: 0 },
        },
        mode: { kind: "replicated", replicas: 2 },
      }),
    }, { by: "user:service.create" });
    const two = await until(
      "2 running tasks",
      () => running(m, "sleepy").length === 2 && running(m, "sleepy"),
    );
    const pids = two.map((t) => pidOf(m, t.id));
    assert.ok(pids.every(alive), "the processes really run");
    assert.deepEqual(two.map((t) => t.slot).sort(), [1, 2]);

    // Kill one process behind Shoal's back: the task fails and the orchestrator restarts it.
    Deno.kill(pids[0], "SIGKILL");
    const victim = two[0];
    await until(
      "the killed task to be failed",
      () => m.state.tasks.get(victim.id)?.status.state === TaskState.failed,
    );
    const failed = m.state.tasks.get(victim.id)!;
    assert.match(failed.status.err, /task: non-zero exit \(137\)/);
    const replaced = await until(
      "a replacement in the same slot",
      () => running(m, "sleepy").find((t) => t.slot === victim.slot && t.id !== victim.id),
    );
    assert.equal(replaced.attempt, 1);

    // Scale down: one process is stopped, its task shut down and reaped.
    await m.execute({ kind: "ScaleService", service: "sleepy", replicas: 1 }, { by: "user:scale" });
    await until("one running task", () => running(m, "sleepy").length === 1);
    const survivor = running(m, "sleepy")[0];
    const gone = [...two, replaced].filter((t) => t.id !== survivor.id);
    await until("stopped processes to exit", () =>
      gone.every((t) => {
        const pid = Number(/(\d+)/.exec(m.state.tasks.get(t.id)?.status.runtimeId ?? "")?.[1]);
        return !pid || !alive(pid);
      }));

    // Every status change came from this node's agent, batched by the dispatcher path.
    const reports = m.log.read(1).flatMap((e) =>
      e.batch.events.filter((ev) => ev.type === "TaskStatusReported").map((ev) => ev.meta.by)
    );
    assert.ok(reports.length > 0);
    assert.ok(reports.every((by) => by === `agent:${node.nodeId}` || by === "scheduler"));

    const pid = pidOf(m, survivor.id);
    await node.close();
    await until("tasks to stop with the node", () => !alive(pid));
  } finally {
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
