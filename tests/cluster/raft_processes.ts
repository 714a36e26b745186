/**
 * Raft managers as separate OS processes on loopback (`raft_node.ts`), for the real-process
 * tests and `deno task bench raft`: start them, find the leader, kill -9 and restart them.
 *
 * @module
 */
import { NodeClient, type NodeStatus } from "./raft_protocol.ts";

const NODE_PROGRAM = new URL("./raft_node.ts", import.meta.url).pathname;

/** One manager process. */
export interface ManagedNode {
  /** Raft id. */
  readonly id: number;
  /** Its data dir (kept across restarts). */
  readonly dataDir: string;
  /** Raft port. */
  readonly raftPort: number;
  /** Client protocol port. */
  readonly clientPort: number;
  /** The running process, if any. */
  child: Deno.ChildProcess | undefined;
  /** A client connection, opened lazily. */
  client: NodeClient | undefined;
  /** What the process wrote to stderr (kept for failures). */
  stderr: string;
  /** Resolves when the current process's output is drained. */
  done: Promise<void> | undefined;
}

/** Options of {@linkcode RaftProcesses.start}. */
export interface RaftProcessesOptions {
  /** Number of managers (default 3). */
  size?: number;
  /** Where the data dirs go (a fresh temp dir by default). */
  dir?: string;
  /** Tick length in ms (default 100). */
  tickMs?: number;
  /** SQLite sync mode (default full). */
  sync?: "full" | "normal" | "off";
  /** Pass --verbose to the nodes (their logs go to stderr). */
  verbose?: boolean;
  /** The driver's `leaderSendsBeforePersist` (default: the driver's, on). */
  leaderSendsBeforePersist?: boolean;
  /** The driver's `asyncSync` (default: the driver's, on). */
  asyncSync?: boolean;
}

/** Free TCP ports on loopback (bound then released: good enough on a test machine). */
export function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A cluster of manager processes. */
export class RaftProcesses {
  readonly nodes: ManagedNode[];
  readonly dir: string;
  readonly #options: RaftProcessesOptions;
  readonly #ownsDir: boolean;

  private constructor(
    nodes: ManagedNode[],
    dir: string,
    ownsDir: boolean,
    o: RaftProcessesOptions,
  ) {
    this.nodes = nodes;
    this.dir = dir;
    this.#ownsDir = ownsDir;
    this.#options = o;
  }

  /** Starts every manager and waits until each listens. */
  static async start(options: RaftProcessesOptions = {}): Promise<RaftProcesses> {
    const size = options.size ?? 3;
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? await Deno.makeTempDir({ prefix: "shoal-raft-procs-" });
    const ports = freePorts(2 * size);
    const nodes: ManagedNode[] = Array.from({ length: size }, (_, i) => ({
      id: i + 1,
      dataDir: `${dir}/node-${i + 1}`,
      raftPort: ports[i],
      clientPort: ports[size + i],
      child: undefined,
      client: undefined,
      stderr: "",
      done: undefined,
    }));
    const cluster = new RaftProcesses(nodes, dir, ownsDir, options);
    try {
      await Promise.all(nodes.map((n) => cluster.startNode(n.id)));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** The node with raft id `id`. */
  node(id: number): ManagedNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new RangeError(`no node ${id}`);
    return n;
  }

  /** The client address of node `id`. */
  clientAddress(id: number): string {
    return `127.0.0.1:${this.node(id).clientPort}`;
  }

  /** Starts (or restarts) node `id`'s process and waits for its READY line. */
  async startNode(id: number): Promise<void> {
    const n = this.node(id);
    if (n.child) throw new Error(`node ${id} is running`);
    const peers = this.nodes.map((x) => `${x.id}=127.0.0.1:${x.raftPort}`).join(",");
    const args = [
      "run",
      "--allow-all",
      NODE_PROGRAM,
      "--id",
      String(id),
      "--data",
      n.dataDir,
      "--raft-port",
      String(n.raftPort),
      "--client-port",
      String(n.clientPort),
      "--peers",
      peers,
      "--tick-ms",
      String(this.#options.tickMs ?? 100),
      "--sync",
      this.#options.sync ?? "full",
      ...(this.#options.verbose ? ["--verbose"] : []),
      ...(this.#options.leaderSendsBeforePersist === undefined
        ? []
        : this.#options.leaderSendsBeforePersist
        ? ["--leader-sends-before-persist"]
        : ["--no-leader-sends-before-persist"]),
      ...(this.#options.asyncSync === false ? ["--sync-on-loop"] : []),
    ];
    const child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    n.child = child;
    const { promise: ready, resolve, reject } = Promise.withResolvers<void>();
    const decoder = new TextDecoder();
    const readOut = (async () => {
      let out = "";
      let seen = false;
      for await (const chunk of child.stdout) {
        out += decoder.decode(chunk, { stream: true });
        if (!seen && out.includes("READY ")) {
          seen = true;
          resolve();
        }
      }
      if (!seen) reject(new Error(`node ${id} exited before READY: ${out}\n${n.stderr}`));
    })();
    const readErr = (async () => {
      for await (const chunk of child.stderr) {
        n.stderr += decoder.decode(chunk, { stream: true });
        if (this.#options.verbose) await Deno.stderr.write(chunk);
      }
    })();
    n.done = Promise.all([readOut, readErr, child.status]).then(() => {});
    const timer = setTimeout(() => reject(new Error(`node ${id} not READY in 30 s`)), 30_000);
    try {
      await ready;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills node `id`'s process (SIGKILL by default) and waits for it to be gone. */
  async kill(id: number, signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const n = this.node(id);
    n.client?.close();
    n.client = undefined;
    if (!n.child) return;
    try {
      n.child.kill(signal);
    } catch {
      // already gone
    }
    await n.done;
    n.child = undefined;
  }

  /** A client connected to node `id` (reconnecting when the last one broke). */
  async client(id: number): Promise<NodeClient> {
    const n = this.node(id);
    if (n.client && !n.client.closed) return n.client;
    n.client = await NodeClient.connect(this.clientAddress(id));
    return n.client;
  }

  /** The ids of the nodes whose process runs. */
  running(): number[] {
    return this.nodes.filter((n) => n.child).map((n) => n.id);
  }

  /** Status of every running node that answers. */
  async statuses(): Promise<NodeStatus[]> {
    const out: NodeStatus[] = [];
    for (const id of this.running()) {
      try {
        out.push(await (await this.client(id)).status());
      } catch {
        // not answering (yet)
      }
    }
    return out;
  }

  /** Waits until a running node leads and the others that answer agree; returns its id. */
  async waitForLeader(timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await this.statuses();
      const leaders = st.filter((s) => s.role === "leader");
      if (leaders.length === 1) {
        const top = leaders[0];
        if (st.every((s) => s.term < top.term || s.leader === top.id)) return top.id;
      }
      if (Date.now() > deadline) {
        throw new Error(`no leader in ${timeoutMs} ms: ${JSON.stringify(st)}`);
      }
      await sleep(20);
    }
  }

  /** Kills every process, closes clients, removes the data dirs it made. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.id)));
    if (this.#ownsDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
