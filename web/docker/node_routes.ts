/**
 * Docker's node endpoints: `/nodes`, `/nodes/{id}`, `/nodes/{id}/update`.
 *
 * @module
 */
import { resolveNode } from "../../actors/entities/node.ts";
import { nodeName } from "../../actors/state.ts";
import { boolParam, empty, json, optionalIntParam, readJson } from "../http.ts";
import type { Router } from "../router.ts";
import { tlsInfo } from "./cluster_json.ts";
import { type DockerApiContext, requireSwarm, run } from "./context.ts";
import { Filters } from "./filters.ts";
import { nodeSpecFromDocker, nodeToDocker, type TlsInfo } from "./node_json.ts";
import type { ClusterRecord, NodeRecord } from "../../actors/state.ts";

const NODE_FILTERS = ["id", "label", "node.label", "membership", "name", "role"];

/** Adds the node routes. */
export function addNodeRoutes(router: Router, ctx: DockerApiContext): void {
  const state = () => ctx.manager.state;

  router.get("/nodes", ({ url }) => {
    const cluster = requireSwarm(ctx);
    const f = Filters.fromUrl(url, NODE_FILTERS);
    const tls = tlsInfo(currentRootOnly(cluster));
    const out = [];
    for (const n of state().nodes.values()) {
      if (
        !f.prefix("id", n.id) || !f.prefix("name", nodeName(n)) || !f.exact("role", n.role) ||
        !f.exact("membership", "accepted") || !f.labels("label", n.description.engine.labels) ||
        !f.labels("node.label", n.spec.labels)
      ) continue;
      out.push(nodeToDocker(n, nodeTls(n, tls)));
    }
    return json(out);
  });

  router.get("/nodes/{id}", ({ params }) => {
    const cluster = requireSwarm(ctx);
    const node = resolveNode(state(), params.id);
    return json(nodeToDocker(node, nodeTls(node, tlsInfo(currentRootOnly(cluster)))));
  });

  router.delete("/nodes/{id}", async ({ url, params }) => {
    requireSwarm(ctx);
    const node = resolveNode(state(), params.id);
    await run(
      ctx,
      { kind: "RemoveNode", node: node.id, force: boolParam(url, "force") },
      "node.rm",
    );
    return empty(200);
  });

  router.post("/nodes/{id}/update", async ({ req, url, params }) => {
    requireSwarm(ctx);
    const node = resolveNode(state(), params.id);
    const version = optionalIntParam(url, "version");
    const spec = nodeSpecFromDocker(await readJson(req), node);
    await run(ctx, { kind: "UpdateNode", node: node.id, spec, version }, "node.update");
    return empty(200);
  });
}

/**
 * A node's `TLSInfo`: what it reported (the roots it trusts, the root that signed its
 * certificate), else `fallback`, the swarm's root before any rotation (a node that has not
 * reported since it joined holds a certificate of it).
 */
function nodeTls(node: NodeRecord, fallback: TlsInfo): TlsInfo {
  const t = node.description.tlsInfo;
  if (t === undefined) return fallback;
  return {
    TrustRoot: t.trustRoot.endsWith("\n") ? t.trustRoot : t.trustRoot + "\n",
    CertIssuerSubject: t.certIssuerSubject,
    CertIssuerPublicKey: t.certIssuerPublicKey,
  };
}

/** The swarm as if no rotation were under way: its current root signs. */
function currentRootOnly(cluster: ClusterRecord): ClusterRecord {
  if (cluster.rootCA.rotation === undefined) return cluster;
  const { rotation: _, ...rootCA } = cluster.rootCA;
  return { ...cluster, rootCA };
}
