/**
 * Joining, and who the cluster port lets in: real TLS on loopback against the real dispatcher.
 */
import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import { createNodeCSR, createRootCA, issueNodeCertificate, newJoinToken } from "./ca.ts";
import { join, runWorker, testSwarm, until } from "./_test_swarm.ts";
import { JoinError } from "./join.ts";
import { newId } from "../events/ids.ts";

Deno.test("a node joins with the worker token and gets a certificate for its new id", async () => {
  const swarm = await testSwarm();
  try {
    const before = swarm.log.lastIndex();
    const joined = await join(swarm, "a");
    assert.equal(joined.role, "worker");
    assert.equal(joined.clusterId, swarm.manager.state.cluster!.id);
    assert.equal(joined.credentials.ca, swarm.manager.state.cluster!.rootCA.certPem);
    assert.match(joined.credentials.key, /BEGIN PRIVATE KEY/);
    const node = swarm.manager.state.nodes.get(joined.nodeId)!;
    assert.equal(node.role, "worker");
    assert.equal(node.description.hostname, "a");
    assert.equal(node.status.state, "unknown");
    assert.equal(node.status.addr, "127.0.0.1");
    const [entry] = swarm.log.read(before + 1);
    assert.equal(entry.batch.by, "user:swarm.join");
    assert.equal(entry.batch.events[0].type, "NodeRegistered");
  } finally {
    await swarm.close();
  }
});

Deno.test("joins are refused with a clear error: wrong, rotated, manager, other swarm", async () => {
  const swarm = await testSwarm();
  try {
    const members = () => swarm.manager.state.nodes.size;
    const n = members();
    const digestOf = (token: string) => token.split("-")[2];
    // Right swarm, wrong secret.
    const wrong = `SWMTKN-1-${digestOf(swarm.workerToken())}-${"1".repeat(25)}`;
    await assert.rejects(join(swarm, "x", wrong), (err: JoinError) => {
      assert.equal(err.code, "invalid_token");
      assert.match(err.message, /A valid join token is necessary to join this cluster/);
      return true;
    });
    // A rotated token stops working at once; the new one works.
    const old = swarm.workerToken();
    await swarm.manager.execute({
      kind: "RotateJoinToken",
      role: "worker",
      token: newJoinToken(swarm.manager.state.cluster!.rootCA),
    }, { by: "user:swarm.rotate-worker-token" });
    await assert.rejects(join(swarm, "x", old), /A valid join token is necessary/);
    await join(swarm, "y");
    // The manager token, on a manager whose log is not replicated by Raft (a MemoryLog here,
    // as a data dir from before managers replicated): it cannot take managers.
    await assert.rejects(join(swarm, "x", swarm.managerToken()), (err: JoinError) => {
      assert.equal(err.code, "manager_join_unsupported");
      assert.match(err.message, /keeps its log without Raft/);
      return true;
    });
    // A token of another swarm: the CA pin fails before the token is sent.
    const other = await createRootCA({ clusterId: "other", now: Date.now() });
    await assert.rejects(
      join(swarm, "x", newJoinToken(other)),
      /presented a root CA \(sha256:[0-9a-f]{64}\) that does not match the join token/,
    );
    // Not a token at all.
    await assert.rejects(join(swarm, "x", "SWMTKN-1-nope"), /invalid join token/);
    assert.equal(members(), n + 1, "only the good join registered a node");
    assert.equal(
      swarm.logger.lines.filter((l) => /warn dispatcher: refused a join/.test(l)).length,
      3,
      "each refusal by the manager is logged",
    );
  } finally {
    await swarm.close();
  }
});

Deno.test("the cluster port refuses foreign certificates and plain TCP", async () => {
  const swarm = await testSwarm();
  const { port } = { port: Number(swarm.addr.split(":")[1]) };
  try {
    // A certificate from another CA, even with a valid-looking subject.
    const other = await createRootCA({
      clusterId: swarm.manager.state.cluster!.id,
      now: Date.now(),
    });
    const csr = await createNodeCSR();
    const rogue = await issueNodeCertificate({
      rootCA: other,
      csrPem: csr.csrPem,
      nodeId: newId(),
      role: "worker",
      clusterId: swarm.manager.state.cluster!.id,
      now: Date.now(),
    });
    const w = runWorker(swarm, {
      nodeId: "x",
      role: "worker",
      clusterId: "",
      managers: [swarm.addr],
      addr: "",
      credentials: {
        key: csr.keyPem,
        cert: rogue.certPem,
        ca: swarm.manager.state.cluster!.rootCA.certPem,
      },
    }, "rogue");
    await until("refused", () => w.refused.length === 1);
    assert.match(w.refused[0], /certificate_refused: refused: its certificate is not signed/);
    await w.stop();
    // Plain TCP: the TLS handshake fails, and the manager logs it.
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port }, () => s.write("GET / HTTP/1.0\r\n\r\n"));
      s.on("error", () => {});
      s.resume(); // read (and drop) the TLS alert, or the close never comes
      s.on("close", () => resolve());
    });
    await until(
      "logged",
      () =>
        swarm.logger.lines.some((l) =>
          /refused a connection( from 127\.0\.0\.1)?: TLS handshake failed/.test(l)
        ),
    );
    // TLS without a certificate may only join: anything else is refused.
    const reply = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
        const hello = new TextEncoder().encode("not a frame at all, but long enough");
        s.write(hello);
      });
      let got = "";
      s.on("data", (d: Uint8Array) => (got += new TextDecoder().decode(d)));
      s.on("error", () => {});
      s.on("close", () => resolve(got));
    });
    assert.match(reply, /BEGIN CERTIFICATE/, "it was shown the root CA, then cut off");
    assert.equal(swarm.manager.state.nodes.size, 1);
  } finally {
    await swarm.close();
  }
});
