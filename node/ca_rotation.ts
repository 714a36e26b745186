/**
 * Root CA rotation on the managers (`swarm ca --rotate`), after SwarmKit's
 * `ca/reconciler.go`:
 *
 * 1. The API starts a rotation: a new root and its copy cross-signed by the current root go in
 *    the swarm's `RootCA` record (`rotation`, one `ClusterRootCARotated` event). From then on
 *    managers sign node certificates with the new root and append the cross-signed copy, and
 *    every node trusts both roots.
 * 2. Every manager, on seeing it, issues itself a new certificate (it holds the root keys in its
 *    state) and reports what it trusts and which root signed it (`Description.tlsInfo`). Agents
 *    learn it from the dispatcher's welcome and heartbeats (`TrustInfo`), renew over their
 *    session at once, and report the same in their next hello.
 * 3. The leader watches the nodes' reports; once every node holds a certificate of the new root,
 *    it ends the rotation: the new root replaces the old one, which nobody trusts any longer, and
 *    both join tokens are made again, pinning the new root (as SwarmKit's `finishRootRotation`).
 *
 * @module
 */
import type { Manager } from "../actors/manager.ts";
import type { Logger } from "../actors/runtime.ts";
import type { ClusterState } from "../actors/state.ts";
import {
  certificatePublicKey,
  createNodeCSR,
  finishRootRotation,
  issueWithSwarmCA,
  newJoinToken,
  nodeTlsInfo,
  type RotatingRootCA,
  signingCA,
  startRootRotation,
  trustBundle,
} from "./ca.ts";
import {
  type Credentials,
  type KeySealing,
  readCredentials,
  writeCredentials,
} from "./identity.ts";

/**
 * Starts a root rotation through `manager` (`swarm ca --rotate`): makes the new root and the
 * cross-signed copy, and records them. Resolves with the new root's digest.
 */
export async function rotateRootCA(manager: Manager, by: string): Promise<string> {
  const cluster = manager.state.cluster;
  if (cluster === undefined) throw new Error("no swarm to rotate the root CA of");
  const rootCA = await startRootRotation(cluster.rootCA, {
    clusterId: cluster.id,
    now: Date.now(),
  });
  await manager.execute({ kind: "RotateRootCA", rootCA }, { by });
  return rootCA.rotation!.digest;
}

/**
 * Nodes whose certificate the signing root did not issue yet (their reported `tlsInfo`): a
 * rotation ends when there are none.
 */
export function unconvergedNodes(state: ClusterState): string[] {
  const cluster = state.cluster;
  if (cluster === undefined) return [];
  const want = certificatePublicKey(signingCA(cluster.rootCA).certPem);
  const out: string[] = [];
  for (const node of state.nodes.values()) {
    if (node.description.tlsInfo?.certIssuerPublicKey !== want) out.push(node.id);
  }
  return out;
}

/** What can change this manager's certificate, its report, or a rotation's progress. */
const RELEVANT: ReadonlySet<string> = new Set([
  "ClusterCreated",
  "ClusterRootCARotated",
  "ClusterSpecUpdated",
  "NodeRegistered",
  "NodeDescriptionUpdated",
  "NodeRoleChanged",
  "NodeRemoved",
]);

/** Options of {@linkcode RootRotation}. */
export interface RootRotationOptions {
  readonly manager: Manager;
  /** This manager's node id. */
  readonly nodeId: string;
  /** Its data dir, where its certificate is kept. */
  readonly dataDir: string;
  /** Its data keys, when its log is encrypted: its key is sealed while autolock is on. */
  readonly keySealing?: KeySealing;
  readonly logger?: Logger;
  /**
   * Called with this manager's new credentials once stored: the daemon presents them from then on
   * (dispatcher, leader link, raft transport).
   */
  readonly onCredentials?: (credentials: Credentials) => void;
  /** How long to gather changes before looking, ms (default 200). */
  readonly debounceMs?: number;
}

/**
 * Follows the swarm's root CA on one manager: renews this manager's certificate when the signing
 * root changes, keeps its reported `tlsInfo` true, and, on the leader, ends a rotation once every
 * node has converged.
 */
export class RootRotation {
  #opts: RootRotationOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #unsubscribe: (() => void) | undefined;

  /** A follower for `options.manager`; call `start()`. */
  constructor(options: RootRotationOptions) {
    this.#opts = options;
  }

  /** Starts following the log (and looks once now). */
  start(): void {
    this.#unsubscribe = this.#opts.manager.onApplied((entry) => {
      if (entry.batch.events.some((e) => RELEVANT.has(e.type))) this.kick();
    });
    this.kick();
  }

  /** Looks again soon (the log changed, or leadership did). */
  kick(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#running) {
        this.#again = true;
        return;
      }
      this.#running = this.#check()
        .catch((err) => this.#opts.logger?.warn(`root CA: ${(err as Error).message}`))
        .finally(() => {
          this.#running = undefined;
          if (this.#again) {
            this.#again = false;
            this.kick();
          }
        });
    }, this.#opts.debounceMs ?? 200);
  }

  /** Stops following; waits for a step under way. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#unsubscribe?.();
    await this.#running;
  }

  async #check(): Promise<void> {
    const { manager, nodeId, dataDir, logger, keySealing } = this.#opts;
    const cluster = manager.state.cluster;
    const self = manager.state.nodes.get(nodeId);
    if (cluster === undefined || self === undefined || this.#stopped) return;
    const rootCA: RotatingRootCA = cluster.rootCA;
    const trust = trustBundle(rootCA);
    const issuerKey = certificatePublicKey(signingCA(rootCA).certPem);

    // This manager's own certificate: from the signing root, trusting what the swarm trusts.
    let creds = await readCredentials(dataDir, keySealing);
    const issuedBy = creds
      ? (await nodeTlsInfo(creds.cert, trust).catch(() => undefined))?.certIssuerPublicKey
      : undefined;
    if (creds !== undefined && issuedBy !== issuerKey) {
      const csr = await createNodeCSR({ nodeId });
      const issued = await issueWithSwarmCA(rootCA, {
        csrPem: csr.csrPem,
        nodeId,
        role: "manager",
        clusterId: cluster.id,
        now: Date.now(),
        expiryMs: cluster.spec.caConfig.nodeCertExpiry,
      });
      creds = { key: csr.keyPem, cert: issued.certPem, ca: trust };
      await writeCredentials(dataDir, creds, keySealing);
      logger?.info(`node ${nodeId}: manager certificate renewed with the swarm's new root CA`);
      this.#opts.onCredentials?.(creds);
    } else if (creds !== undefined && creds.ca !== trust) {
      creds = { ...creds, ca: trust };
      await writeCredentials(dataDir, creds, keySealing);
      logger?.info(`node ${nodeId}: now trusting the swarm's current root CAs`);
      this.#opts.onCredentials?.(creds);
    }
    if (creds !== undefined) {
      const info = await nodeTlsInfo(creds.cert, creds.ca);
      const had = self.description.tlsInfo;
      if (
        had?.trustRoot !== info.trustRoot ||
        had.certIssuerPublicKey !== info.certIssuerPublicKey ||
        had.certIssuerSubject !== info.certIssuerSubject
      ) {
        const by = `node:${nodeId}`;
        await manager.propose([{
          type: "NodeDescriptionUpdated",
          v: 1,
          data: { id: nodeId, description: { ...self.description, tlsInfo: { ...info } } },
          meta: { by, reason: "the manager's certificate or trusted roots changed" },
        }], by);
      }
    }

    // The leader ends a rotation every node has followed.
    const now = manager.state.cluster;
    if (!manager.leading || now?.rootCA.rotation === undefined) return;
    const waiting = unconvergedNodes(manager.state);
    if (waiting.length > 0) return;
    const next = finishRootRotation(now.rootCA);
    await manager.execute({
      kind: "RotateRootCA",
      rootCA: next,
      finishes: now.rootCA.rotation.digest,
      joinTokens: { worker: newJoinToken(next), manager: newJoinToken(next) },
    }, { by: "ca" });
    logger?.info(
      `root CA rotation finished: every node holds a certificate of root ${
        next.digest.slice(0, 12)
      }; the old root is no longer trusted and the join tokens were renewed`,
    );
  }
}
