/**
 * The worker node over its data dir: stored identity, certificate renewal before expiry, leave.
 */
import assert from "node:assert/strict";
import { join, testSwarm, until } from "./_test_swarm.ts";
import {
  certificateValidity,
  createNodeCSR,
  issueNodeCertificate,
  MIN_NODE_CERT_EXPIRY_MS,
  verifyNodeCertificate,
} from "./ca.ts";
import { credentialPaths, readCredentials, writeCredentials, writeNodeConfig } from "./identity.ts";
import { leaveStoppedWorker, startWorker } from "./worker.ts";

const MINUTE = 60_000;

Deno.test("a worker renews a certificate due for renewal, stores it, and reconnects with it", async () => {
  const swarm = await testSwarm();
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-worker-" });
  try {
    const joined = await join(swarm, "a");
    // A certificate issued 55 minutes ago for the shortest validity (1 h): past its renewal
    // point (50-80 % of notBefore..notAfter, notBefore being backdated 1 h), 5 minutes to go.
    const cluster = swarm.manager.state.cluster!;
    const csr = await createNodeCSR({ nodeId: joined.nodeId });
    const old = await issueNodeCertificate({
      rootCA: cluster.rootCA,
      csrPem: csr.csrPem,
      nodeId: joined.nodeId,
      role: "worker",
      clusterId: cluster.id,
      now: Date.now() - 55 * MINUTE,
      expiryMs: MIN_NODE_CERT_EXPIRY_MS,
    });
    await writeCredentials(dataDir, {
      key: csr.keyPem,
      cert: old.certPem,
      ca: cluster.rootCA.certPem,
    });
    await writeNodeConfig(dataDir, {
      nodeId: joined.nodeId,
      role: "worker",
      clusterId: cluster.id,
      managers: [swarm.addr],
    });
    const worker = await startWorker({ dataDir, docker: false, logger: swarm.logger });
    try {
      let creds = await readCredentials(dataDir);
      const deadline = Date.now() + 10_000;
      while (creds!.cert === old.certPem) {
        assert.ok(Date.now() < deadline, "no renewed certificate on disk in 10 s");
        await new Promise((r) => setTimeout(r, 20));
        creds = await readCredentials(dataDir);
      }
      const id = await verifyNodeCertificate({
        rootCA: cluster.rootCA,
        certPem: creds!.cert,
        now: Date.now(),
      });
      assert.equal(id.nodeId, joined.nodeId);
      assert.equal(id.role, "worker");
      const days = (id.notAfter - Date.now()) / 86_400_000;
      assert.ok(days > 89 && days <= 90, `valid for ${days} days (the swarm's cert expiry)`);
      assert.notEqual(creds!.key, csr.keyPem, "a new key with the new certificate");
      assert.equal((await Deno.stat(credentialPaths(dataDir).key)).mode! & 0o777, 0o600);
      assert.equal(
        (await Deno.stat(`${dataDir}/certificates`)).mode! & 0o777,
        0o700,
        "the certificate directory is private",
      );
      // The session reconnects with the new certificate; the next renewal is months away.
      await until(
        "a session with the new certificate",
        () => worker.session.connected && worker.credentials().cert === creds!.cert,
      );
      const { notBefore, notAfter } = certificateValidity(worker.credentials().cert);
      assert.ok(notAfter - notBefore > 89 * 86_400_000);
      assert.ok(swarm.logger.lines.some((l) => /renewed the certificate of node/.test(l)));
    } finally {
      await worker.close();
    }
    // Closing told the manager: the node is down at once, not after three heartbeats.
    const node = swarm.manager.state.nodes.get(joined.nodeId)!;
    assert.equal(node.status.state, "down");
    assert.equal(node.status.message, "node shut down");
  } finally {
    await swarm.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a worker leaves: down in the swarm, its swarm state gone from the data dir", async () => {
  const swarm = await testSwarm();
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-worker-" });
  try {
    const joined = await join(swarm, "a");
    await writeCredentials(dataDir, joined.credentials);
    await writeNodeConfig(dataDir, {
      nodeId: joined.nodeId,
      role: "worker",
      clusterId: joined.clusterId,
      managers: joined.managers,
    });
    const worker = await startWorker({ dataDir, docker: false });
    await worker.agentStarted;
    assert.equal(worker.info().Swarm.LocalNodeState, "active");
    assert.equal(worker.info().Swarm.NodeAddr, "127.0.0.1");
    await worker.leave(false);
    const node = swarm.manager.state.nodes.get(joined.nodeId)!;
    assert.equal(node.status.state, "down");
    assert.equal(node.status.message, "node left the swarm");
    const [last] = swarm.log.read(swarm.log.lastIndex());
    assert.equal(last.batch.by, "user:swarm.leave");
    const left = [...Deno.readDirSync(dataDir)].map((e) => e.name);
    assert.deepEqual(left, [], "node.json and the certificates are gone");
    // Leaving a stopped worker of a gone manager: refused without --force, done with it.
    await writeCredentials(dataDir, joined.credentials);
    await writeNodeConfig(dataDir, {
      nodeId: joined.nodeId,
      role: "worker",
      clusterId: joined.clusterId,
      managers: ["127.0.0.1:1"],
    });
    await assert.rejects(
      leaveStoppedWorker(dataDir, false, 300),
      /cannot reach a manager.*--force/,
    );
    await leaveStoppedWorker(dataDir, true, 300);
    assert.deepEqual([...Deno.readDirSync(dataDir)], []);
  } finally {
    await swarm.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
