/**
 * Agents over the network: the dispatcher (node/dispatcher.ts) and RemoteSession in one process,
 * over real TLS on loopback, with a real manager and projections and fake executors.
 */
import assert from "node:assert/strict";
import { NetworkSpec, ServiceSpec, TaskState } from "../../events/schema.ts";
import {
  join,
  runningByNode,
  runWorker,
  testSwarm,
  type TestWorker,
  until,
} from "../../node/_test_swarm.ts";
import { RemoteSession } from "./remote_session.ts";
import { createNodeCSR } from "../../node/ca.ts";
import { nodeDescription } from "../../tests/_harness/events.ts";

function service(name: string, replicas: number, extra: Record<string, unknown> = {}) {
  return ServiceSpec.parse({
    name,
    task: {
      runtime: { kind: "process", command: "/bin/app" },
      restart: { condition: "any", delay: 0 },
      ...extra,
    },
    mode: { kind: "replicated", replicas },
  });
}

Deno.test("agents over the network run their tasks; reports arrive in few batches", async () => {
  const swarm = await testSwarm();
  const workers: TestWorker[] = [];
  try {
    for (const name of ["a", "b"]) workers.push(runWorker(swarm, await join(swarm, name), name));
    await until(
      "both nodes ready",
      () =>
        workers.every((w) =>
          swarm.manager.state.nodes.get(w.joined.nodeId)?.status.state === "ready"
        ),
    );
    const before = swarm.log.lastIndex();
    await swarm.manager.execute({ kind: "CreateService", spec: service("web", 6) }, {
      by: "user",
    });
    await until("6 running", () => {
      const r = runningByNode(swarm.manager, "web");
      return [...r.values()].reduce((a, b) => a + b, 0) === 6;
    });
    const byNode = runningByNode(swarm.manager, "web");
    assert.deepEqual(workers.map((w) => byNode.get(w.joined.nodeId)), [3, 3]);
    for (const w of workers) {
      // Each agent runs exactly the tasks assigned to its node.
      const mine = [...swarm.manager.state.tasksOn(w.joined.nodeId)].map((t) => t.id).sort();
      assert.deepEqual(w.executors.map((e) => e.task!.id).sort(), mine);
      assert.ok(w.executors.every((e) => e.running));
    }
    const entries = swarm.log.read(before + 1).filter((e) => e.batch.by === "dispatcher");
    const reports = entries.flatMap((e) => e.batch.events);
    assert.equal(reports.length, 6 * 5, "accepted, preparing, ready, starting, running each");
    assert.ok(reports.every((e) => e.type === "TaskStatusReported"));
    assert.ok(
      reports.every((e) => workers.some((w) => e.meta.by === `agent:${w.joined.nodeId}`)),
      "every report names its agent",
    );
    assert.ok(entries.length <= 12, `${entries.length} entries for 30 reports`);
  } finally {
    for (const w of workers) await w.stop();
    await swarm.close();
  }
});

Deno.test("a secret reaches only the node whose task uses it", async () => {
  const swarm = await testSwarm();
  const workers: TestWorker[] = [];
  try {
    for (const name of ["a", "b"]) workers.push(runWorker(swarm, await join(swarm, name), name));
    await until(
      "both nodes ready",
      () =>
        workers.every((w) =>
          swarm.manager.state.nodes.get(w.joined.nodeId)?.status.state === "ready"
        ),
    );
    const [{ events }] = [
      await swarm.manager.execute({
        kind: "CreateFileObject",
        object: "secret",
        spec: { name: "pw", labels: {}, data: btoa("hunter2") },
      }, { by: "user" }),
    ];
    const secretId = events[0].data.id;
    const target = workers[0].joined.nodeId;
    await swarm.manager.execute({
      kind: "CreateService",
      spec: service("db", 1, {
        secrets: [{ id: secretId, name: "pw" }],
        placement: { constraints: [`node.id==${target}`] },
      }),
    }, { by: "user" });
    await until("db running", () => runningByNode(swarm.manager, "db").get(target) === 1);
    const [a, b] = workers;
    assert.deepEqual(a.session.heldFiles.secrets, [secretId]);
    assert.deepEqual(b.session.heldFiles.secrets, [], "the other node never got it");
    const data = a.executors[0].task!.secretData!.get(secretId)!;
    assert.equal(new TextDecoder().decode(data), "hunter2");
    // The service goes: so does the secret, from the node's memory.
    await swarm.manager.execute({ kind: "RemoveService", service: "db" }, { by: "user" });
    await until("the secret dropped", () => a.session.heldFiles.secrets.length === 0);
  } finally {
    for (const w of workers) await w.stop();
    await swarm.close();
  }
});

Deno.test("a remote task is told its address on its network", async () => {
  const swarm = await testSwarm();
  const w = runWorker(swarm, await join(swarm, "a"), "a");
  try {
    const { events: [created] } = await swarm.manager.execute({
      kind: "CreateNetwork",
      spec: NetworkSpec.parse({ name: "appnet" }),
    }, { by: "user" });
    await swarm.manager.execute({
      kind: "CreateService",
      spec: service("api", 1, { networks: [{ target: created.data.id }] }),
    }, { by: "user" });
    await until(
      "api running",
      () => runningByNode(swarm.manager, "api").get(w.joined.nodeId) === 1,
    );
    const task = [...swarm.manager.state.tasksOn(w.joined.nodeId)][0];
    assert.match(task.addresses[0], /^127\.1\.0\.\d+$/);
    assert.equal(w.executors[0].task!.addressing!.addr, task.addresses[0]);
  } finally {
    await w.stop();
    await swarm.close();
  }
});

Deno.test("tasks keep running while the manager is away; reports made meanwhile arrive", async () => {
  const swarm = await testSwarm();
  const w = runWorker(swarm, await join(swarm, "a"), "a");
  try {
    await swarm.manager.execute({ kind: "CreateService", spec: service("web", 2) }, {
      by: "user",
    });
    await until("2 running", () => runningByNode(swarm.manager, "web").get(w.joined.nodeId) === 2);
    await swarm.stopDispatcher();
    await until("the session lost", () => !w.session.connected);
    // Tasks keep running; one of them fails while nobody listens.
    assert.ok(w.executors.every((e) => e.running));
    assert.equal(w.session.assignments().length, 2, "the last assignments are kept");
    const victim = w.executors[0];
    victim.exit(3);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(swarm.manager.state.tasks.get(victim.task!.id)!.status.state, TaskState.running);

    await swarm.restartDispatcher();
    await until("the session back", () => w.session.connected);
    await until(
      "the failure reported",
      () => swarm.manager.state.tasks.get(victim.task!.id)!.status.state === TaskState.failed,
    );
    assert.match(swarm.manager.state.tasks.get(victim.task!.id)!.status.err, /exit \(3\)/);
    await until(
      "the replacement running",
      () => runningByNode(swarm.manager, "web").get(w.joined.nodeId) === 2,
    );
    assert.equal(w.executors.length, 3, "the survivor was not restarted");
    assert.ok(w.executors[1].running);
  } finally {
    await w.stop();
    await swarm.close();
  }
});

Deno.test("a silent node is marked down after 3 heartbeats; heartbeats are not logged", async () => {
  const swarm = await testSwarm(100);
  const joined = await join(swarm, "a");
  const w = runWorker(swarm, joined, "a");
  const node = () => swarm.manager.state.nodes.get(joined.nodeId)!;
  try {
    await until("ready", () => node().status.state === "ready");
    const index = swarm.log.lastIndex();
    await new Promise((r) => setTimeout(r, 600)); // six heartbeats
    assert.equal(swarm.log.lastIndex(), index, "no entry for heartbeats");
    assert.equal(node().status.state, "ready");
    // The agent dies without a word.
    w.session.close();
    const t0 = Date.now();
    await until("down", () => node().status.state === "down");
    const took = Date.now() - t0;
    assert.ok(took >= 200 && took < 1_500, `marked down after ${took} ms`);
    assert.equal(node().status.message, "heartbeat failure");
    // It comes back: ready again.
    const again = runWorker(swarm, joined, "a");
    await until("ready again", () => node().status.state === "ready");
    await again.stop();
  } finally {
    await w.stop();
    await swarm.close();
  }
});

Deno.test("a removed node's certificate no longer opens a session", async () => {
  const swarm = await testSwarm();
  const joined = await join(swarm, "a");
  const w = runWorker(swarm, joined, "a");
  try {
    await until("connected", () => w.session.connected);
    await swarm.manager.execute({ kind: "RemoveNode", node: joined.nodeId, force: true }, {
      by: "user:node.rm",
    });
    await until("the open session refused", () => w.refused.length === 1);
    assert.match(w.refused[0], /^node_removed: node \w+ was removed from the swarm/);
    // Dialling again with the same certificate is refused at once.
    const again = runWorker(swarm, joined, "a");
    await until("the new session refused", () => again.refused.length === 1);
    assert.match(again.refused[0], /^node_removed: .*not a member of this swarm/);
    await assert.rejects(again.session.ready);
    assert.ok(swarm.logger.lines.some((l) => /warn .*not a member of this swarm/.test(l)));
    await again.stop();
  } finally {
    await w.stop();
    await swarm.close();
  }
});

Deno.test("certificates renew over the session, for the node's current role", async () => {
  const swarm = await testSwarm();
  const joined = await join(swarm, "a");
  const session = new RemoteSession({
    managers: [swarm.addr],
    credentials: () => joined.credentials,
    description: () => nodeDescription("a"),
  });
  try {
    session.start();
    await session.ready;
    const csr = await createNodeCSR({ nodeId: joined.nodeId });
    const cert = await session.renewCertificate(csr.csrPem);
    const { verifyNodeCertificate } = await import("../../node/ca.ts");
    const id = await verifyNodeCertificate({
      rootCA: { certPem: joined.credentials.ca },
      certPem: cert,
      now: Date.now(),
    });
    assert.equal(id.nodeId, joined.nodeId);
    assert.equal(id.role, "worker");
    await assert.rejects(session.renewCertificate("not a csr"), /invalid certificate request/);
  } finally {
    session.close();
    await swarm.close();
  }
});
