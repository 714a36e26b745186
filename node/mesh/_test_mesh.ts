/**
 * Test fixtures of the mesh: node certificates from a fresh root CA, a map source the test
 * changes by hand, and TCP servers that say who they are.
 *
 * @module
 */
import * as net from "node:net";
import { createNodeCSR, createRootCA, issueNodeCertificate } from "../ca.ts";
import type { MeshSource } from "./mesh.ts";
import type { MeshMap } from "./mesh_map.ts";
import type { MeshCredentials } from "./peer.ts";

/** Credentials for each node id, all from one new root CA; `other` is from another CA. */
export async function testCredentials(
  nodeIds: string[],
): Promise<{ creds: Map<string, MeshCredentials>; foreign: MeshCredentials }> {
  const now = Date.now();
  const issue = async (rootCA: { certPem: string; keyPem: string }, nodeId: string) => {
    const csr = await createNodeCSR({ nodeId });
    const cert = await issueNodeCertificate({
      rootCA,
      csrPem: csr.csrPem,
      nodeId,
      role: "worker",
      clusterId: "meshtest",
      now,
    });
    return { key: csr.keyPem, cert: cert.certPem, ca: rootCA.certPem };
  };
  const root = await createRootCA({ clusterId: "meshtest", now });
  const creds = new Map<string, MeshCredentials>();
  for (const id of nodeIds) creds.set(id, await issue(root, id));
  const otherRoot = await createRootCA({ clusterId: "meshtest", now });
  return { creds, foreign: await issue(otherRoot, nodeIds[0]) };
}

/** A source whose map the test sets. */
export class TestSource implements MeshSource {
  #map: MeshMap;
  #listeners = new Set<() => void>();
  /** Starts with `map`. */
  constructor(map: MeshMap) {
    this.#map = map;
  }
  current(): MeshMap {
    return this.#map;
  }
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  /** Replaces the map and tells the subscribers. */
  set(map: MeshMap): void {
    this.#map = map;
    for (const l of this.#listeners) l();
  }
}

/** A free TCP port on `host` (bound, then released). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A server that answers each line with `<name>:<line>`. */
export async function namedServer(
  name: string,
  host: string,
  port: number,
): Promise<{ close(): Promise<void>; connections: number }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buf = "";
    socket.on("data", (chunk: Uint8Array) => {
      buf += new TextDecoder().decode(chunk);
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        socket.write(`${name}:${buf.slice(0, i)}\n`);
        buf = buf.slice(i + 1);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    get connections() {
      return state.connections;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Connects to `host:port`, sends `line`, and resolves with the first line answered, or with
 * `closed` if the connection ends first.
 */
export function ask(host: string, port: number, line: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let buf = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${host}:${port} in ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (value: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    socket.on("connect", () => socket.write(`${line}\n`));
    socket.on("data", (chunk: Uint8Array) => {
      buf += new TextDecoder().decode(chunk);
      const i = buf.indexOf("\n");
      if (i >= 0) done(buf.slice(0, i));
    });
    socket.on(
      "error",
      (err: Error & { code?: string }) => done(`error:${err.code ?? err.message}`),
    );
    socket.on("close", () => done("closed"));
  });
}

/** Waits until `check` is true (polling), or throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
