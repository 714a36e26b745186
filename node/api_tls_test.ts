import assert from "node:assert/strict";
import { ClusterSpec } from "../events/schema.ts";
import { MemoryLog } from "../events/log.ts";
import { newId } from "../events/ids.ts";
import { Manager } from "../actors/manager.ts";
import { nodeDescription } from "../tests/_harness/events.ts";
import {
  createNodeCSR,
  createRootCA,
  issueNodeCertificate,
  newJoinToken,
  type RootCA,
} from "./ca.ts";
import { authorizeApiClient } from "./api_tls.ts";

function pemToDer(pem: string): Uint8Array {
  const body = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

async function certFor(
  root: RootCA,
  clusterId: string,
  nodeId: string,
  role: "manager" | "worker",
) {
  const csr = await createNodeCSR({ nodeId });
  const issued = await issueNodeCertificate({
    rootCA: root,
    csrPem: csr.csrPem,
    nodeId,
    role,
    clusterId,
    now: Date.now(),
  });
  return pemToDer(issued.certPem);
}

Deno.test("authorizeApiClient: a current manager's certificate only, each refusal says why", async () => {
  const manager = new Manager({ log: new MemoryLog() });
  await manager.start();
  await manager.setLeader(true);
  try {
    const clusterId = newId();
    const first = newId();
    const root = await createRootCA({ clusterId, now: Date.now() });
    await manager.execute({
      kind: "InitCluster",
      clusterId,
      spec: ClusterSpec.parse({}),
      rootCA: root,
      joinTokens: { worker: newJoinToken(root), manager: newJoinToken(root) },
      node: { id: first, description: nodeDescription("m"), addr: "127.0.0.1" },
    }, { by: "test" });
    const worker = newId();
    await manager.propose([{
      type: "NodeRegistered",
      v: 1,
      data: {
        id: worker,
        description: nodeDescription("w"),
        spec: { name: "", labels: {}, desiredRole: "worker", availability: "active" },
        role: "worker",
        addr: "127.0.0.2",
      },
      meta: { by: "test", reason: "test" },
    }], "test");
    const now = Date.now();
    assert.equal(
      await authorizeApiClient(manager, await certFor(root, clusterId, first, "manager"), now),
      undefined,
    );
    assert.match(
      (await authorizeApiClient(manager, undefined, now))!,
      /^a client certificate is required/,
    );
    assert.equal(
      await authorizeApiClient(manager, await certFor(root, clusterId, worker, "worker"), now),
      `node ${worker} presented a worker certificate: only managers may use the API`,
    );
    // A manager certificate for a node the swarm does not know (removed), or that is a worker now.
    const gone = newId();
    assert.equal(
      await authorizeApiClient(manager, await certFor(root, clusterId, gone, "manager"), now),
      `node ${gone} is not a member of this swarm (removed?): its certificate no longer opens the API`,
    );
    assert.equal(
      await authorizeApiClient(manager, await certFor(root, clusterId, worker, "manager"), now),
      `node ${worker} is no longer a manager: its certificate no longer opens the API`,
    );
    const other = await createRootCA({ clusterId, now: Date.now() });
    assert.match(
      (await authorizeApiClient(manager, await certFor(other, clusterId, first, "manager"), now))!,
      /^the client certificate is refused: invalid node certificate: not signed by this cluster's root CA/,
    );
  } finally {
    await manager.stop();
  }
});
