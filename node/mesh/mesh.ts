/**
 * A node's mesh: the routing mesh of published ports, the service virtual IPs, and the
 * resolver, all in user space, from a {@linkcode MeshMap} that follows the cluster state.
 *
 * - **Ingress published ports**: every node listens on each service's ingress published ports
 *   (on its publish addresses, see below) and forwards each TCP connection to a serving task of
 *   the service, on this node or another, in turn (round robin); a task that does not accept
 *   the connection is skipped for the next (at most three tries).
 * - **UDP**: published UDP ports (ingress and host mode) and a VIP's UDP ports (those of the
 *   service's port specs) forward datagrams likewise, one flow per client address and port tied
 *   to one task, with the task's answers sent back to the client, forgotten after 30 s idle
 *   (`udp.ts`).
 * - **Host-mode ports** are published only on the node of the task, forwarding to that task.
 * - **Virtual IPs**: every node listens on each service VIP (127.x addresses from the
 *   allocator's IPAM: Linux routes all of 127.0.0.0/8 to loopback, so binding them needs no root
 *   and no configuration) on the service's ports: the target ports of its endpoint spec, plus
 *   the ports its tasks are found listening on (`proc_net.ts`; tasks on other nodes are asked
 *   through their node's endpoint, `discover`). A user-space proxy cannot accept "every port"
 *   as Docker's IPVS does, so a port becomes reachable by VIP a few seconds after a task starts
 *   listening on it. Connections go to the task's main address (`SHOAL_TASK_ADDR`).
 * - **Isolation**: a connection to a VIP from a task that is not on the VIP's network is
 *   refused, and the resolver only answers names of services on the asker's networks. The
 *   asker is its source address when it bound its own address, else the task whose process
 *   holds the socket (`proc_net.ts`). Connections from the host itself (not a task) are let
 *   through, as the host can reach every published port anyway.
 * - **Between nodes** every connection and UDP flow goes through the other node's mesh endpoint
 *   over mutual TLS with the node certificates (`peer.ts`): encrypted, always. One connection to
 *   each peer, its trunk, carries them all (`trunk.ts`).
 * - **Publish addresses**: by default this node's address and 127.0.0.1, not 0.0.0.0: on Linux a
 *   socket listening on every address conflicts with a task listening on its own 127.x address
 *   at the same port, which the mesh must never cause. Give `publishAddrs: ["0.0.0.0"]` to take
 *   every address.
 *
 * @module
 */
import { isIP } from "node:net";
import type { Buffer } from "node:buffer";
import type { Logger } from "../../actors/runtime.ts";
import type { ClusterState } from "../../actors/state.ts";
import { DnsServer } from "./dns_server.ts";
import { MeshIndex } from "./mesh_index.ts";
import {
  EMPTY_MESH_MAP,
  type MeshMap,
  meshMapFromState,
  type MeshNode,
  type MeshTask,
} from "./mesh_map.ts";
import {
  DEFAULT_MESH_PORT,
  discoverPeer,
  type MeshCredentials,
  openTrunk,
  PeerEndpoint,
} from "./peer.ts";
import { spliceConns } from "./splice.ts";
import type { Trunk, TrunkStream } from "./trunk.ts";
import { localUdpTarget, type UdpClient, UdpRelay, type UdpTarget } from "./udp.ts";
import {
  isWildcard,
  listeningPortsByTask,
  readTcpSockets,
  readUdpSockets,
  TaskProcesses,
} from "./proc_net.ts";

/** Where the mesh gets its map from, and hears that it changed. */
export interface MeshSource {
  /** The map now. */
  current(): MeshMap;
  /** Calls `listener` after each change; returns a function that stops it. */
  subscribe(listener: () => void): () => void;
}

/**
 * A source that computes the map from a manager's state after applied entries, at most once per
 * `coalesceMs` (default 100 ms: it costs time linear in the swarm's tasks).
 */
export function stateMeshSource(
  manager: {
    readonly state: ClusterState;
    onApplied(listener: () => void): () => void;
    onRestored?(listener: () => void): () => void;
  },
  coalesceMs = 100,
): MeshSource {
  let cached: MeshMap | undefined;
  let cachedAt = -1;
  const current = () => {
    if (cached === undefined || cachedAt !== manager.state.index) {
      cached = meshMapFromState(manager.state);
      cachedAt = manager.state.index;
    }
    return cached;
  };
  return {
    current,
    subscribe(listener) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const kick = () => {
        if (timer !== undefined) return;
        timer = setTimeout(() => {
          timer = undefined;
          listener();
        }, coalesceMs);
      };
      const stop = manager.onApplied(kick);
      // A snapshot installed over the state: nothing cached from before it holds.
      const stopRestored = manager.onRestored?.(() => {
        cached = undefined;
        kick();
      });
      return () => {
        clearTimeout(timer);
        stop();
        stopRestored?.();
      };
    },
  };
}

/** Options of {@linkcode startMesh}. */
export interface MeshOptions {
  /** This node's id. */
  nodeId: string;
  source: MeshSource;
  /**
   * This node's key, certificate and the swarm's root CA, read when the mesh starts (later ones
   * come through `setCredentials`). Undefined (a node without a certificate, such as a
   * single-node swarm started without a cluster port): no endpoint, and tasks on other nodes
   * are not reached.
   */
  credentials: () => MeshCredentials | undefined;
  logger?: Logger;
  /** The mesh port of every node (default 4379). This node listens on it too, unless `listen`. */
  meshPort?: number;
  /** Where this node's endpoint listens (`{host, port}`); default: its address, `meshPort`. */
  listen?: { host: string; port: number };
  /** How to reach a peer's endpoint; default its address and `meshPort`. */
  peerEndpoint?: (node: MeshNode) => { host: string; port: number };
  /** Addresses published ports listen on; default this node's address and 127.0.0.1. */
  publishAddrs?: string[];
  /** The resolver's address, or false for none. Default 127.0.0.11:53. */
  dns?: { host: string; port: number } | false;
  /** Upstream resolvers (default /etc/resolv.conf's). */
  dnsUpstreams?: string[];
  /** Find the ports tasks listen on (default: on Linux). */
  discoverPorts?: boolean;
  /** How often ports are discovered, ms (default 2,000). */
  discoverIntervalMs?: number;
  /** Refuse VIP connections and names across networks (default true). */
  isolate?: boolean;
}

/** What a listener forwards to. */
type Route =
  | {
    readonly kind: "service";
    readonly serviceId: string;
    readonly targetPort: number;
    /** Set for a VIP: the network it is on (isolation applies). */
    readonly networkId?: string;
  }
  | { readonly kind: "task"; readonly taskId: string; readonly targetPort: number };

type Listener = { readonly listener: Deno.TcpListener } | { readonly relay: UdpRelay };

/** A listener's key: `host:port` for TCP, `host:port/udp` for UDP. */
function listenerKey(host: string, port: number, protocol: "tcp" | "udp"): string {
  return protocol === "udp" ? `${host}:${port}/udp` : `${host}:${port}`;
}

const LOOPBACK = "127.0.0.1";
const MAX_TRIES = 3;

/** A running mesh. See the module documentation. */
export class Mesh {
  #opts: MeshOptions;
  #index: MeshIndex = new MeshIndex(EMPTY_MESH_MAP);
  #routes = new Map<string, Route>();
  #listeners = new Map<string, Listener>();
  #bindErrors = new Map<string, string>();
  #rr = new Map<string, number>();
  #endpoint: PeerEndpoint | undefined;
  #endpointStarting = false;
  /** The last failure to start the endpoint (logged once). */
  #endpointError = "";
  #dns: DnsServer | undefined;
  #sessions = new Map<string, Buffer>();
  /** The trunk to each peer (by node id and endpoint), once asked for. */
  #trunks = new Map<string, Promise<Trunk>>();
  #procs = new TaskProcesses();
  /** Ports found listening, by task id (this node's tasks and those peers told). */
  #localPorts = new Map<string, number[]>();
  #remotePorts = new Map<string, number[]>();
  #unsubscribe: (() => void) | undefined;
  #discoverTimer: ReturnType<typeof setTimeout> | undefined;
  #reconciling: Promise<void> = Promise.resolve();
  #queued = false;
  #closed = false;
  #credentials: MeshCredentials | undefined;
  /** Cuts each forwarded connection (for `close()`). */
  #active = new Set<() => void>();

  /** A mesh; call `start()` (or use {@linkcode startMesh}). */
  constructor(options: MeshOptions) {
    this.#opts = options;
    this.#credentials = options.credentials();
  }

  /** The lookups of the current map. */
  get index(): MeshIndex {
    return this.#index;
  }

  /** Where the endpoint listens (`host:port`), once it does. */
  get endpointAddress(): string {
    return this.#endpoint?.address ?? "";
  }

  /** Where the resolver listens (`host:port`), or "" when it does not. */
  get dnsAddress(): string {
    return this.#dns?.address ?? "";
  }

  /**
   * The resolver as containers' name servers (`HostConfig.Dns`, which takes addresses only):
   * its address when it listens on port 53, else none.
   */
  get dnsServers(): string[] {
    const addr = this.dnsAddress;
    return addr.endsWith(":53") ? [addr.slice(0, -3)] : [];
  }

  /** Where published ports and VIPs are listened on now: `host:port`, `host:port/udp`. */
  get listening(): string[] {
    return [...this.#listeners.keys()];
  }

  /** Starts the resolver and follows the source. Resolves after the first reconcile. */
  async start(): Promise<void> {
    const dns = this.#opts.dns ?? { host: "127.0.0.11", port: 53 };
    if (dns !== false) {
      const server = new DnsServer({
        listen: dns,
        index: () => this.#index,
        identify: (proto, addr, port, localAddr, localPort) =>
          this.#identify(proto, addr, port, localAddr, localPort),
        upstreams: this.#opts.dnsUpstreams,
        logger: this.#opts.logger,
      });
      try {
        await server.start();
        this.#dns = server;
      } catch (err) {
        this.#opts.logger?.warn(
          `mesh: no resolver on ${dns.host}:${dns.port} (${(err as Error).message}); ` +
            `tasks resolve service names through their environment only`,
        );
      }
    }
    this.#unsubscribe = this.#opts.source.subscribe(() => this.refresh());
    this.refresh();
    await this.#reconciling;
    if (this.#opts.discoverPorts ?? Deno.build.os === "linux") this.#scheduleDiscovery(0);
  }

  /** Re-reads the map and reconciles listeners now. */
  refresh(): Promise<void> {
    // One reconcile waiting is enough: it reads the map as it is when it runs.
    if (this.#queued) return this.#reconciling;
    this.#queued = true;
    this.#reconciling = this.#reconciling.then(() => {
      this.#queued = false;
      return this.#reconcile();
    }).catch((err) => this.#opts.logger?.error(`mesh: reconcile failed: ${err?.stack ?? err}`));
    return this.#reconciling;
  }

  /** Presents renewed credentials from now on. */
  setCredentials(credentials: MeshCredentials): void {
    this.#credentials = credentials;
    this.#sessions.clear();
    // Streams open on the trunks keep them until they end; new ones take new trunks.
    for (const t of this.#trunks.values()) t.then((trunk) => trunk.retire(), () => {});
    this.#trunks.clear();
    if (this.#endpoint) this.#endpoint.setCredentials(credentials);
    else void this.refresh(); // the endpoint may wait for its first certificate
  }

  /** Stops listening everywhere and cuts every forwarded connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe?.();
    clearTimeout(this.#discoverTimer);
    await this.#reconciling;
    this.#dns?.close();
    for (const key of [...this.#listeners.keys()]) this.#closeListener(key);
    for (const cut of this.#active) cut();
    this.#active.clear();
    for (const t of this.#trunks.values()) t.then((trunk) => trunk.close(), () => {});
    this.#trunks.clear();
    await this.#endpoint?.close();
  }

  // -------------------------------------------------------------------------------------------

  #self(): MeshNode | undefined {
    return this.#index.nodesById.get(this.#opts.nodeId);
  }

  #publishAddrs(): string[] {
    if (this.#opts.publishAddrs) return this.#opts.publishAddrs;
    const own = this.#self()?.addr ?? "";
    const addrs = [own && !isIP(own) ? "" : own, LOOPBACK].filter((a) => a !== "");
    if (addrs.includes("0.0.0.0")) return ["0.0.0.0"];
    return [...new Set(addrs)];
  }

  #peerEndpoint(node: MeshNode): { host: string; port: number } {
    return this.#opts.peerEndpoint?.(node) ??
      { host: node.addr, port: this.#opts.meshPort ?? DEFAULT_MESH_PORT };
  }

  /** The ports a VIP listens on for a service: spec target ports and discovered ones. */
  #servicePorts(serviceId: string): number[] {
    const ports = new Set<number>();
    const service = this.#index.servicesById.get(serviceId);
    for (const p of service?.ports ?? []) if (p.protocol === "tcp") ports.add(p.targetPort);
    for (const t of this.#index.map.tasks) {
      if (t.serviceId !== serviceId) continue;
      for (const p of this.#localPorts.get(t.id) ?? this.#remotePorts.get(t.id) ?? []) {
        ports.add(p);
      }
    }
    return [...ports];
  }

  async #reconcile(): Promise<void> {
    if (this.#closed) return;
    this.#index = new MeshIndex(this.#opts.source.current());
    await this.#ensureEndpoint();
    const routes = new Map<string, Route>();
    const add = (host: string, port: number, protocol: "tcp" | "udp", route: Route) => {
      const key = listenerKey(host, port, protocol);
      if (!routes.has(key)) routes.set(key, route);
    };
    const publish = this.#publishAddrs();
    for (const service of this.#index.map.services) {
      for (const p of service.ports) {
        if (p.protocol === "sctp" || p.publishedPort === 0) continue;
        if (p.publishMode === "ingress") {
          for (const host of publish) {
            add(host, p.publishedPort, p.protocol, {
              kind: "service",
              serviceId: service.id,
              targetPort: p.targetPort,
            });
          }
        }
      }
      for (const vip of service.vips) {
        const route = (port: number): Route => ({
          kind: "service",
          serviceId: service.id,
          targetPort: port,
          networkId: vip.networkId,
        });
        for (const port of this.#servicePorts(service.id)) add(vip.addr, port, "tcp", route(port));
        // UDP ports by VIP: those of the spec (listening UDP sockets are not discovered).
        for (const p of service.ports) {
          if (p.protocol === "udp") add(vip.addr, p.targetPort, "udp", route(p.targetPort));
        }
      }
    }
    // Host-mode ports: only on the task's node. A task without an address of its own that
    // publishes its target port as is listens on it itself (as a container on the host's
    // network does): nothing to forward.
    for (const task of this.#index.map.tasks) {
      if (task.nodeId !== this.#opts.nodeId) continue;
      const service = this.#index.servicesById.get(task.serviceId);
      for (const p of service?.ports ?? []) {
        if (p.protocol === "sctp" || p.publishMode !== "host" || p.publishedPort === 0) continue;
        if (task.addresses.length === 0 && p.publishedPort === p.targetPort) continue;
        for (const host of publish) {
          add(host, p.publishedPort, p.protocol, {
            kind: "task",
            taskId: task.id,
            targetPort: p.targetPort,
          });
        }
      }
    }
    this.#routes = routes;
    for (const key of [...this.#listeners.keys()]) {
      if (!routes.has(key)) this.#closeListener(key);
    }
    for (const key of routes.keys()) {
      if (this.#listeners.has(key) || this.#closed) continue;
      this.#openListener(key);
    }
    for (const key of this.#bindErrors.keys()) if (!routes.has(key)) this.#bindErrors.delete(key);
  }

  async #ensureEndpoint(): Promise<void> {
    if (this.#endpoint || this.#endpointStarting) return;
    const self = this.#self();
    const listen = this.#opts.listen ??
      (self && self.addr
        ? { host: self.addr, port: this.#opts.meshPort ?? DEFAULT_MESH_PORT }
        : undefined);
    if (listen === undefined) return; // this node's address is not known yet
    const credentials = this.#credentials;
    if (credentials === undefined) return; // no certificate: no mutual TLS
    this.#endpointStarting = true;
    const endpoint = new PeerEndpoint({
      credentials,
      authorize: (addr, port) => this.#authorize(addr, port),
      discover: () => Promise.resolve(Object.fromEntries(this.#localPorts)),
      logger: this.#opts.logger,
    });
    try {
      await endpoint.start(listen.host, listen.port);
      this.#endpoint = endpoint;
    } catch (err) {
      let fallback = false;
      if ((err as { code?: string }).code === "EADDRNOTAVAIL" && !this.#opts.listen) {
        try {
          await endpoint.start("0.0.0.0", listen.port);
          this.#endpoint = endpoint;
          fallback = true;
        } catch { /* reported below */ }
      }
      const message = `mesh: cannot listen for other nodes on ${listen.host}:${listen.port}: ${
        (err as Error).message
      }; tasks on this node are not reachable from other nodes (tried again at each change)`;
      if (!fallback && message !== this.#endpointError) this.#opts.logger?.error(message);
      this.#endpointError = fallback ? "" : message;
    } finally {
      this.#endpointStarting = false;
    }
  }

  /** Whether a peer may reach `addr:port` here: an address of a task of this node, or a port of one. */
  #authorize(addr: string, port: number): boolean {
    if (!(port > 0 && port < 65536)) return false;
    const task = this.#index.tasksByAddr.get(addr);
    if (task) return task.nodeId === this.#opts.nodeId;
    if (addr !== LOOPBACK) return false;
    for (const t of this.#index.map.tasks) {
      if (t.nodeId !== this.#opts.nodeId || t.addresses.length > 0) continue;
      const service = this.#index.servicesById.get(t.serviceId);
      if (service?.ports.some((p) => p.targetPort === port)) return true;
    }
    return false;
  }

  #openListener(key: string): void {
    const udp = key.endsWith("/udp");
    const hostPort = udp ? key.slice(0, -4) : key;
    const i = hostPort.lastIndexOf(":");
    const hostname = hostPort.slice(0, i);
    const port = Number(hostPort.slice(i + 1));
    if (udp) {
      this.#openRelay(key, hostname, port);
      return;
    }
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname, port });
    } catch (err) {
      const message = (err as Error).message;
      if (this.#bindErrors.get(key) !== message) {
        this.#opts.logger?.warn(`mesh: cannot listen on ${key}: ${message}`);
      }
      this.#bindErrors.set(key, message);
      return;
    }
    if (this.#bindErrors.delete(key)) this.#opts.logger?.info(`mesh: now listening on ${key}`);
    this.#listeners.set(key, { listener });
    (async () => {
      for await (const conn of listener) {
        this.#onConnection(key, conn).catch((err) => {
          this.#opts.logger?.warn(`mesh: a connection to ${key} failed: ${err}`);
          try {
            conn.close();
          } catch { /* closed */ }
        });
      }
    })().catch(() => {/* the listener was closed */});
  }

  #openRelay(key: string, host: string, port: number): void {
    const relay = new UdpRelay({
      host,
      port,
      open: (client, reply, onEnd) => this.#openFlow(key, client, reply, onEnd),
      logger: this.#opts.logger,
    });
    const entry = { relay };
    this.#listeners.set(key, entry);
    relay.start().then(() => {
      if (this.#bindErrors.delete(key)) this.#opts.logger?.info(`mesh: now listening on ${key}`);
    }, (err) => {
      if (this.#listeners.get(key) !== entry) return; // closed meanwhile
      this.#listeners.delete(key);
      relay.close();
      const message = (err as Error).message;
      if (this.#bindErrors.get(key) !== message) {
        this.#opts.logger?.warn(`mesh: cannot listen on ${key}: ${message}`);
      }
      this.#bindErrors.set(key, message);
    });
  }

  #closeListener(key: string): void {
    const l = this.#listeners.get(key);
    if (l === undefined) return;
    this.#listeners.delete(key);
    if ("relay" in l) {
      l.relay.close();
      return;
    }
    // Connections already forwarded stay up, as Docker's: only new ones are refused.
    try {
      l.listener.close();
    } catch { /* closed */ }
  }

  /** A new UDP flow to a relay's route: a task chosen in turn, reached here or by trunk. */
  async #openFlow(
    key: string,
    client: UdpClient,
    reply: (datagram: Uint8Array) => void,
    onEnd: () => void,
  ): Promise<UdpTarget | undefined> {
    const route = this.#routes.get(key);
    if (route === undefined || this.#closed) return undefined;
    const candidates = await this.#candidates(route, "udp", client.address, client.port);
    const n = candidates.length;
    if (n === 0) return undefined;
    const start = this.#rr.get(key) ?? 0;
    this.#rr.set(key, (start + 1) % 1_000_000_007);
    for (let i = 0; i < Math.min(n, MAX_TRIES); i++) {
      const task = candidates[(start + i) % n];
      const addr = task.addresses[0]?.addr ?? LOOPBACK;
      if (task.nodeId === this.#opts.nodeId) return localUdpTarget(addr, route.targetPort, reply);
      try {
        const trunk = await this.#trunk(task.nodeId);
        return trunk.openFlow(addr, route.targetPort, reply, onEnd);
      } catch (err) {
        this.#opts.logger?.warn(`mesh: ${key} → task ${task.id}: ${(err as Error).message}`);
      }
    }
    return undefined;
  }

  /**
   * The tasks a client of a route may reach: the task of a host-mode port, or the service's
   * serving tasks, none when isolation refuses the client.
   */
  async #candidates(
    route: Route,
    proto: "tcp" | "udp",
    remoteAddr: string,
    remotePort: number,
    localAddr?: string,
    localPort?: number,
  ): Promise<readonly MeshTask[]> {
    const index = this.#index;
    if (route.kind === "task") {
      const task = index.tasksById.get(route.taskId);
      return task?.serving ? [task] : [];
    }
    const candidates = index.tasksOf(route.serviceId);
    if (route.networkId !== undefined && (this.#opts.isolate ?? true)) {
      const asker = await this.#identify(proto, remoteAddr, remotePort, localAddr, localPort);
      const service = index.servicesById.get(route.serviceId);
      if (
        asker === null || (asker && service && !index.mayReach(asker, service, route.networkId))
      ) {
        return [];
      }
    }
    return candidates;
  }

  async #onConnection(key: string, conn: Deno.TcpConn): Promise<void> {
    conn.setNoDelay(true);
    const route = this.#routes.get(key);
    if (route === undefined) {
      conn.close();
      return;
    }
    const remote = conn.remoteAddr as Deno.NetAddr;
    const local = conn.localAddr as Deno.NetAddr;
    const candidates = await this.#candidates(
      route,
      "tcp",
      remote.hostname,
      remote.port,
      local.hostname,
      local.port,
    );
    const n = candidates.length;
    if (n === 0) {
      conn.close();
      return;
    }
    const start = this.#rr.get(key) ?? 0;
    this.#rr.set(key, (start + 1) % 1_000_000_007);
    for (let i = 0; i < Math.min(n, MAX_TRIES); i++) {
      const task = candidates[(start + i) % n];
      try {
        const upstream = await this.#dial(task, route.targetPort);
        const cut = () => {
          closeQuietly(conn);
          if ("splice" in upstream) upstream.reset();
          else closeQuietly(upstream);
        };
        if (this.#closed) {
          cut();
          return;
        }
        this.#active.add(cut);
        const joined = "splice" in upstream ? upstream.splice(conn) : spliceConns(conn, upstream);
        void joined.finally(() => this.#active.delete(cut));
        return;
      } catch (err) {
        this.#opts.logger?.warn(`mesh: ${key} → task ${task.id}: ${(err as Error).message}`);
      }
    }
    conn.close();
  }

  /** Opens a connection to a task's port, directly or through the trunk to its node. */
  async #dial(task: MeshTask, port: number): Promise<Deno.TcpConn | TrunkStream> {
    // The task's main address, which it is told to bind (`SHOAL_TASK_ADDR`), whatever network
    // the VIP is on: networks scope who may connect (checked at the VIP), not where tasks listen.
    const addr = task.addresses[0]?.addr ?? LOOPBACK;
    if (task.nodeId === this.#opts.nodeId) {
      const conn = await Deno.connect({ hostname: addr, port });
      conn.setNoDelay(true);
      return conn;
    }
    const trunk = await this.#trunk(task.nodeId);
    try {
      return await trunk.openStream(addr, port);
    } catch (err) {
      // The trunk's error names the target and why (refused, unreachable, timed out).
      throw new Error(`node ${task.nodeId}: ${(err as Error).message}`);
    }
  }

  /** The trunk to a node's endpoint: the open one, or a new one. */
  #trunk(nodeId: string): Promise<Trunk> {
    const node = this.#index.nodesById.get(nodeId);
    if (node === undefined || node.addr === "") {
      return Promise.reject(new Error(`node ${nodeId} has no known address`));
    }
    const credentials = this.#credentials;
    if (credentials === undefined) {
      return Promise.reject(new Error("this node has no certificate for the mesh"));
    }
    const ep = this.#peerEndpoint(node);
    const key = `${nodeId}@${ep.host}:${ep.port}`;
    const open = this.#trunks.get(key);
    if (open) {
      return open.then((trunk) => {
        if (trunk.usable) return trunk;
        if (this.#trunks.get(key) === open) this.#trunks.delete(key);
        return this.#trunk(nodeId);
      });
    }
    const opening = openTrunk({
      host: ep.host,
      port: ep.port,
      nodeId,
      credentials,
      sessions: this.#sessions,
    });
    this.#trunks.set(key, opening);
    opening.then((trunk) => {
      if (this.#closed) trunk.close();
      trunk.onClose(() => {
        if (this.#trunks.get(key) === opening) this.#trunks.delete(key);
      });
    }, () => {
      if (this.#trunks.get(key) === opening) this.#trunks.delete(key);
    });
    return opening;
  }

  /**
   * Which task a client is: its source address if that is a task's, else the task whose process
   * holds the socket. Undefined: the host (no task holds it); null: a task the map does not know
   * (not assigned here any more), which is refused.
   */
  async #identify(
    proto: "tcp" | "udp",
    addr: string,
    port: number,
    localAddr?: string,
    localPort?: number,
  ): Promise<MeshTask | null | undefined> {
    const bare = addr.replace(/^::ffff:/, "");
    const byAddr = this.#index.tasksByAddr.get(bare);
    if (byAddr) return byAddr;
    if (!bare.startsWith("127.") || Deno.build.os !== "linux") return undefined;
    const sockets = proto === "tcp" ? await readTcpSockets() : await readUdpSockets();
    const local = localAddr?.replace(/^::ffff:/, "");
    // A UDP socket that did not connect() is bound to every address, not to the source.
    const socket = sockets.find((s) =>
      s.localPort === port &&
      (proto === "udp"
        ? s.localAddr === bare || isWildcard(s.localAddr)
        : s.localAddr === bare && s.remoteAddr === local && s.remotePort === localPort)
    );
    if (socket === undefined || socket.inode === 0) return undefined;
    const taskId = await this.#procs.taskHolding(socket.inode);
    if (taskId === undefined) return undefined;
    return this.#index.tasksById.get(taskId) ?? null;
  }

  #scheduleDiscovery(delayMs: number): void {
    if (this.#closed) return;
    this.#discoverTimer = setTimeout(async () => {
      try {
        if (await this.#discover()) await this.refresh();
      } catch (err) {
        this.#opts.logger?.warn(`mesh: port discovery failed: ${(err as Error).message}`);
      }
      this.#scheduleDiscovery(this.#opts.discoverIntervalMs ?? 2_000);
    }, delayMs);
  }

  /** Finds the ports tasks listen on; returns whether anything changed. */
  async #discover(): Promise<boolean> {
    const index = this.#index;
    const vipServices = new Set(
      index.map.services.filter((s) => s.vips.length > 0).map((s) => s.id),
    );
    const mine = index.map.tasks.filter((t) => t.nodeId === this.#opts.nodeId);
    const local = mine.length === 0 ? new Map<string, number[]>() : await listeningPortsByTask(
      await readTcpSockets(),
      mine.map((t) => ({ id: t.id, addrs: t.addresses.map((a) => a.addr) })),
      await this.#procs.refresh(),
      (pid) => this.#procs.socketInodes(pid),
    );
    const peers = new Set<string>();
    for (const t of index.map.tasks) {
      if (t.nodeId !== this.#opts.nodeId && vipServices.has(t.serviceId)) peers.add(t.nodeId);
    }
    const remote = new Map<string, number[]>();
    await Promise.all([...peers].map(async (nodeId) => {
      const node = index.nodesById.get(nodeId);
      if (!node?.addr) return;
      const ep = this.#peerEndpoint(node);
      const credentials = this.#credentials;
      try {
        if (credentials === undefined) throw new Error("no certificate");
        const found = await discoverPeer({
          host: ep.host,
          port: ep.port,
          nodeId,
          credentials,
          timeoutMs: 2_000,
        });
        for (const [task, ports] of Object.entries(found)) remote.set(task, ports);
      } catch {
        // Keep what that node said last.
        for (const t of index.map.tasks) {
          const kept = this.#remotePorts.get(t.id);
          if (t.nodeId === nodeId && kept) remote.set(t.id, kept);
        }
      }
    }));
    const changed = !samePorts(local, this.#localPorts) || !samePorts(remote, this.#remotePorts);
    this.#localPorts = local;
    this.#remotePorts = remote;
    return changed;
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function samePorts(a: ReadonlyMap<string, number[]>, b: ReadonlyMap<string, number[]>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined || w.length !== v.length || v.some((p, i) => p !== w[i])) return false;
  }
  return true;
}

/** Starts a node's mesh (see {@linkcode Mesh}); resolves once it listens. */
export async function startMesh(options: MeshOptions): Promise<Mesh> {
  const mesh = new Mesh(options);
  await mesh.start();
  return mesh;
}
