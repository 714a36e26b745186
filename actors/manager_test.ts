import assert from "node:assert/strict";
import { type ShoalEvent, TaskState } from "../events/schema.ts";
import { MemoryLog } from "../events/log.ts";
import { Manager, type Projection } from "./manager.ts";
import { EventRejected } from "./entities/rejection.ts";
import { snapshot } from "./snapshot.ts";
import type { ClusterState } from "./state.ts";
import { ev, serviceSpec } from "../tests/_harness/events.ts";

let serial = 0;
const newId = () => `m${(++serial).toString(36).padStart(6, "0")}`;

/** A toy orchestrator: one task per missing slot of each replicated service. */
const slots: Projection = {
  name: "orchestrator",
  reconcile(state: ClusterState, ctx) {
    const out: ShoalEvent[] = [];
    for (const svc of state.services.values()) {
      if (svc.spec.mode.kind !== "replicated") continue;
      const have = new Set([...state.tasksOf(svc.id)].map((t) => t.slot));
      for (let slot = 1; slot <= svc.spec.mode.replicas; slot++) {
        if (have.has(slot)) continue;
        out.push({
          type: "TaskCreated",
          v: 1,
          data: {
            id: ctx.newId(),
            serviceId: svc.id,
            slot,
            nodeId: "",
            specVersion: svc.specVersion,
            desiredState: TaskState.running,
            attempt: 0,
            startAfter: 0,
          },
          meta: { by: "orchestrator", reason: `slot ${slot} has no task`, cause: ctx.cause },
        });
      }
    }
    return out;
  },
};

async function withManager(
  fn: (m: Manager, log: MemoryLog) => Promise<void>,
  projections: Projection[] = [],
) {
  const log = new MemoryLog();
  const m = new Manager({ log, newId, clock: () => 42, projections });
  await m.start();
  try {
    await fn(m, log);
  } finally {
    await m.stop();
    await log.close();
  }
}

async function settle(m: Manager, log: MemoryLog) {
  // Let projections propose whatever they still want to, then wait for it to apply.
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 5));
    await m.waitFor(log.lastIndex());
  }
}

Deno.test("Manager executes commands through entity actors and the log", async () => {
  await withManager(async (m, log) => {
    await m.propose([ev.clusterCreated()], "test");
    const created = await m.execute({ kind: "CreateService", spec: serviceSpec("web", 2) }, {
      by: "user:service.create",
    });
    assert.equal(created.index, log.lastIndex());
    const svc = m.state.serviceByName("web")!;
    assert.equal(svc.id, created.events[0].data.id);
    assert.equal(log.read(created.index)[0].batch.by, "user:service.create");
    await m.execute({ kind: "ScaleService", service: "web", replicas: 5 }, { by: "user:scale" });
    assert.deepEqual(m.state.serviceByName("web")?.spec.mode, { kind: "replicated", replicas: 5 });
    await assert.rejects(
      m.execute({ kind: "ScaleService", service: "nope", replicas: 1 }, { by: "user:scale" }),
      (e) => e instanceof EventRejected && e.code === "not_found",
    );
  });
});

Deno.test("Manager reports the fold's rejection of a stale or racing command", async () => {
  await withManager(async (m) => {
    await m.propose([ev.clusterCreated()], "test");
    await m.execute({ kind: "CreateService", spec: serviceSpec("web") }, { by: "u" });
    const v = m.state.serviceByName("web")!.version;
    await m.execute({ kind: "ScaleService", service: "web", replicas: 2 }, { by: "u" });
    await assert.rejects(
      m.execute(
        { kind: "UpdateService", service: "web", spec: serviceSpec("web", 3), version: v },
        { by: "u" },
      ),
      (e) => e instanceof EventRejected && e.code === "version_conflict",
    );
    // Two creates of one name at once: the collection actor serialises them; one wins.
    const results = await Promise.allSettled([
      m.execute({ kind: "CreateService", spec: serviceSpec("api") }, { by: "u" }),
      m.execute({ kind: "CreateService", spec: serviceSpec("api") }, { by: "u" }),
    ]);
    assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assert.equal(failed.reason.code, "name_conflict");
  });
});

Deno.test("Manager replays the log into the same state after a restart", async () => {
  const log = new MemoryLog();
  const a = new Manager({ log, newId, clock: () => 1 });
  await a.start();
  await a.propose([ev.clusterCreated(), ev.nodeRegistered("n1")], "test");
  await a.execute({ kind: "CreateService", spec: serviceSpec("web", 3) }, { by: "u" });
  await a.execute({ kind: "RemoveService", service: "web" }, { by: "u" });
  await a.execute({ kind: "CreateService", spec: serviceSpec("web", 1) }, { by: "u" });
  await a.stop();
  const b = new Manager({ log, newId });
  await b.start();
  assert.equal(b.state.index, a.state.index);
  assert.deepEqual(snapshot(b.state), snapshot(a.state));
  await b.stop();
  await log.close();
});

Deno.test("Manager runs projections only while leading, from the whole state", async () => {
  await withManager(async (m, log) => {
    await m.propose([ev.clusterCreated()], "test");
    await m.execute({ kind: "CreateService", spec: serviceSpec("web", 2) }, { by: "u" });
    await settle(m, log);
    assert.equal(m.state.tasks.size, 0, "a follower's projections do nothing");
    await m.setLeader(true);
    await settle(m, log);
    assert.equal(m.state.tasks.size, 2, "on gaining leadership it reconciles what exists");
    const cause = log.read(log.lastIndex())[0].batch.events[0].meta;
    assert.equal(cause.by, "orchestrator");
    await m.execute({ kind: "ScaleService", service: "web", replicas: 4 }, { by: "u" });
    await settle(m, log);
    assert.equal(m.state.tasks.size, 4, "then it follows what changes");
    await m.setLeader(false);
    await m.execute({ kind: "ScaleService", service: "web", replicas: 6 }, { by: "u" });
    await settle(m, log);
    assert.equal(m.state.tasks.size, 4, "losing leadership stops it at once");
  }, [slots]);
});

Deno.test("Manager does not spin on a projection whose proposals are rejected", async () => {
  let calls = 0;
  const broken: Projection = {
    name: "broken",
    reconcile() {
      calls++;
      return [ev.taskRemoved("ghost")];
    },
  };
  await withManager(async (m, log) => {
    await m.propose([ev.clusterCreated()], "test");
    await m.setLeader(true);
    await settle(m, log);
    assert.equal(calls, 1);
    assert.equal(m.state.rejections.length, 1);
    await m.propose([ev.nodeRegistered("n1")], "test");
    await settle(m, log);
    assert.equal(calls, 2, "it tries again when something else changes");
  }, [broken]);
});
