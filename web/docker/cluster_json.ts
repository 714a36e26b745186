/**
 * The swarm as Docker's API shows it (`GET /swarm`, and `Swarm.Cluster` in `GET /info`), and
 * Docker's swarm `Spec` as a request body (`POST /swarm/update`).
 *
 * @module
 */
import "reflect-metadata"; // tsyringe (under @peculiar/x509) needs Reflect.getMetadata
import * as x509 from "@peculiar/x509";
import { z } from "zod";
import { ClusterSpec } from "../../events/schema.ts";
import type { ClusterRecord } from "../../actors/state.ts";
import { ApiError, describeIssues, parseWith } from "../http.ts";
import {
  compact,
  Duration,
  meta,
  msToNs,
  nsToMs,
  OptBool,
  OptLabels,
  OptString,
  Uint,
  unsupported,
} from "./fields.ts";
import type { TlsInfo } from "./node_json.ts";

/** Docker's swarm `Spec`, as a request body. */
export const DockerSwarmSpec = z.strictObject({
  Name: OptString,
  Labels: OptLabels,
  Orchestration: z.strictObject({
    TaskHistoryRetentionLimit: z.number().int("must be a whole number").nullish(),
  }).nullish(),
  Raft: z.strictObject({
    SnapshotInterval: Uint.nullish(),
    KeepOldSnapshots: Uint.nullish(),
    LogEntriesForSlowFollowers: Uint.nullish(),
    ElectionTick: Uint.nullish(),
    HeartbeatTick: Uint.nullish(),
  }).nullish(),
  Dispatcher: z.strictObject({ HeartbeatPeriod: Duration.nullish() }).nullish(),
  CAConfig: z.strictObject({
    NodeCertExpiry: Duration.nullish(),
    ExternalCAs: unsupported("external CAs"),
    SigningCACert: unsupported("a custom signing CA"),
    SigningCAKey: unsupported("a custom signing CA"),
    /** Counted up to rotate the root CA (`swarm ca --rotate`), as Docker's. */
    ForceRotate: Uint.nullish(),
  }).nullish(),
  TaskDefaults: z.strictObject({ LogDriver: unsupported("log drivers") }).nullish(),
  EncryptionConfig: z.strictObject({ AutoLockManagers: OptBool }).nullish(),
});

/**
 * Converts a Docker swarm spec into Shoal's. A field left out (or zero, as Go clients send what
 * they do not set) keeps the current value, as Docker's merge does.
 */
export function clusterSpecFromDocker(body: unknown, current: ClusterSpec): ClusterSpec {
  const d = parseWith(DockerSwarmSpec, body ?? {}, "swarm spec");
  const raft = d.Raft;
  const merged = {
    name: d.Name || current.name,
    labels: d.Labels === undefined ? current.labels : d.Labels ?? {},
    orchestration: {
      taskHistoryRetentionLimit: d.Orchestration?.TaskHistoryRetentionLimit ??
        current.orchestration.taskHistoryRetentionLimit,
    },
    raft: {
      snapshotInterval: raft?.SnapshotInterval || current.raft.snapshotInterval,
      keepOldSnapshots: raft?.KeepOldSnapshots ?? current.raft.keepOldSnapshots,
      logEntriesForSlowFollowers: raft?.LogEntriesForSlowFollowers ||
        current.raft.logEntriesForSlowFollowers,
      heartbeatTick: raft?.HeartbeatTick || current.raft.heartbeatTick,
      electionTick: raft?.ElectionTick || current.raft.electionTick,
    },
    dispatcher: {
      heartbeatPeriod: d.Dispatcher?.HeartbeatPeriod
        ? nsToMs(d.Dispatcher.HeartbeatPeriod)
        : current.dispatcher.heartbeatPeriod,
    },
    caConfig: {
      nodeCertExpiry: d.CAConfig?.NodeCertExpiry
        ? nsToMs(d.CAConfig.NodeCertExpiry)
        : current.caConfig.nodeCertExpiry,
    },
    encryption: {
      autoLockManagers: d.EncryptionConfig?.AutoLockManagers ?? current.encryption.autoLockManagers,
    },
  };
  const parsed = ClusterSpec.safeParse(merged);
  if (!parsed.success) {
    throw new ApiError(
      400,
      "invalid_argument",
      `invalid swarm spec: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}

/** A Shoal swarm spec as Docker's `Spec`. */
export function clusterSpecToDocker(spec: ClusterSpec) {
  return {
    Name: spec.name,
    Labels: { ...spec.labels },
    Orchestration: { TaskHistoryRetentionLimit: spec.orchestration.taskHistoryRetentionLimit },
    Raft: {
      SnapshotInterval: spec.raft.snapshotInterval,
      KeepOldSnapshots: spec.raft.keepOldSnapshots,
      LogEntriesForSlowFollowers: spec.raft.logEntriesForSlowFollowers,
      ElectionTick: spec.raft.electionTick,
      HeartbeatTick: spec.raft.heartbeatTick,
    },
    Dispatcher: { HeartbeatPeriod: msToNs(spec.dispatcher.heartbeatPeriod) },
    CAConfig: { NodeCertExpiry: msToNs(spec.caConfig.nodeCertExpiry) },
    TaskDefaults: {},
    EncryptionConfig: { AutoLockManagers: spec.encryption.autoLockManagers },
  };
}

const tlsCache = new Map<string, TlsInfo>();

/**
 * The root CA as Docker's `TLSInfo`: the current root's PEM, and the subject and key (DER,
 * base64) of the root that signs node certificates: during a rotation the new one, as SwarmKit's
 * `IssuerFromAPIRootCA`.
 */
export function tlsInfo(cluster: ClusterRecord): TlsInfo {
  const pem = cluster.rootCA.certPem;
  const issuerPem = cluster.rootCA.rotation?.certPem ?? pem;
  const key = pem + issuerPem;
  let info = tlsCache.get(key);
  if (info === undefined) {
    const cert = new x509.X509Certificate(issuerPem);
    info = {
      TrustRoot: pem.endsWith("\n") ? pem : pem + "\n",
      CertIssuerSubject: base64(cert.subjectName.toArrayBuffer()),
      CertIssuerPublicKey: base64(cert.publicKey.rawData),
    };
    if (tlsCache.size > 16) tlsCache.clear();
    tlsCache.set(key, info);
  }
  return info;
}

function base64(buf: ArrayBuffer): string {
  let s = "";
  for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
  return btoa(s);
}

/** Docker's `ClusterInfo`: the swarm without its join tokens (what `GET /info` shows). */
export function clusterInfoToDocker(cluster: ClusterRecord) {
  return compact({
    ...meta(cluster),
    Spec: withForceRotate(clusterSpecToDocker(cluster.spec), cluster),
    TLSInfo: tlsInfo(cluster),
    RootRotationInProgress: cluster.rootCA.rotation !== undefined,
    SubnetSize: 0,
    DataPathPort: 0,
  });
}

function withForceRotate(spec: ReturnType<typeof clusterSpecToDocker>, cluster: ClusterRecord) {
  return {
    ...spec,
    CAConfig: { ...spec.CAConfig, ForceRotate: cluster.rootCA.lastForcedRotation ?? 0 },
  };
}

/**
 * The `ForceRotate` a swarm spec body asks for, when it differs from the swarm's count: a root
 * rotation is wanted (`swarm ca --rotate` counts it up, as Docker's CLI).
 */
export function forceRotateRequested(body: unknown, cluster: ClusterRecord): boolean {
  const d = parseWith(DockerSwarmSpec, body ?? {}, "swarm spec");
  const want = d.CAConfig?.ForceRotate;
  return want !== undefined && want !== null && want !== (cluster.rootCA.lastForcedRotation ?? 0);
}

/** The swarm as Docker's `GET /swarm` shows it, join tokens included. */
export function swarmToDocker(cluster: ClusterRecord) {
  return {
    ...clusterInfoToDocker(cluster),
    JoinTokens: { Worker: cluster.joinTokens.worker, Manager: cluster.joinTokens.manager },
  };
}
