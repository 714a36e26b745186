/**
 * Joining a swarm (SwarmKit's `ca.DownloadRootCA` and `GetRemoteSignedCertificate`): the node
 * takes its token apart, connects to a manager's cluster port with TLS but no certificate (it has
 * none yet), and checks what the manager shows it before trusting it:
 *
 * 1. the root CA the manager sends must have the digest pinned in the token (a manager of
 *    another swarm, or someone in the middle, cannot pass this: the digest is a sha256);
 * 2. the certificate the manager presented in the TLS handshake must be a manager certificate
 *    signed by that root (so the manager holds a key the root vouches for).
 *
 * Only then does the node send the token and a CSR for a key it just made. The manager answers
 * with the node's id and certificate; the node stores them (`identity.ts`) and from then on
 * talks to managers with mutual TLS only.
 *
 * @module
 */
import * as tls from "node:tls";
import type { NodeDescription } from "../events/schema.ts";
import { certificateDigest, createNodeCSR, parseJoinToken, verifyNodeCertificate } from "./ca.ts";
import {
  derToPem,
  FrameConnection,
  MANAGER_SERVERNAME,
  type ManagerMessage,
  PROTOCOL_VERSION,
  splitHostPort,
} from "./agent_protocol.ts";
import type { Credentials } from "./identity.ts";

/** Options of {@linkcode requestToJoin}. */
export interface JoinOptions {
  /** `SWMTKN-1-...` */
  token: string;
  /** A manager's cluster address, `host:port`. */
  manager: string;
  description: NodeDescription;
  /** The address this node says it is reachable at ("" lets the manager use the peer's). */
  addr?: string;
  /** Give up after this long, ms (default 20 s). */
  timeoutMs?: number;
}

/** What a successful join gives the node. */
export interface Joined {
  nodeId: string;
  role: "worker" | "manager";
  clusterId: string;
  credentials: Credentials;
  /** Managers' cluster addresses. */
  managers: string[];
  /** The node's address as the manager recorded it. */
  addr: string;
  /** A manager's raft id. */
  raftId?: number;
}

/** A join that failed; the message says why in words a person can act on. */
export class JoinError extends Error {
  /** The manager's code when it refused (`invalid_token`...), else "". */
  readonly code: string;
  /** Creates the error. */
  constructor(message: string, code = "") {
    super(message);
    this.name = "JoinError";
    this.code = code;
  }
}

/** Joins the swarm of `options.manager` with `options.token`; see the module documentation. */
export async function requestToJoin(options: JoinOptions): Promise<Joined> {
  const { token, manager } = options;
  let pinned: string;
  try {
    pinned = parseJoinToken(token).caDigest;
  } catch (err) {
    throw new JoinError((err as Error).message);
  }
  const { host, port } = splitHostPort(manager);
  const { csrPem, keyPem } = await createNodeCSR();

  const { promise, resolve, reject } = Promise.withResolvers<Joined>();
  let settled = false;
  const fail = (err: Error) => {
    if (settled) return;
    settled = true;
    reject(err);
    conn.close("join failed");
  };
  const socket = tls.connect({
    host,
    port,
    servername: MANAGER_SERVERNAME,
    // No CA yet: the server's certificate is checked below against the root the token pins.
    rejectUnauthorized: false,
  });
  let rootPem = "";
  /** During a root rotation, the new root cross-signed by the pinned one. */
  let chainPem = "";
  let answered = false;
  const conn: FrameConnection = new FrameConnection(socket, {
    onMessage: (raw) => {
      const m = raw as ManagerMessage;
      if (m.t === "error") {
        fail(new JoinError(`the manager refused to join this node: ${m.message}`, m.code));
        return;
      }
      if (m.t === "ca" && rootPem === "") {
        rootPem = String(m.certPem);
        chainPem = typeof m.chainPem === "string" ? m.chainPem : "";
        checkManager(rootPem).then(() => {
          conn.send({
            t: "join",
            v: PROTOCOL_VERSION,
            token,
            csrPem,
            description: options.description,
            addr: options.addr ?? "",
          });
        }, fail);
        return;
      }
      if (m.t === "joined" && rootPem !== "") {
        answered = true; // the manager closes the connection now: that is not a failure
        checkIssued(m).then((joined) => {
          settled = true;
          resolve(joined);
          conn.close("joined");
        }, fail);
        return;
      }
      fail(new JoinError(`the manager at ${manager} sent an unexpected "${m.t}" message`));
    },
    onClose: (why) => {
      if (answered) return;
      fail(
        new JoinError(
          `could not join the swarm through ${manager}: ${
            /ECONNREFUSED/.test(why) ? "connection refused (is the manager running?)" : why
          }`,
        ),
      );
    },
  });
  const timer = setTimeout(
    () => fail(new JoinError(`no answer from the manager at ${manager} in time`)),
    options.timeoutMs ?? 20_000,
  );

  async function checkManager(root: string): Promise<void> {
    const digest = await certificateDigest(root).catch(() => "");
    if (digest !== pinned) {
      throw new JoinError(
        `the manager at ${manager} presented a root CA (sha256:${
          digest || "unreadable"
        }) that does not match the join token (sha256:${pinned}): this token is for another swarm, or the connection is being intercepted`,
      );
    }
    const peer = socket.getPeerCertificate();
    if (!peer?.raw) throw new JoinError(`the manager at ${manager} presented no certificate`);
    const serverCertPem = derToPem(new Uint8Array(peer.raw));
    let identity;
    try {
      identity = await verifyNodeCertificate({
        rootCA: { certPem: root },
        certPem: serverCertPem + chainPem,
        now: Date.now(),
      });
    } catch (err) {
      throw new JoinError(
        `the manager at ${manager} presented a certificate its swarm's root CA does not vouch for: ${
          (err as Error).message
        }`,
      );
    }
    if (identity.role !== "manager") {
      throw new JoinError(`the node at ${manager} is not a manager (its certificate says worker)`);
    }
  }

  async function checkIssued(m: Extract<ManagerMessage, { t: "joined" }>): Promise<Joined> {
    let identity;
    try {
      identity = await verifyNodeCertificate({
        rootCA: { certPem: rootPem },
        certPem: m.certPem,
        now: Date.now(),
      });
    } catch (err) {
      throw new JoinError(`the manager issued an unusable certificate: ${(err as Error).message}`);
    }
    if (identity.nodeId !== m.nodeId || identity.clusterId !== m.clusterId) {
      throw new JoinError("the manager issued a certificate for another node or swarm");
    }
    return {
      nodeId: m.nodeId,
      role: identity.role,
      clusterId: m.clusterId,
      credentials: { key: keyPem, cert: m.certPem, ca: rootPem },
      managers: m.managers.length > 0 ? m.managers : [manager],
      addr: m.addr,
      ...(identity.role === "manager" && m.raftId !== undefined ? { raftId: m.raftId } : {}),
    };
  }

  try {
    return await promise;
  } finally {
    clearTimeout(timer);
  }
}
