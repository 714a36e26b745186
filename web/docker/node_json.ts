/**
 * Nodes as Docker's API shows them (v1.41 `swarm.Node`), and Docker's `NodeSpec` as a request
 * body (`POST /nodes/{id}/update`).
 *
 * Shoal adds `Description.Runtimes`: the runtimes the node's agent offers (`process`,
 * `container`).
 *
 * @module
 */
import { z } from "zod";
import type { NodeSpec } from "../../events/schema.ts";
import type { NodeRecord } from "../../actors/state.ts";
import { parseWith } from "../http.ts";
import { compact, meta, nonBlank, nonEmptyMap, nonZero, OptLabels, OptString } from "./fields.ts";

/** Docker's `NodeSpec`, as a request body. */
export const DockerNodeSpec = z.strictObject({
  Name: OptString,
  Labels: OptLabels,
  Role: z.enum(["worker", "manager"], { error: 'must be "worker" or "manager"' }).nullish(),
  Availability: z.enum(["active", "pause", "drain"], {
    error: 'must be "active", "pause" or "drain"',
  }).nullish(),
});

/**
 * Converts a Docker node spec into Shoal's. As in Docker the spec replaces the node's; a role or
 * availability left out keeps the node's current one.
 */
export function nodeSpecFromDocker(body: unknown, current: NodeRecord): NodeSpec {
  const d = parseWith(DockerNodeSpec, body ?? {}, "node spec");
  return {
    name: d.Name ?? "",
    labels: d.Labels ?? {},
    desiredRole: d.Role ?? current.spec.desiredRole,
    availability: d.Availability ?? current.spec.availability,
  };
}

/** The CA's certificate as Docker shows it in `Description.TLSInfo` and the swarm's `TLSInfo`. */
export interface TlsInfo {
  TrustRoot: string;
  CertIssuerSubject: string;
  CertIssuerPublicKey: string;
}

/** A node as Docker's `GET /nodes/{id}` shows it. */
export function nodeToDocker(node: NodeRecord, tls?: TlsInfo) {
  const d = node.description;
  return compact({
    ...meta(node),
    Spec: compact({
      Name: nonBlank(node.spec.name),
      Labels: { ...node.spec.labels },
      Role: node.spec.desiredRole,
      Availability: node.spec.availability,
    }),
    Description: compact({
      Hostname: d.hostname,
      Platform: { Architecture: d.platform.architecture, OS: d.platform.os },
      Resources: compact({
        NanoCPUs: nonZero(d.resources.nanoCPUs),
        MemoryBytes: nonZero(d.resources.memoryBytes),
      }),
      Engine: compact({
        EngineVersion: nonBlank(d.engine.engineVersion),
        Labels: nonEmptyMap(d.engine.labels),
      }),
      TLSInfo: tls,
      Runtimes: [...d.runtimes],
    }),
    Status: compact({
      State: node.status.state,
      Message: nonBlank(node.status.message),
      Addr: nonBlank(node.status.addr),
    }),
    ManagerStatus: node.managerStatus && compact({
      Leader: node.managerStatus.leader || undefined,
      Reachability: node.managerStatus.reachability,
      Addr: node.managerStatus.addr,
    }),
  });
}
