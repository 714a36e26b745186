/**
 * The manager's API on TCP with mutual TLS (`--api-tls-addr`), for remote control, as Docker's
 * daemon with `--tlsverify`: only a client holding a **manager certificate of this swarm** may
 * use it. The plain API stays on loopback (`--api-addr`), for the local CLI and the dashboard.
 *
 * - **Server certificate**: made in memory when the listener starts (and again when the swarm's
 *   signing root changes, `swarm ca --rotate`), signed by the swarm's root, for this manager (CN =
 *   node id, OU `swarm-manager`), with the names a client dials: `swarm-manager`, the node id,
 *   `localhost`, 127.0.0.1, ::1 and the listen and advertised addresses. A client checks it
 *   against the swarm's root (`--tlscacert`, a node's `certificates/swarm-root-ca.crt`).
 * - **Clients** present a certificate (`--tlscert`/`--tlskey`, as Docker's flags, or
 *   `DOCKER_CERT_PATH`): a manager's node certificate (`certificates/swarm-node.crt` and `.key`
 *   of a manager's data dir). It must chain to the swarm's roots, be a manager's (OU
 *   `swarm-manager`), and name a node the swarm still knows as a manager. A client without a
 *   certificate, with another CA's, with a worker's or with a removed node's gets an HTTP 403
 *   with Docker's error body (`{"message": ...}`) saying which, and the refusal is logged.
 * - An accepted connection is relayed byte for byte to the loopback API, so every route (streams
 *   included) works as there.
 *
 * @module
 */
import * as tls from "node:tls";
import * as net from "node:net";
import type { Manager } from "../actors/manager.ts";
import type { Logger } from "../actors/runtime.ts";
import { createNodeCSR, issueWithSwarmCA, trustBundle, verifyNodeCertificate } from "./ca.ts";
import { derToPem, splitHostPort } from "./agent_protocol.ts";

/** Options of {@linkcode serveApiTls}. */
export interface ApiTlsOptions {
  /** `host:port` to listen on (port 0: any). */
  readonly listenAddr: string;
  /** The plain API's `host:port` (loopback), where accepted connections are relayed. */
  readonly apiAddr: string;
  /** The manager: its state says the swarm's roots and which nodes are managers. */
  readonly manager: Manager;
  /** This manager's node id (the server certificate's CN). */
  readonly nodeId: string;
  /** More addresses clients dial this API at (hosts or IPs), for the server certificate. */
  readonly hosts?: readonly string[];
  readonly logger?: Logger;
  /** The clock, ms (tests). */
  readonly clock?: () => number;
}

/** A running TLS API listener. */
export interface ApiTlsServer {
  /** Where it listens (`host:port`). */
  readonly address: string;
  /** The server certificate now presented (PEM, with its chain). */
  readonly certPem: () => string;
  /** Stops listening and cuts every connection. */
  close(): Promise<void>;
}

/** Why a client is refused, or undefined when it may use the API. */
export async function authorizeApiClient(
  manager: Manager,
  peerDer: Uint8Array | undefined,
  now: number,
): Promise<string | undefined> {
  const cluster = manager.state.cluster;
  if (cluster === undefined) return "this manager serves no swarm";
  if (peerDer === undefined || peerDer.length === 0) {
    return "a client certificate is required: use a manager's certificate of this swarm (--tlscert and --tlskey, or DOCKER_CERT_PATH)";
  }
  let identity;
  try {
    identity = await verifyNodeCertificate({
      rootCA: { certPem: trustBundle(cluster.rootCA) },
      certPem: derToPem(peerDer),
      now,
    });
  } catch (err) {
    return `the client certificate is refused: ${(err as Error).message}`;
  }
  if (identity.role !== "manager") {
    return `node ${identity.nodeId} presented a worker certificate: only managers may use the API`;
  }
  const node = manager.state.nodes.get(identity.nodeId);
  if (node === undefined) {
    return `node ${identity.nodeId} is not a member of this swarm (removed?): its certificate no longer opens the API`;
  }
  if (node.role !== "manager") {
    return `node ${identity.nodeId} is no longer a manager: its certificate no longer opens the API`;
  }
  return undefined;
}

function isIp(host: string): boolean {
  return net.isIP(host) !== 0;
}

/** Serves the API on TCP with mutual TLS; resolves once it listens. */
export async function serveApiTls(options: ApiTlsOptions): Promise<ApiTlsServer> {
  const { manager, nodeId, logger } = options;
  const clock = options.clock ?? Date.now;
  const { host, port } = splitHostPort(options.listenAddr);
  const api = splitHostPort(options.apiAddr);
  const names = [host, ...(options.hosts ?? [])].filter((h) => h && h !== "0.0.0.0" && h !== "::");
  const ips = [...new Set(["127.0.0.1", "::1", ...names.filter(isIp)])];
  const dns = [...new Set(["localhost", ...names.filter((h) => !isIp(h))])];

  let issuedFor = "";
  let current = { key: "", cert: "", ca: "" };
  const makeContext = async () => {
    const cluster = manager.state.cluster;
    if (cluster === undefined) throw new Error("the TLS API needs a swarm: none is initialised");
    const csr = await createNodeCSR({ nodeId });
    const issued = await issueWithSwarmCA(cluster.rootCA, {
      csrPem: csr.csrPem,
      nodeId,
      role: "manager",
      clusterId: cluster.id,
      now: clock(),
      expiryMs: cluster.spec.caConfig.nodeCertExpiry,
      extraNames: { dns, ips },
    });
    issuedFor = trustBundle(cluster.rootCA);
    current = { key: csr.keyPem, cert: issued.certPem, ca: issuedFor };
    return current;
  };
  await makeContext();

  const sockets = new Set<net.Socket>();
  const server = tls.createServer({
    key: current.key,
    cert: current.cert,
    ca: current.ca,
    // Every client is asked for a certificate; one without a valid one finishes the handshake
    // and is told why it is refused (over HTTP), rather than seeing a bare TLS failure.
    requestCert: true,
    rejectUnauthorized: false,
  }, (socket) => void accept(socket));
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
    logger?.warn(
      `api (tls): refused a connection from ${peer(socket)}: TLS handshake failed (${err.message})`,
    );
    socket?.destroy();
  });

  async function accept(socket: tls.TLSSocket): Promise<void> {
    socket.on("error", () => {});
    const raw = socket.getPeerCertificate()?.raw;
    const why = await authorizeApiClient(
      manager,
      raw ? new Uint8Array(raw) : undefined,
      clock(),
    );
    if (why !== undefined) {
      logger?.warn(`api (tls): refused a client from ${peer(socket)}: ${why}`);
      refuse(socket, why);
      return;
    }
    const upstream = net.connect({ host: api.host, port: api.port });
    upstream.on("error", () => socket.destroy());
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
    socket.pipe(upstream);
    upstream.pipe(socket);
  }

  // The server certificate follows the swarm's signing root (a root rotation).
  const unsubscribe = manager.onApplied(() => {
    const cluster = manager.state.cluster;
    if (cluster === undefined || trustBundle(cluster.rootCA) === issuedFor) return;
    makeContext().then((c) => server.setSecureContext({ key: c.key, cert: c.cert, ca: c.ca }))
      .catch((err) => logger?.error(`api (tls): renewing the server certificate: ${err}`));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err: Error) => logger?.error(`api (tls): ${err.message}`));
  const bound = (server.address() as net.AddressInfo).port;
  return {
    address: `${host.includes(":") ? `[${host}]` : host}:${bound}`,
    certPem: () => current.cert,
    async close() {
      unsubscribe();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Answers a refused client with Docker's error body, once its request has arrived. */
function refuse(socket: tls.TLSSocket, why: string): void {
  const body = JSON.stringify({ message: why, code: "forbidden" }) + "\n";
  const answer = () => {
    socket.end(
      "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${new TextEncoder().encode(body).length}\r\nConnection: close\r\n\r\n` +
        body,
    );
  };
  // Read the request head first: a client that is still writing would see a reset otherwise.
  const timer = setTimeout(answer, 2_000);
  socket.once("data", () => {
    clearTimeout(timer);
    answer();
  });
  socket.once("close", () => clearTimeout(timer));
}

function peer(socket: net.Socket | undefined): string {
  return (socket?.remoteAddress ?? "?").replace(/^::ffff:/, "");
}
