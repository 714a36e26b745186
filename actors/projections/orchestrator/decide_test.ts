import assert from "node:assert/strict";
import { ClusterSpec, TaskState } from "../../../events/schema.ts";
import { ControlLoop } from "../../../tests/_harness/control_loop.ts";
import { ev, meta, serviceSpec } from "../../../tests/_harness/events.ts";
import { orchestrator } from "./decide.ts";

function cluster(nodes: string[], retention = 5): ControlLoop {
  const c = new ControlLoop();
  c.apply([
    {
      ...ev.clusterCreated(),
      data: {
        ...(ev.clusterCreated().data as { id: string }),
        spec: ClusterSpec.parse({ orchestration: { taskHistoryRetentionLimit: retention } }),
        rootCA: { certPem: "c", keyPem: "k", digest: "d" },
        joinTokens: { worker: "w", manager: "m" },
      },
    } as never,
    ...nodes.flatMap((id) => [ev.nodeRegistered(id), ready(id)]),
  ]);
  return c;
}

function ready(id: string, state: "ready" | "down" = "ready") {
  return {
    type: "NodeStatusChanged" as const,
    v: 1 as const,
    data: { id, status: { state, message: "", addr: "" } },
    meta: meta("dispatcher"),
  };
}

function create(
  c: ControlLoop,
  name: string,
  replicas: number,
  extra: Record<string, unknown> = {},
) {
  c.apply([{ ...ev.serviceCreated(`svc-${name}`, name, replicas, extra) }]);
  c.settle();
  return c.state.serviceByName(name)!;
}

function update(
  c: ControlLoop,
  name: string,
  change: (spec: ReturnType<typeof serviceSpec>) => unknown,
) {
  const svc = c.state.serviceByName(name)!;
  const spec = structuredClone(svc.spec);
  change(spec);
  c.apply([{
    type: "ServiceUpdated",
    v: 1,
    data: { id: svc.id, spec },
    meta: meta("user", svc.version),
  }]);
}

const slotsOf = (c: ControlLoop, name: string) =>
  c.running(name).map((t) => t.slot).sort((a, b) => a - b);

Deno.test("orchestrator fills the slots of a replicated service and scales it", () => {
  const c = cluster(["n1", "n2"]);
  create(c, "web", 3);
  assert.deepEqual(slotsOf(c, "web"), [1, 2, 3]);
  update(c, "web", (s) => (s.mode = { kind: "replicated", replicas: 5 }));
  const scaleIndex = c.state.index;
  c.settle();
  assert.deepEqual(slotsOf(c, "web"), [1, 2, 3, 4, 5]);
  // Provenance: the new slots' tasks cite the user's scale as their cause.
  const newSlots = c.log.flatMap((e) => e.batch.events).filter((e) =>
    e.type === "TaskCreated" && e.data.slot > 3
  );
  assert.equal(newSlots.length, 2);
  assert.ok(newSlots.every((e) => e.meta.cause === scaleIndex));
  update(c, "web", (s) => (s.mode = { kind: "replicated", replicas: 2 }));
  c.settle();
  assert.equal(c.running("web").length, 2);
  assert.equal(c.tasks("web").length, 2, "removed slots are stopped, then reaped");
  // Scaling is not an update: the two survivors are the same tasks as before.
  assert.ok(c.tasks("web").every((t) => t.attempt === 0));
  const created = c.log.flatMap((e) => e.batch.events).filter((e) => e.type === "TaskCreated");
  assert.equal(created.length, 5);
  assert.ok(created.every((e) => e.meta.by === "orchestrator" && e.meta.cause! > 0));
});

Deno.test("orchestrator restarts a failed task after the restart delay, as a logged fact", () => {
  const c = cluster(["n1"]);
  create(c, "api", 1, {
    task: {
      runtime: { kind: "process", command: "/bin/false" },
      restart: { condition: "any", delay: 5_000 },
    },
  });
  const [first] = c.running("api");
  c.exit(first.id, 3);
  c.settle();
  const waiting = c.tasks("api").find((t) => t.id !== first.id)!;
  assert.equal(waiting.slot, 1);
  assert.equal(waiting.attempt, 1);
  assert.equal(waiting.startAfter, c.now + 5_000);
  assert.equal(waiting.desiredState, TaskState.ready);
  assert.equal(waiting.status.state, TaskState.ready, "it waits on its node, prepared");
  assert.equal(c.state.tasks.get(first.id)!.desiredState, TaskState.shutdown);
  assert.equal(orchestrator.wakeAt!(c.state, c.now), c.now + 5_000);
  c.advance(4_999);
  assert.equal(c.running("api").length, 0);
  c.advance(1);
  assert.deepEqual(c.running("api").map((t) => t.id), [waiting.id]);
});

Deno.test("orchestrator stops restarting after max attempts, like docker's fail.1 example", () => {
  const c = cluster(["n1"]);
  create(c, "fail", 1, {
    task: {
      runtime: { kind: "process", command: "/bin/sh" },
      restart: { condition: "any", delay: 0, maxAttempts: 2 },
    },
  });
  for (let i = 0; i < 3; i++) {
    const [t] = c.running("fail");
    assert.ok(t, `attempt ${i} runs`);
    c.exit(t.id, 3);
    c.settle();
  }
  const tasks = c.tasks("fail");
  assert.equal(tasks.length, 3);
  assert.ok(tasks.every((t) => t.status.state === TaskState.failed));
  assert.ok(tasks.every((t) => t.desiredState === TaskState.shutdown));
  assert.deepEqual(tasks.map((t) => t.attempt).sort(), [0, 1, 2]);
  c.advance(60_000);
  assert.equal(c.tasks("fail").length, 3, "no more restarts");
  // A new spec resets the attempts.
  update(c, "fail", (s) => (s.task.forceUpdate = 1));
  c.settle();
  assert.equal(c.running("fail").length, 1);
});

Deno.test("orchestrator honours restart condition on-failure and none", () => {
  const c = cluster(["n1"]);
  create(c, "once", 1, {
    task: {
      runtime: { kind: "process", command: "/bin/true" },
      restart: { condition: "on-failure", delay: 0 },
    },
  });
  c.exit(c.running("once")[0].id, 0);
  c.settle();
  assert.equal(c.tasks("once").length, 1, "a clean exit is not restarted");
  assert.equal(c.tasks("once")[0].status.state, TaskState.complete);
  create(c, "never", 1, {
    task: {
      runtime: { kind: "process", command: "/bin/false" },
      restart: { condition: "none", delay: 0 },
    },
  });
  c.exit(c.running("never")[0].id, 1);
  c.settle();
  assert.equal(c.tasks("never").length, 1);
});

Deno.test("orchestrator moves tasks off drained and down nodes", () => {
  const c = cluster(["n1", "n2", "n3"]);
  create(c, "web", 6);
  const node = c.state.nodes.get("n1")!;
  c.apply([{
    type: "NodeSpecUpdated",
    v: 1,
    data: { id: "n1", spec: { ...node.spec, availability: "drain" } },
    meta: meta("user:node.update"),
  }]);
  c.settle();
  assert.equal(c.running("web").length, 6);
  assert.ok(c.running("web").every((t) => t.nodeId !== "n1"));
  assert.deepEqual(slotsOf(c, "web"), [1, 2, 3, 4, 5, 6], "the same slots, elsewhere");
  c.silent.add("n2");
  c.apply([ready("n2", "down")]);
  c.settle();
  assert.equal(c.running("web").length, 6);
  assert.ok(c.running("web").every((t) => t.nodeId === "n3"));
});

Deno.test("orchestrator runs one task per eligible node for a global service", () => {
  const c = cluster(["n1", "n2"]);
  c.apply([{
    type: "NodeSpecUpdated",
    v: 1,
    data: { id: "n2", spec: { ...c.state.nodes.get("n2")!.spec, labels: { disk: "ssd" } } },
    meta: meta(),
  }]);
  create(c, "agent", 0, { mode: { kind: "global" } });
  assert.deepEqual(c.running("agent").map((t) => t.nodeId).sort(), ["n1", "n2"]);
  c.apply([ev.nodeRegistered("n3"), ready("n3")]);
  c.settle();
  assert.equal(c.running("agent").length, 3, "follows a node that joins");
  c.apply([{
    type: "NodeSpecUpdated",
    v: 1,
    data: { id: "n3", spec: { ...c.state.nodes.get("n3")!.spec, availability: "drain" } },
    meta: meta(),
  }]);
  c.settle();
  assert.deepEqual(c.running("agent").map((t) => t.nodeId).sort(), ["n1", "n2"]);
  create(c, "ssd", 0, {
    mode: { kind: "global" },
    task: {
      runtime: { kind: "process", command: "x" },
      placement: { constraints: ["node.labels.disk==ssd"] },
    },
  });
  assert.deepEqual(c.running("ssd").map((t) => t.nodeId), ["n2"]);
});

Deno.test("orchestrator rolls an update one slot at a time, stop-first, with a delay", () => {
  const c = cluster(["n1", "n2"]);
  create(c, "web", 3, { update: { parallelism: 1, delay: 10_000 } });
  update(c, "web", (s) => {
    if (s.task.runtime.kind === "process") s.task.runtime.env = ["V=2"];
  });
  c.settle();
  const svc = c.state.serviceByName("web")!;
  const current = () => c.running("web").filter((t) => t.specVersion === svc.specVersion).length;
  assert.equal(current(), 1, "first batch done");
  assert.equal(c.running("web").length, 3, "stop-first: never more than one slot down at a time");
  assert.equal(c.state.serviceByName("web")!.updateStatus?.state, "updating");
  c.advance(9_000);
  assert.equal(current(), 1, "waits the update delay");
  c.advance(1_000);
  assert.equal(current(), 2);
  c.advance(10_000);
  assert.equal(current(), 3);
  assert.equal(c.state.serviceByName("web")!.updateStatus?.state, "updating", "monitoring");
  c.advance(5_000);
  assert.equal(c.state.serviceByName("web")!.updateStatus?.state, "completed");
  assert.equal(c.state.serviceByName("web")!.updateStatus?.message, "update completed");
  // Old tasks stay as history: shut down, one per slot.
  const shut = c.tasks("web").filter((t) => t.status.state === TaskState.shutdown);
  assert.deepEqual(shut.map((t) => t.slot).sort(), [1, 2, 3]);
});

Deno.test("orchestrator start-first update starts the new task before stopping the old", () => {
  const c = cluster(["n1"]);
  create(c, "web", 1, { update: { order: "start-first" } });
  const [old] = c.running("web");
  update(c, "web", (s) => (s.task.forceUpdate = 1));
  // One orchestrator pass: the new task is created while the old one keeps running.
  const events = orchestrator.reconcile(c.state, { now: c.now, newId: c.newId, cause: 1 });
  assert.deepEqual(events.map((e) => e.type), ["TaskCreated"]);
  c.settle();
  assert.equal(c.running("web").length, 1);
  assert.notEqual(c.running("web")[0].id, old.id);
  assert.equal(c.state.tasks.get(old.id)!.status.state, TaskState.shutdown);
});

Deno.test("orchestrator rollback brings back the previous spec", () => {
  const c = cluster(["n1"]);
  create(c, "web", 2, { update: { parallelism: 0 } });
  const before = c.state.serviceByName("web")!.specVersion;
  update(c, "web", (s) => (s.task.forceUpdate = 1));
  c.settle();
  const svc = c.state.serviceByName("web")!;
  c.apply([{
    type: "ServiceRolledBack",
    v: 1,
    data: { id: svc.id },
    meta: meta("user", svc.version),
  }]);
  c.settle();
  c.advance(5_000);
  assert.ok(c.running("web").every((t) => t.specVersion === before));
  assert.equal(c.running("web").length, 2);
  assert.equal(c.state.serviceByName("web")!.updateStatus?.state, "rollback_completed");
});

Deno.test("orchestrator keeps at most the task history retention limit per slot", () => {
  const c = cluster(["n1"], 3);
  create(c, "flaky", 1, {
    task: { runtime: { kind: "process", command: "x" }, restart: { condition: "any", delay: 0 } },
  });
  for (let i = 0; i < 8; i++) {
    c.exit(c.running("flaky")[0].id, 1);
    c.settle();
  }
  const tasks = c.tasks("flaky");
  assert.equal(tasks.length, 3);
  assert.equal(tasks.filter((t) => t.status.state === TaskState.running).length, 1);
  assert.ok(tasks.some((t) => t.attempt === 8), "the newest attempts are the ones kept");
});

Deno.test("orchestrator stops and reaps the tasks of a removed service", () => {
  const c = cluster(["n1"]);
  const svc = create(c, "gone", 3);
  c.apply([{
    type: "ServiceRemoved",
    v: 1,
    data: { id: svc.id },
    meta: meta("user", svc.version),
  }]);
  c.settle();
  assert.equal(c.state.tasks.size, 0);
});

/** Updates a service to a program that fails at once, with a failure action. */
function failingUpdate(action: "pause" | "continue" | "rollback") {
  const c = cluster(["n1", "n2"]);
  create(c, "web", 4, {
    update: { parallelism: 1, delay: 10_000, failureAction: action, monitor: 5_000 },
    task: { runtime: { kind: "process", command: "/bin/good" }, restart: { condition: "none" } },
  });
  const good = c.state.serviceByName("web")!.specVersion;
  update(c, "web", (s) => {
    if (s.task.runtime.kind === "process") s.task.runtime.command = "/bin/bad";
  });
  c.settle();
  // The first updated task dies at once.
  const svc = c.state.serviceByName("web")!;
  const bad = c.running("web").find((t) => t.specVersion === svc.specVersion)!;
  c.exit(bad.id, 1);
  c.settle();
  return { c, good, bad };
}

Deno.test("orchestrator pauses an update whose new tasks fail (failure action pause)", () => {
  const { c, bad } = failingUpdate("pause");
  const status = c.state.serviceByName("web")!.updateStatus!;
  assert.equal(status.state, "paused");
  assert.equal(
    status.message,
    `update paused due to failure or early termination of task ${bad.id}`,
  );
  for (let i = 0; i < 6; i++) c.advance(10_000);
  const svc = c.state.serviceByName("web")!;
  const updated = c.running("web").filter((t) => t.specVersion === svc.specVersion).length;
  assert.equal(updated, 0, "no more slots are updated while paused");
  assert.equal(c.running("web").length, 3, "the other slots keep running the old spec");
});

Deno.test("orchestrator rolls back an update whose new tasks fail (failure action rollback)", () => {
  const { c, good, bad } = failingUpdate("rollback");
  let status = c.state.serviceByName("web")!.updateStatus!;
  assert.equal(status.state, "rollback_started");
  assert.equal(
    status.message,
    `update rolled back due to failure or early termination of task ${bad.id}`,
  );
  c.advance(10_000);
  status = c.state.serviceByName("web")!.updateStatus!;
  assert.equal(status.state, "rollback_completed");
  assert.equal(c.state.serviceByName("web")!.specVersion, good);
  assert.equal(c.running("web").length, 4);
  assert.ok(c.running("web").every((t) => t.specVersion === good));
});

Deno.test("orchestrator carries on past failures with failure action continue", () => {
  const { c } = failingUpdate("continue");
  for (let i = 0; i < 6; i++) c.advance(10_000); // one batch per update delay
  const svc = c.state.serviceByName("web")!;
  const updatedSlots = new Set(
    c.tasks("web").filter((t) => t.specVersion === svc.specVersion).map((t) => t.slot),
  );
  assert.equal(updatedSlots.size, 4, "every slot got the new spec");
  assert.notEqual(svc.updateStatus?.state, "paused");
});

// ---------------------------------------------------------------------------------------------
// Jobs

/** Tasks of a job that are on their way or running (not finished). */
const activeJobTasks = (c: ControlLoop, name: string) =>
  c.tasks(name).filter((t) =>
    t.desiredState === TaskState.complete && t.status.state < TaskState.complete
  );

const completedOf = (c: ControlLoop, name: string) =>
  c.tasks(name).filter((t) => t.status.state === TaskState.complete);

/** Completes every running task of a job, then lets the loop settle. */
function completeRunning(c: ControlLoop, name: string, code = 0): number {
  const running = activeJobTasks(c, name).filter((t) => t.status.state === TaskState.running);
  for (const t of running) c.exit(t.id, code);
  c.settle();
  return running.length;
}

function job(total: number, maxConcurrent: number, extra: Record<string, unknown> = {}) {
  return { mode: { kind: "replicated-job", maxConcurrent, totalCompletions: total }, ...extra };
}

Deno.test("replicated job runs at most max-concurrent tasks until total completions", () => {
  const c = cluster(["n1", "n2"]);
  create(c, "batch", 0, job(5, 2));
  const first = activeJobTasks(c, "batch");
  assert.equal(first.length, 2, "two at once");
  assert.ok(first.every((t) => t.status.state === TaskState.running));
  assert.ok(first.every((t) => t.desiredState === TaskState.complete), "desired complete");
  assert.ok(first.every((t) => t.jobIteration === 0));
  const runs: number[] = [];
  for (let round = 0; round < 10 && completedOf(c, "batch").length < 5; round++) {
    runs.push(completeRunning(c, "batch"));
    assert.ok(activeJobTasks(c, "batch").length <= 2, "never more than max-concurrent");
  }
  assert.deepEqual(runs, [2, 2, 1], "5 completions, 2 at a time");
  assert.equal(completedOf(c, "batch").length, 5);
  assert.equal(activeJobTasks(c, "batch").length, 0, "nothing more once total is reached");
  // Every completion has its own slot, 1..5, and a completed task is never restarted.
  assert.deepEqual(completedOf(c, "batch").map((t) => t.slot).sort(), [1, 2, 3, 4, 5]);
  c.advance(60_000);
  assert.equal(c.tasks("batch").length, 5, "no task is created after the job completed");
});

Deno.test("replicated job retries a failed task per its restart policy, in the same slot", () => {
  const c = cluster(["n1"]);
  create(
    c,
    "flaky",
    0,
    job(1, 1, {
      task: {
        runtime: { kind: "process", command: "x" },
        restart: { condition: "any", delay: 1_000, maxAttempts: 2 },
      },
    }),
  );
  const [t1] = activeJobTasks(c, "flaky");
  c.exit(t1.id, 3);
  c.settle();
  // The retry waits its delay at ready, then runs (its desired state becomes complete again).
  const waiting = c.tasks("flaky").filter((t) => t.id !== t1.id);
  assert.equal(waiting.length, 1);
  assert.equal(waiting[0].desiredState, TaskState.ready);
  assert.equal(waiting[0].slot, t1.slot);
  assert.equal(waiting[0].attempt, 1);
  c.advance(1_000);
  const [t2] = activeJobTasks(c, "flaky");
  assert.equal(t2.id, waiting[0].id);
  assert.equal(t2.status.state, TaskState.running);
  c.exit(t2.id, 1);
  c.settle();
  c.advance(1_000);
  const [t3] = activeJobTasks(c, "flaky");
  assert.equal(t3.attempt, 2);
  c.exit(t3.id, 1);
  c.settle();
  c.advance(60_000);
  // Two restarts allowed (max attempts 2): the third failure ends the job short of its total.
  assert.equal(activeJobTasks(c, "flaky").length, 0);
  assert.equal(c.tasks("flaky").length, 3);
  assert.equal(completedOf(c, "flaky").length, 0);
});

Deno.test("replicated job with restart condition none does not retry a failure", () => {
  const c = cluster(["n1"]);
  create(
    c,
    "once",
    0,
    job(3, 3, {
      task: { runtime: { kind: "process", command: "x" }, restart: { condition: "none" } },
    }),
  );
  const tasks = activeJobTasks(c, "once");
  assert.equal(tasks.length, 3);
  c.exit(tasks[0].id, 1);
  c.exit(tasks[1].id, 0);
  c.exit(tasks[2].id, 0);
  c.advance(60_000);
  assert.equal(c.tasks("once").length, 3, "the failed slot is not run again");
  assert.equal(completedOf(c, "once").length, 2);
});

Deno.test("replicated job task on a lost node runs again elsewhere; a completed one stays", () => {
  const c = cluster(["n1", "n2"]);
  create(c, "move", 0, job(2, 2));
  const tasks = activeJobTasks(c, "move");
  const done = tasks[0];
  c.exit(done.id, 0);
  c.settle();
  const lost = activeJobTasks(c, "move")[0];
  const downNode = lost.nodeId;
  c.apply([ready(downNode, "down")]);
  c.settle();
  const [moved] = activeJobTasks(c, "move");
  assert.notEqual(moved.id, lost.id);
  assert.notEqual(moved.nodeId, downNode);
  assert.equal(moved.slot, lost.slot, "same slot, moved");
  assert.equal(moved.status.state, TaskState.running);
  assert.equal(c.state.tasks.get(done.id)!.status.state, TaskState.complete, "done stays done");
  completeRunning(c, "move");
  assert.equal(completedOf(c, "move").length, 2);
});

Deno.test("updating a job (or --force) starts a new run: the job iteration", () => {
  const c = cluster(["n1"]);
  create(c, "rerun", 0, job(2, 2));
  completeRunning(c, "rerun");
  assert.equal(completedOf(c, "rerun").length, 2);
  const svc = c.state.serviceByName("rerun")!;
  assert.equal(svc.jobIteration, 0);
  assert.equal(svc.updateStatus, undefined, "jobs have no rolling update");
  update(c, "rerun", (s) => (s.task.forceUpdate = 1));
  c.settle();
  const after = c.state.serviceByName("rerun")!;
  assert.equal(after.jobIteration, 1);
  assert.equal(after.updateStatus, undefined);
  const fresh = activeJobTasks(c, "rerun");
  assert.equal(fresh.length, 2, "the job runs again from nothing");
  assert.ok(fresh.every((t) => t.jobIteration === 1));
  // The earlier run's tasks are history: desired shutdown, still complete.
  const old = c.tasks("rerun").filter((t) => t.jobIteration === 0);
  assert.equal(old.length, 2);
  assert.ok(old.every((t) => t.desiredState === TaskState.shutdown));
  assert.ok(old.every((t) => t.status.state === TaskState.complete));
  completeRunning(c, "rerun");
  assert.equal(completedOf(c, "rerun").filter((t) => t.jobIteration === 1).length, 2);
  // A change of the counts alone is a new run too (SwarmKit bumps JobIteration on every update).
  update(
    c,
    "rerun",
    (s) => (s.mode = { kind: "replicated-job", maxConcurrent: 1, totalCompletions: 1 }),
  );
  c.settle();
  assert.equal(c.state.serviceByName("rerun")!.jobIteration, 2);
  assert.equal(activeJobTasks(c, "rerun").length, 1);
});

Deno.test("global job runs once per eligible node, including nodes that join later", () => {
  const c = cluster(["n1", "n2"]);
  create(c, "init", 0, { mode: { kind: "global-job" } });
  const first = activeJobTasks(c, "init");
  assert.deepEqual(first.map((t) => t.nodeId).sort(), ["n1", "n2"]);
  assert.ok(first.every((t) => t.slot === 0 && t.desiredState === TaskState.complete));
  for (const t of first) c.exit(t.id, 0);
  c.settle();
  assert.equal(activeJobTasks(c, "init").length, 0, "completed: not run again");
  c.apply([ev.nodeRegistered("n3"), ready("n3")]);
  c.settle();
  const late = activeJobTasks(c, "init");
  assert.deepEqual(late.map((t) => t.nodeId), ["n3"], "a node that joins later runs it too");
  c.exit(late[0].id, 2);
  c.settle();
  assert.equal(activeJobTasks(c, "init").length, 0, "the retry waits its delay");
  c.advance(5_000); // default restart policy: any (acts as on-failure), 5 s delay
  const retry = activeJobTasks(c, "init");
  assert.deepEqual(retry.map((t) => t.nodeId), ["n3"], "a failure is retried on its node");
  assert.notEqual(retry[0].id, late[0].id);
  c.exit(retry[0].id, 0);
  c.settle();
  assert.deepEqual(completedOf(c, "init").map((t) => t.nodeId).sort(), ["n1", "n2", "n3"]);
  c.advance(60_000);
  assert.equal(activeJobTasks(c, "init").length, 0);
});

Deno.test("tasks of a removed job are removed, completed ones included", () => {
  const c = cluster(["n1"]);
  const svc = create(c, "gone", 0, job(2, 1));
  completeRunning(c, "gone");
  c.apply([{
    type: "ServiceRemoved",
    v: 1,
    data: { id: svc.id },
    meta: meta("user", svc.version),
  }]);
  c.settle();
  assert.equal([...c.state.tasks.values()].filter((t) => t.serviceId === svc.id).length, 0);
});
