/**
 * A manager asking another for a task's output (`ManagerLogLink` to a real dispatcher over TLS
 * on loopback): every line arrives in order through the flow control, a reader that stops early
 * ends the serving manager's read, errors name the task and manager, and only manager
 * certificates are served.
 */
import assert from "node:assert/strict";
import type { LogLine } from "../actors/agent/log_capture.ts";
import type { TaskRecord } from "../actors/state.ts";
import { ServiceSpec } from "../events/schema.ts";
import { join, runningByNode, runWorker, type TestSwarm, testSwarm, until } from "./_test_swarm.ts";
import { LOG_CHUNK_LINES } from "./agent_protocol.ts";
import { createNodeCSR, issueNodeCertificate, trustBundle } from "./ca.ts";
import type { Credentials } from "./identity.ts";
import { ManagerLogLink } from "./manager_logs.ts";
import type { TaskLogOptions } from "./task_logs.ts";

/** Manager credentials for node `nodeId` of `swarm`. */
async function managerCredentials(swarm: TestSwarm, nodeId: string): Promise<Credentials> {
  const cluster = swarm.manager.state.cluster!;
  const csr = await createNodeCSR({ nodeId });
  const cert = await issueNodeCertificate({
    rootCA: cluster.rootCA,
    csrPem: csr.csrPem,
    nodeId,
    role: "manager",
    clusterId: cluster.id,
    now: Date.now(),
  });
  return { key: csr.keyPem, cert: cert.certPem, ca: trustBundle(cluster.rootCA) };
}

function link(swarm: TestSwarm, credentials: Credentials): ManagerLogLink {
  return new ManagerLogLink({
    nodeId: "asking",
    state: () => swarm.manager.state,
    leaderAddr: () => swarm.addr,
    credentials: () => credentials,
  });
}

Deno.test("ManagerLogLink: another manager serves a task's output with its own source", async () => {
  const total = 4 * LOG_CHUNK_LINES;
  const reads: { task: TaskRecord; options: TaskLogOptions }[] = [];
  let finished = 0;
  const swarm = await testSwarm(5_000, {
    taskLogs: (task, options) => {
      reads.push({ task, options });
      return (async function* (): AsyncGenerator<LogLine> {
        try {
          for (let i = 0; i < total && !options.signal?.aborted; i++) {
            yield { time: i, stream: i % 2 ? "stderr" : "stdout", text: `${task.id} ${i}` };
          }
          if (options.follow) {
            await new Promise((r) => options.signal?.addEventListener("abort", r));
          }
        } finally {
          finished++;
        }
      })();
    },
  });
  const worker = runWorker(swarm, await join(swarm, "w"), "w");
  const asker = link(swarm, await managerCredentials(swarm, swarm.managerId));
  try {
    await swarm.manager.execute({
      kind: "CreateService",
      spec: ServiceSpec.parse({
        name: "web",
        task: { runtime: { kind: "process", command: "/bin/app" } },
        mode: { kind: "replicated", replicas: 1 },
      }),
    }, { by: "user" });
    await until("web runs", () => runningByNode(swarm.manager, "web").get(worker.joined.nodeId));
    const task = [...swarm.manager.state.tasks.values()].find((t) => t.nodeId !== "")!;
    assert.equal(task.nodeId, worker.joined.nodeId);
    // A worker's task: the leader is asked (it holds the worker's session).
    assert.equal(asker.managerFor(task)?.addr, swarm.addr);

    let expected = 0;
    for await (const line of asker.read(task, { tail: 9, since: 4 })) {
      assert.equal(line.text, `${task.id} ${expected}`);
      assert.equal(line.stream, expected % 2 ? "stderr" : "stdout");
      expected++;
    }
    assert.equal(expected, total, "every line, in order");
    assert.equal(reads[0].task.id, task.id);
    assert.deepEqual(
      [reads[0].options.tail, reads[0].options.since, reads[0].options.follow],
      [9, 4, false],
    );

    // A follower that stops early ends the serving manager's read.
    const abort = new AbortController();
    const follow = asker.read(task, { follow: true, tail: 1, signal: abort.signal });
    assert.equal((await follow.next()).value?.text, `${task.id} 0`);
    await follow.return(undefined);
    await until("the served read ends", () => finished === 2);
    assert.equal(asker.openStreams, 0);

    // A task the serving manager does not know: the error names it and the manager.
    await assert.rejects(
      asker.read({ ...task, id: "nosuchtask" }, {}).next(),
      new RegExp(
        `asking manager .* for the logs of task nosuchtask on node ${task.nodeId}: .*task nosuchtask is not known to manager ${swarm.managerId}`,
      ),
    );
  } finally {
    asker.close();
    await worker.stop();
    await swarm.close();
  }
});

Deno.test("ManagerLogLink: a worker certificate is refused, and a manager without a source says so", async () => {
  const swarm = await testSwarm();
  const joined = await join(swarm, "w");
  const byWorker = link(swarm, joined.credentials);
  const byManager = link(swarm, await managerCredentials(swarm, swarm.managerId));
  try {
    const task = { id: "t1", nodeId: joined.nodeId } as TaskRecord;
    await assert.rejects(
      byWorker.read(task, {}).next(),
      /logs of task t1 .*presented a worker certificate: only managers may ask a manager for tasks' logs/,
    );
    await assert.rejects(
      byManager.read(task, {}).next(),
      new RegExp(`manager ${swarm.managerId} does not serve tasks' logs`),
    );
  } finally {
    byWorker.close();
    byManager.close();
    await swarm.close();
  }
});

Deno.test("ManagerLogLink: a manager's task is asked of that manager, none when it is this one", () => {
  const state = {
    nodes: new Map([
      ["m1", { id: "m1", role: "manager", managerStatus: { addr: "10.0.0.1:2377" } }],
      ["m2", { id: "m2", role: "manager", managerStatus: { addr: "10.0.0.2:2377" } }],
      ["w1", { id: "w1", role: "worker" }],
    ]),
  };
  const make = (leader: string | undefined) =>
    new ManagerLogLink({
      nodeId: "m2",
      state: () => state as never,
      leaderAddr: () => leader,
      credentials: () => ({ key: "", cert: "", ca: "" }),
    });
  const task = (nodeId: string) => ({ id: "t", nodeId }) as TaskRecord;
  const follower = make("10.0.0.1:2377");
  assert.deepEqual(follower.managerFor(task("m1")), { id: "m1", addr: "10.0.0.1:2377" });
  assert.equal(follower.managerFor(task("m2")), undefined, "its own task: read locally");
  assert.deepEqual(follower.managerFor(task("w1")), { id: "m1", addr: "10.0.0.1:2377" });
  const leader = make(undefined);
  assert.equal(leader.managerFor(task("w1")), undefined, "the leader holds workers' sessions");
  assert.deepEqual(leader.managerFor(task("m1")), { id: "m1", addr: "10.0.0.1:2377" });
});
