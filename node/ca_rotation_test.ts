import assert from "node:assert/strict";
import * as tls from "node:tls";
import type { AddressInfo } from "node:net";
import {
  CertificateError,
  certificatePublicKey,
  createNodeCSR,
  createRootCA,
  crossSignRootCA,
  desiredIssuerDigest,
  finishRootRotation,
  issueWithSwarmCA,
  MANAGER_OU,
  newJoinToken,
  nodeTlsInfo,
  parseJoinToken,
  type RotatingRootCA,
  startRootRotation,
  trustBundle,
  verifyNodeCertificate,
} from "./ca.ts";
import { ClusterSpec } from "../events/schema.ts";
import { MemoryLog } from "../events/log.ts";
import { newId } from "../events/ids.ts";
import { Manager } from "../actors/manager.ts";
import { nodeDescription } from "../tests/_harness/events.ts";
import { readCredentials, writeCredentials } from "./identity.ts";
import { RootRotation, rotateRootCA, unconvergedNodes } from "./ca_rotation.ts";

const CLUSTER = "7w1n0c3kxb5q1ylh4lpm1z2f8";

async function issue(
  ca: RotatingRootCA,
  nodeId: string,
  role: "manager" | "worker",
  clusterId = CLUSTER,
) {
  const csr = await createNodeCSR({ nodeId });
  const issued = await issueWithSwarmCA(ca, {
    csrPem: csr.csrPem,
    nodeId,
    role,
    clusterId,
    now: Date.now(),
  });
  return { keyPem: csr.keyPem, certPem: issued.certPem };
}

function count(pem: string): number {
  return pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
}

Deno.test("startRootRotation: a new root, cross-signed by the current one", async () => {
  const old = await createRootCA({ clusterId: CLUSTER, now: Date.now() });
  const rotating = await startRootRotation(old, { clusterId: CLUSTER, now: Date.now() });
  assert.equal(rotating.certPem, old.certPem);
  assert.equal(rotating.keyPem, old.keyPem);
  assert.equal(rotating.lastForcedRotation, 1);
  const r = rotating.rotation!;
  assert.notEqual(r.digest, old.digest);
  assert.equal(desiredIssuerDigest(rotating), r.digest);
  // The cross-signed copy carries the new root's key, and the old root signed it.
  assert.equal(certificatePublicKey(r.crossSignedPem), certificatePublicKey(r.certPem));
  const viaOld = await nodeTlsInfo(r.crossSignedPem, old.certPem);
  assert.equal(viaOld.certIssuerPublicKey, certificatePublicKey(old.certPem));
  // Trust: both roots while rotating, the new alone once finished.
  assert.equal(count(trustBundle(rotating)), 2);
  const done = finishRootRotation(rotating);
  assert.deepEqual(done, {
    certPem: r.certPem,
    keyPem: r.keyPem,
    digest: r.digest,
    lastForcedRotation: 1,
  });
  assert.equal(trustBundle(done), r.certPem);
  assert.throws(() => finishRootRotation(done), /no root rotation is under way/);
  // A second rotation counts up.
  assert.equal(
    (await startRootRotation(done, { clusterId: CLUSTER, now: Date.now() })).lastForcedRotation,
    2,
  );
});

Deno.test("certificates issued during a rotation verify against the old root, the new, and both", async () => {
  const old = await createRootCA({ clusterId: CLUSTER, now: Date.now() });
  const rotating = await startRootRotation(old, { clusterId: CLUSTER, now: Date.now() });
  const node = await issue(rotating, "n0000000000000000000000001", "worker");
  assert.equal(count(node.certPem), 2, "the node certificate, then the cross-signed root");
  const now = Date.now();
  for (
    const [what, roots] of [
      ["old root only", old.certPem],
      ["new root only", rotating.rotation!.certPem],
      ["both", trustBundle(rotating)],
    ] as const
  ) {
    const id = await verifyNodeCertificate({
      rootCA: { certPem: roots },
      certPem: node.certPem,
      now,
    });
    assert.equal(id.nodeId, "n0000000000000000000000001", what);
  }
  // Issued by the new root: that is what the node reports.
  const info = await nodeTlsInfo(node.certPem, trustBundle(rotating));
  assert.equal(info.certIssuerPublicKey, certificatePublicKey(rotating.rotation!.certPem));

  // Without the intermediate, the old root alone does not accept it.
  const leafOnly = node.certPem.slice(0, node.certPem.indexOf("-----END CERTIFICATE-----") + 25);
  await assert.rejects(
    verifyNodeCertificate({ rootCA: { certPem: old.certPem }, certPem: leafOnly, now }),
    (err: Error) => err instanceof CertificateError && err.code === "untrusted",
  );
  // An old certificate still verifies against both roots during the rotation, and is refused
  // once the old root is dropped.
  const before = await issue(old, "n0000000000000000000000002", "worker");
  await verifyNodeCertificate({
    rootCA: { certPem: trustBundle(rotating) },
    certPem: before.certPem,
    now,
  });
  await assert.rejects(
    verifyNodeCertificate({
      rootCA: { certPem: trustBundle(finishRootRotation(rotating)) },
      certPem: before.certPem,
      now,
    }),
    (err: Error) => err instanceof CertificateError && err.code === "untrusted",
  );
  // An intermediate that some other root signed does not help.
  const stranger = await createRootCA({ clusterId: CLUSTER, now: Date.now() });
  const forged = await crossSignRootCA({
    signer: stranger,
    newRootPem: rotating.rotation!.certPem,
  });
  await assert.rejects(
    verifyNodeCertificate({
      rootCA: { certPem: old.certPem },
      certPem: leafOnly + "\n" + forged,
      now,
    }),
    (err: Error) => err instanceof CertificateError && err.code === "untrusted",
  );
});

/** Opens a TLS connection and says whether both sides accepted each other. */
async function handshake(
  server: { key: string; cert: string; ca: string },
  client: { key: string; cert: string; ca: string },
): Promise<{ client: boolean; server: boolean; error?: string }> {
  let serverAuthorized = false;
  const accepted = Promise.withResolvers<void>();
  const srv = tls.createServer({
    key: server.key,
    cert: server.cert,
    ca: server.ca,
    requestCert: true,
    rejectUnauthorized: false,
  }, (socket) => {
    serverAuthorized = socket.authorized;
    socket.on("error", () => {});
    socket.end("ok\n");
    accepted.resolve();
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as AddressInfo;
  try {
    const result = await new Promise<{ client: boolean; error?: string }>((resolve) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port,
        key: client.key,
        cert: client.cert,
        ca: client.ca,
        servername: MANAGER_OU,
        rejectUnauthorized: true,
      }, () => {
        resolve({ client: socket.authorized });
        socket.on("data", () => {});
      });
      socket.on("error", (err: Error) => resolve({ client: false, error: err.message }));
    });
    if (result.client) await accepted.promise;
    return { ...result, server: serverAuthorized };
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}

Deno.test("node:tls: during a rotation, old-root nodes and new-root nodes accept each other", async () => {
  const old = await createRootCA({ clusterId: CLUSTER, now: Date.now() });
  const rotating = await startRootRotation(old, { clusterId: CLUSTER, now: Date.now() });
  const oldManager = await issue(old, "m0000000000000000000000001", "manager");
  const newManager = await issue(rotating, "m0000000000000000000000002", "manager");
  const newWorker = await issue(rotating, "w0000000000000000000000001", "worker");
  const oldWorker = await issue(old, "w0000000000000000000000002", "worker");
  const bundle = trustBundle(rotating);

  // A worker that trusts only the old root reaches a manager whose certificate the new root signed.
  const a = await handshake(
    { key: newManager.keyPem, cert: newManager.certPem, ca: bundle },
    { key: oldWorker.keyPem, cert: oldWorker.certPem, ca: old.certPem },
  );
  assert.deepEqual(a, { client: true, server: true });
  // A renewed worker reaches a manager that has not renewed yet and trusts only the old root.
  const b = await handshake(
    { key: oldManager.keyPem, cert: oldManager.certPem, ca: old.certPem },
    { key: newWorker.keyPem, cert: newWorker.certPem, ca: bundle },
  );
  assert.deepEqual(b, { client: true, server: true });
  // Once finished, a node of the old root is refused.
  const done = trustBundle(finishRootRotation(rotating));
  const c = await handshake(
    { key: newManager.keyPem, cert: newManager.certPem, ca: done },
    { key: oldWorker.keyPem, cert: oldWorker.certPem, ca: bundle },
  );
  assert.equal(c.server, false, "the manager refuses a certificate of the dropped root");
});

// ---------------------------------------------------------------------------------------------
// The rotation in the log, and the managers' side of it (node/ca_rotation.ts)

async function until(what: string, test: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("RootRotation: managers renew, the leader ends the rotation once every node has", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-rot-" });
  const manager = new Manager({ log: new MemoryLog() });
  await manager.start();
  await manager.setLeader(true);
  const clusterId = newId();
  const managerId = newId();
  const workerId = newId();
  const root = await createRootCA({ clusterId, now: Date.now() });
  const tokens = { worker: newJoinToken(root), manager: newJoinToken(root) };
  await manager.execute({
    kind: "InitCluster",
    clusterId,
    spec: ClusterSpec.parse({}),
    rootCA: root,
    joinTokens: tokens,
    node: { id: managerId, description: nodeDescription("m"), addr: "127.0.0.1" },
  }, { by: "user:swarm.init" });
  await manager.propose([{
    type: "NodeRegistered",
    v: 1,
    data: {
      id: workerId,
      description: nodeDescription("w"),
      spec: { name: "", labels: {}, desiredRole: "worker", availability: "active" },
      role: "worker",
      addr: "127.0.0.2",
    },
    meta: { by: "test", reason: "test" },
  }], "test");
  const mine = await issue(root, managerId, "manager", clusterId);
  await writeCredentials(dataDir, { key: mine.keyPem, cert: mine.certPem, ca: root.certPem });
  const renewed: string[] = [];
  const follower = new RootRotation({
    manager,
    nodeId: managerId,
    dataDir,
    debounceMs: 10,
    onCredentials: (c) => renewed.push(c.cert),
  });
  follower.start();
  try {
    // Before any rotation the manager reports its TLS info, and renews nothing.
    await until(
      "the manager's tlsInfo",
      () => manager.state.nodes.get(managerId)?.description.tlsInfo !== undefined,
    );
    assert.deepEqual(renewed, []);
    assert.deepEqual(unconvergedNodes(manager.state), [workerId]);

    const digest = await rotateRootCA(manager, "user:swarm.ca-rotate");
    const rotating = manager.state.cluster!.rootCA;
    assert.equal(rotating.rotation?.digest, digest);
    assert.equal(rotating.digest, root.digest, "the old root stays current meanwhile");
    assert.deepEqual(manager.state.cluster!.joinTokens, tokens, "tokens stay until the end");

    // The manager renews itself with the new root (and its chain), and trusts both roots.
    await until("the manager's renewal", () => renewed.length === 1);
    const creds = (await readCredentials(dataDir))!;
    assert.equal(creds.ca, trustBundle(rotating));
    assert.equal(count(creds.cert), 2);
    await until("the manager reported", () => !unconvergedNodes(manager.state).includes(managerId));
    // The worker has not renewed: the rotation waits for it.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(manager.state.cluster!.rootCA.rotation?.digest, digest);
    assert.deepEqual(unconvergedNodes(manager.state), [workerId]);

    // The worker renews (as its dispatcher session would have it) and reports.
    const workerCert = await issue(rotating, workerId, "worker", clusterId);
    const info = await nodeTlsInfo(workerCert.certPem, trustBundle(rotating));
    const node = manager.state.nodes.get(workerId)!;
    await manager.propose([{
      type: "NodeDescriptionUpdated",
      v: 1,
      data: { id: workerId, description: { ...node.description, tlsInfo: { ...info } } },
      meta: { by: "test", reason: "test" },
    }], "test");
    await until("the rotation's end", () => manager.state.cluster!.rootCA.rotation === undefined);
    const done = manager.state.cluster!;
    assert.equal(done.rootCA.digest, digest);
    assert.equal(done.rootCA.certPem, rotating.rotation!.certPem);
    for (const role of ["worker", "manager"] as const) {
      assert.notEqual(done.joinTokens[role], tokens[role]);
      assert.equal(parseJoinToken(done.joinTokens[role]).caDigest, digest);
    }
    // The manager now trusts the new root alone.
    await until(
      "the manager trusting the new root alone",
      () =>
        manager.state.nodes.get(managerId)?.description.tlsInfo?.trustRoot === done.rootCA.certPem,
    );
    assert.equal((await readCredentials(dataDir))!.ca, done.rootCA.certPem);
    assert.equal(renewed.length, 2, "the second change is the trust bundle, not a new certificate");

    // A finish for a rotation that is not under way is refused.
    await assert.rejects(
      manager.execute({
        kind: "RotateRootCA",
        rootCA: done.rootCA,
        finishes: digest,
        joinTokens: tokens,
      }, { by: "test" }),
      /cannot finish the root rotation to [0-9a-f]{12}: none is under way/,
    );
  } finally {
    await follower.stop();
    await manager.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
