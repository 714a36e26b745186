/**
 * The leader checks what a following manager forwards (`forward` requests on the cluster
 * port): whole events against the schema, and a known command kind, before anything reaches
 * the log. Real dispatcher on loopback, a real manager certificate.
 */
import assert from "node:assert/strict";
import { createNodeCSR, issueNodeCertificate } from "./ca.ts";
import { dialManager, FrameConnection } from "./agent_protocol.ts";
import { type TestSwarm, testSwarm } from "./_test_swarm.ts";

/** Sends one forward request with a manager certificate of `swarm`'s node; returns the answer. */
async function forward(
  swarm: TestSwarm,
  request: Record<string, unknown>,
): Promise<{ t: string; result?: unknown; error?: { code?: string; message: string } }> {
  const cluster = swarm.manager.state.cluster!;
  const csr = await createNodeCSR({ nodeId: swarm.managerId });
  const cert = await issueNodeCertificate({
    rootCA: cluster.rootCA,
    csrPem: csr.csrPem,
    nodeId: swarm.managerId,
    role: "manager",
    clusterId: cluster.id,
    now: Date.now(),
  });
  const socket = dialManager(swarm.addr, {
    key: csr.keyPem,
    cert: cert.certPem,
    ca: cluster.rootCA.certPem,
  });
  return await new Promise((resolve, reject) => {
    const conn: FrameConnection = new FrameConnection(socket, {
      onMessage: (m) => {
        resolve(m as Awaited<ReturnType<typeof forward>>);
        conn.close("done");
      },
      onClose: (why) => reject(new Error(why)),
    });
    socket.once("secureConnect", () => conn.send({ t: "forward", seq: 1, ...request }));
  });
}

Deno.test("the leader refuses forwarded events that do not match the schema", async () => {
  const swarm = await testSwarm();
  try {
    const before = swarm.manager.state.index;
    const answer = await forward(swarm, {
      op: "propose",
      events: [{
        type: "NodeStatusChanged",
        v: 1,
        data: { id: swarm.managerId, status: { state: "on fire", message: "", addr: "x" } },
        meta: { by: "dispatcher", reason: "test" },
      }],
      by: "manager:test",
    });
    assert.equal(answer.t, "forwarded");
    assert.equal(answer.error?.code, "bad_request");
    assert.match(
      answer.error!.message,
      /invalid forwarded request: events\.0\.data\.status\.state/,
    );
    assert.equal(swarm.manager.state.index, before, "nothing reached the log");
  } finally {
    await swarm.close();
  }
});

Deno.test("the leader refuses a forwarded command of an unknown kind, and runs a known one", async () => {
  const swarm = await testSwarm();
  try {
    const unknown = await forward(swarm, {
      op: "execute",
      command: { kind: "DropEverything" },
      by: "user:test",
    });
    assert.equal(unknown.error?.code, "bad_request");
    assert.match(unknown.error!.message, /invalid forwarded request: command\.kind/);

    const token = swarm.workerToken();
    const known = await forward(swarm, {
      op: "execute",
      command: { kind: "RotateJoinToken", role: "worker" },
      by: "user:test",
    });
    assert.equal(known.error, undefined, JSON.stringify(known.error));
    assert.notEqual(swarm.workerToken(), token, "the forwarded command was carried out");
  } finally {
    await swarm.close();
  }
});
