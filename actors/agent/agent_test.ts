import assert from "node:assert/strict";
import { ServiceSpec, TaskState } from "../../events/schema.ts";
import { MemoryLog } from "../../events/log.ts";
import { Manager } from "../manager.ts";
import { orchestrator } from "../projections/orchestrator/decide.ts";
import { allocator } from "../projections/allocator/decide.ts";
import { createScheduler } from "../projections/scheduler/decide.ts";
import { Agent, type AgentSession, LocalSession, type StatusReport } from "./agent.ts";
import { FakeExecutor } from "./executors/fake.ts";
import { ev } from "../../tests/_harness/events.ts";

async function until<T>(what: string, fn: () => T | undefined | false, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function cluster() {
  const log = new MemoryLog();
  const manager = new Manager({
    log,
    projections: [orchestrator, allocator, createScheduler()],
  });
  await manager.start();
  await manager.setLeader(true);
  await manager.propose([
    ev.clusterCreated(),
    ev.nodeRegistered("n1"),
    {
      type: "NodeStatusChanged",
      v: 1,
      data: { id: "n1", status: { state: "ready", message: "", addr: "" } },
      meta: { by: "dispatcher", reason: "" },
    },
  ], "test");
  const executors: FakeExecutor[] = [];
  const reaped: string[] = [];
  const makeAgent = (session: AgentSession = new LocalSession(manager, "n1")) =>
    new Agent({
      nodeId: "n1",
      session,
      executors: (_task, onStatus) => {
        const e = new FakeExecutor({ onStatus, behaviour: { runsUntilStopped: true } });
        executors.push(e);
        return e;
      },
      reapLeftover: (id) => {
        reaped.push(id);
        return Promise.resolve();
      },
    });
  return { log, manager, executors, reaped, makeAgent };
}

/** A session that can be cut, as a crashed agent's: nothing reaches it or leaves it after. */
class CuttableSession implements AgentSession {
  #inner: AgentSession;
  cut = false;
  constructor(inner: AgentSession) {
    this.#inner = inner;
  }
  assignments() {
    return this.#inner.assignments();
  }
  onChange(listener: () => void) {
    return this.#inner.onChange(() => {
      if (!this.cut) listener();
    });
  }
  report(reports: StatusReport[]) {
    return this.cut ? Promise.resolve() : this.#inner.report(reports);
  }
}

function service(name: string, replicas: number, restartDelay = 0) {
  return ServiceSpec.parse({
    name,
    task: {
      runtime: { kind: "process", command: "/bin/app" },
      restart: { condition: "any", delay: restartDelay },
    },
    mode: { kind: "replicated", replicas },
  });
}

Deno.test("Agent runs assigned tasks and batches their reports", async () => {
  const { log, manager, makeAgent } = await cluster();
  const agent = makeAgent();
  agent.start();
  const before = log.lastIndex();
  await manager.execute({ kind: "CreateService", spec: service("web", 20) }, { by: "user" });
  const svc = manager.state.serviceByName("web")!;
  await until(
    "20 running tasks",
    () =>
      [...manager.state.tasksOf(svc.id)].filter((t) => t.status.state === TaskState.running)
        .length ===
        20,
  );
  const agentEntries = log.read(before + 1).filter((e) =>
    e.batch.events.every((ev) => ev.meta.by === "agent:n1")
  );
  const reports = agentEntries.reduce((n, e) => n + e.batch.events.length, 0);
  assert.equal(reports, 20 * 5, "accepted, preparing, ready, starting, running for each");
  assert.ok(agentEntries.length <= 10, `${agentEntries.length} entries for 100 reports`);
  await agent.stop();
  await manager.stop();
});

Deno.test("Agent keeps a delayed restart at ready, and stops what should stop", async () => {
  const { manager, executors, makeAgent } = await cluster();
  const agent = makeAgent();
  agent.start();
  await manager.execute({ kind: "CreateService", spec: service("api", 1, 60_000) }, { by: "user" });
  const svc = manager.state.serviceByName("api")!;
  const first = await until(
    "a running task",
    () => [...manager.state.tasksOf(svc.id)].find((t) => t.status.state === TaskState.running),
  );
  executors.find((e) => e.task?.id === first.id)!.exit(2);
  const next = await until(
    "the restart waiting at ready",
    () =>
      [...manager.state.tasksOf(svc.id)].find((t) =>
        t.id !== first.id && t.status.state === TaskState.ready
      ),
  );
  assert.equal(next.desiredState, TaskState.ready);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(manager.state.tasks.get(next.id)!.status.state, TaskState.ready, "not started");
  await manager.execute({ kind: "ScaleService", service: "api", replicas: 0 }, { by: "user" });
  await until(
    "the waiting task to be shut down",
    () =>
      manager.state.tasks.get(next.id) === undefined ||
      manager.state.tasks.get(next.id)!.status.state === TaskState.shutdown,
  );
  await agent.stop();
  await manager.stop();
});

Deno.test("Agent after a restart fails the tasks it lost and kills their leftovers", async () => {
  const { manager, reaped, makeAgent } = await cluster();
  const session = new CuttableSession(new LocalSession(manager, "n1"));
  const first = makeAgent(session);
  first.start();
  await manager.execute({ kind: "CreateService", spec: service("db", 2) }, { by: "user" });
  const svc = manager.state.serviceByName("db")!;
  const running = await until("2 running", () => {
    const r = [...manager.state.tasksOf(svc.id)].filter((t) =>
      t.status.state === TaskState.running
    );
    return r.length === 2 && r;
  });
  // The agent dies without a word: it hears nothing more and says nothing more.
  session.cut = true;
  const second = makeAgent();
  second.start();
  await until(
    "lost tasks reported failed",
    () => running.every((t) => manager.state.tasks.get(t.id)!.status.state === TaskState.failed),
  );
  assert.match(
    manager.state.tasks.get(running[0].id)!.status.err,
    /the node restarted and its process was lost/,
  );
  assert.deepEqual(reaped.sort(), running.map((t) => t.id).sort());
  await until(
    "replacements running",
    () =>
      [...manager.state.tasksOf(svc.id)].filter((t) =>
        t.status.state === TaskState.running && t.desiredState === TaskState.running
      ).length === 2,
  );
  await second.stop();
  await first.stop();
  await manager.stop();
});

Deno.test("Agent after a restart adopts what it can take over, and cleans up the rest", async () => {
  const { manager, reaped, makeAgent } = await cluster();
  const session = new CuttableSession(new LocalSession(manager, "n1"));
  const first = makeAgent(session);
  first.start();
  await manager.execute({ kind: "CreateService", spec: service("db", 2) }, { by: "user" });
  const svc = manager.state.serviceByName("db")!;
  const running = await until("2 running", () => {
    const r = [...manager.state.tasksOf(svc.id)].filter((t) =>
      t.status.state === TaskState.running
    );
    return r.length === 2 && r;
  });
  session.cut = true;
  // The new agent can take over one task (its program is still there), not the other.
  const [kept, lost] = running;
  const cleanedUp: string[][] = [];
  let launches = 0;
  const second = new Agent({
    nodeId: "n1",
    session: new LocalSession(manager, "n1"),
    executors: (_task, onStatus) => {
      launches++;
      return new FakeExecutor({ onStatus, behaviour: { runsUntilStopped: true } });
    },
    reapLeftover: (id) => {
      reaped.push(id);
      return Promise.resolve();
    },
    // Taking over: an executor following the program that still runs (here, a fake one).
    adopt: async (task, onStatus) => {
      if (task.id !== kept.id) return undefined;
      const e = new FakeExecutor({ onStatus, behaviour: { runsUntilStopped: true } });
      await e.prepare(task);
      await e.start();
      return e;
    },
    afterFirstPass: (adopted) => {
      cleanedUp.push([...adopted]);
      return Promise.resolve();
    },
  });
  second.start();
  await until(
    "the task not adopted reported failed",
    () => manager.state.tasks.get(lost.id)!.status.state === TaskState.failed,
  );
  await until(
    "its replacement running",
    () =>
      [...manager.state.tasksOf(svc.id)].filter((t) =>
        t.status.state === TaskState.running && t.desiredState === TaskState.running
      ).length === 2,
  );
  assert.equal(manager.state.tasks.get(kept.id)!.status.state, TaskState.running, "adopted");
  assert.ok(second.runningTasks.includes(kept.id));
  assert.deepEqual(cleanedUp, [[kept.id]], "cleanup once, told what was adopted");
  assert.deepEqual(reaped, [lost.id], "only the lost task's leftover is killed");
  assert.equal(launches, 1, "only the replacement is launched");
  // The adopted task is stopped like any other when asked.
  await manager.execute({ kind: "ScaleService", service: "db", replicas: 0 }, { by: "user" });
  await until("the adopted task stopped", () =>
    manager.state.tasks.get(kept.id) === undefined ||
    manager.state.tasks.get(kept.id)!.status.state === TaskState.shutdown);
  await second.stop();
  await first.stop();
  await manager.stop();
});

Deno.test("Agent runs a job's task (desired complete) to completion", async () => {
  const { manager, executors, makeAgent } = await cluster();
  const agent = makeAgent();
  agent.start();
  await manager.execute({
    kind: "CreateService",
    spec: ServiceSpec.parse({
      name: "job",
      task: { runtime: { kind: "process", command: "/bin/app" } },
      mode: { kind: "replicated-job", maxConcurrent: 1, totalCompletions: 2 },
    }),
  }, { by: "user" });
  const svc = manager.state.serviceByName("job")!;
  for (let n = 1; n <= 2; n++) {
    const t = await until(
      `job task ${n} running`,
      () =>
        [...manager.state.tasksOf(svc.id)].find((t) =>
          t.status.state === TaskState.running && t.desiredState === TaskState.complete
        ),
    );
    executors.find((e) => e.task?.id === t.id)!.exit(0);
    await until(
      `job task ${n} complete`,
      () => manager.state.tasks.get(t.id)!.status.state === TaskState.complete,
    );
  }
  await new Promise((r) => setTimeout(r, 50));
  const tasks = [...manager.state.tasksOf(svc.id)];
  assert.equal(tasks.length, 2);
  assert.ok(tasks.every((t) => t.status.state === TaskState.complete));
  await agent.stop();
  await manager.stop();
});
