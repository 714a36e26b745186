/**
 * Test harness: N {@linkcode RawNode}s wired in memory (etcd's `network` in raft_test.go).
 *
 * Each node has a {@linkcode MemoryStorage} and a toy state machine (the list of applied
 * entries as text, so snapshots are just that list). Readys are handled by the classic
 * contract: persist, then queue messages, then apply, then advance. Messages wait in one queue
 * until delivered; `stabilize()` delivers until the network is quiet. Faults: `drop`, `cut`,
 * `isolate`, `ignore`, a `msgHook`, undone by `recover`.
 *
 * Pure and seeded (no clock, no global randomness), so a failing run replays exactly.
 *
 * @module
 */
import { decodeConfChange } from "./confchange.ts";
import { describeConfChange, describeMessage } from "./describe.ts";
import { StepPeerNotFoundError } from "./errors.ts";
import type { Config } from "./raft.ts";
import { RawNode } from "./raw_node.ts";
import { MemoryStorage } from "./storage.ts";
import type {
  ConfChange,
  ConfState,
  Entry,
  MessageType,
  NodeId,
  PeerMessage,
  ReadState,
  Ready,
  Snapshot,
} from "./types.ts";

/** A seeded PRNG (mulberry32): numbers in `[0, 1)`. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes of a string (test payloads). */
export function bytes(s: string): Uint8Array {
  return encoder.encode(s);
}

/** What the toy state machine records for an applied entry. */
export function entryText(e: Entry): string {
  if (e.type === "confChange") return `cc:${describeConfChange(decodeConfChange(e.data))}`;
  return e.data.byteLength === 0 ? "" : decoder.decode(e.data);
}

/** Options of {@linkcode Network}. */
export interface NetworkOptions {
  /** Seed of the drop decisions and (unless `config.random` is set) of election timeouts. */
  seed?: number;
  /** Learners of the initial configuration (in addition to the voters). */
  learners?: NodeId[];
  /** Config overrides for every node. */
  config?: Partial<Omit<Config, "id" | "storage">>;
  /** Fills a node's storage (a log, a hard state) before the node starts. */
  prepare?: (id: NodeId, storage: MemoryStorage) => void;
}

/** N raft nodes and the messages between them. */
export class Network {
  /** The nodes, by id (a removed or crashed node is absent). */
  readonly nodes: Map<NodeId, RawNode> = new Map();
  /** Each node's stable storage. */
  readonly storages: Map<NodeId, MemoryStorage> = new Map();
  /** Each node's state machine: `applied[i - 1]` is the text of entry `i`. */
  readonly applied: Map<NodeId, string[]> = new Map();
  /** Each node's configuration as of its applied index. */
  readonly confStates: Map<NodeId, ConfState> = new Map();
  /** ReadIndex answers each node received. */
  readonly readStates: Map<NodeId, ReadState[]> = new Map();
  /** Messages sent and not yet delivered. */
  queue: PeerMessage[] = [];
  /** Called for each message about to be delivered; return false to drop it. */
  msgHook: ((m: PeerMessage) => boolean) | undefined;
  /** When set, every delivered message is described here. */
  trace: string[] | undefined;
  readonly #random: () => number;
  readonly #config: Partial<Omit<Config, "id" | "storage">>;
  readonly #seed: number;
  #dropped = new Map<string, number>();
  #ignored = new Set<MessageType>();

  /** Nodes `ids`, all voters unless listed in `options.learners`. */
  constructor(ids: NodeId[], options: NetworkOptions = {}) {
    this.#seed = options.seed ?? 1;
    this.#random = seededRandom(this.#seed);
    this.#config = options.config ?? {};
    const learners = options.learners ?? [];
    const confState: ConfState = {
      voters: ids.filter((id) => !learners.includes(id)),
      learners,
    };
    for (const id of ids) this.add(id, confState, options.prepare);
  }

  /** Starts node `id` with storage bootstrapped with `confState` (and filled by `prepare`). */
  add(
    id: NodeId,
    confState: ConfState,
    prepare?: (id: NodeId, storage: MemoryStorage) => void,
  ): RawNode {
    const storage = new MemoryStorage({ confState });
    prepare?.(id, storage);
    this.storages.set(id, storage);
    this.applied.set(id, []);
    this.confStates.set(id, confState);
    this.readStates.set(id, []);
    const node = this.#newNode(id, storage, 0);
    this.nodes.set(id, node);
    return node;
  }

  #newNode(id: NodeId, storage: MemoryStorage, applied: number): RawNode {
    return new RawNode({
      electionTick: 10,
      heartbeatTick: 1,
      ...this.#config,
      id,
      storage,
      applied,
      random: this.#config.random ?? seededRandom(this.#seed * 1000 + id),
    });
  }

  /**
   * Crashes node `id` and restarts it from its storage (messages already sent stay in flight); the state
   * machine restarts from the snapshot and replays the committed entries after it.
   */
  restart(id: NodeId): RawNode {
    const storage = this.storages.get(id)!;
    const snap = storage.snapshot();
    this.#restoreStateMachine(id, snap);
    const node = this.#newNode(id, storage, snap.metadata.index);
    this.nodes.set(id, node);
    return node;
  }

  /** Stops node `id` for good (removed from the cluster). */
  remove(id: NodeId): void {
    this.nodes.delete(id);
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
  }

  /** Node `id` (throws if absent). */
  node(id: NodeId): RawNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`No node ${id}`);
    return n;
  }

  /** The leader with the highest term, if any. */
  leader(): NodeId | undefined {
    let best: NodeId | undefined;
    let bestTerm = -1;
    for (const [id, n] of this.nodes) {
      const st = n.status();
      if (st.softState.role === "leader" && st.hardState.term > bestTerm) {
        best = id;
        bestTerm = st.hardState.term;
      }
    }
    return best;
  }

  /** Handles one Ready of node `id`, the classic way. Returns it, or undefined if none. */
  processReady(id: NodeId): Ready | undefined {
    const node = this.nodes.get(id);
    if (!node || !node.hasReady()) return undefined;
    const storage = this.storages.get(id)!;
    const rd = node.ready();
    // 1. Persist.
    if (rd.snapshot) storage.applySnapshot(rd.snapshot);
    storage.append(rd.entries);
    if (rd.hardState) storage.setHardState(rd.hardState);
    // 2. Send (only now that the above is durable).
    for (const m of rd.messages) this.queue.push(m);
    // 3. Apply.
    if (rd.snapshot) this.#restoreStateMachine(id, rd.snapshot);
    const applied = this.applied.get(id)!;
    for (const e of rd.committedEntries) {
      if (e.index !== applied.length + 1) {
        throw new Error(`Node ${id} applied ${applied.length}, then got entry ${e.index}`);
      }
      applied.push(entryText(e));
      if (e.type === "confChange") {
        this.confStates.set(id, node.applyConfChange(decodeConfChange(e.data)));
      }
    }
    for (const rs of rd.readStates) this.readStates.get(id)!.push(rs);
    // 4. Acknowledge.
    node.advance();
    return rd;
  }

  #restoreStateMachine(id: NodeId, snap: Snapshot): void {
    const list = snap.metadata.index === 0 ? [] : JSON.parse(decoder.decode(snap.data));
    this.applied.set(id, list);
    this.confStates.set(id, snap.metadata.confState);
  }

  /** Handles every node's Readys until none has one. */
  processAll(): void {
    let busy = true;
    while (busy) {
      busy = false;
      for (const id of [...this.nodes.keys()].sort((a, b) => a - b)) {
        if (this.processReady(id)) busy = true;
      }
    }
  }

  /** Whether `m` passes the faults currently configured (consumes randomness for drops). */
  #passes(m: PeerMessage): boolean {
    if (this.#ignored.has(m.type)) return false;
    const p = this.#dropped.get(`${m.from}->${m.to}`) ?? 0;
    if (p > 0 && this.#random() < p) return false;
    if (this.msgHook && !this.msgHook(m)) return false;
    return true;
  }

  /**
   * Delivers `m` to its recipient now, if it exists and the faults let it through. Like a
   * transport, reports to the sender how sending a snapshot went.
   */
  deliver(m: PeerMessage): void {
    const node = this.nodes.get(m.to);
    const delivered = node !== undefined && this.#passes(m);
    if (delivered) {
      this.trace?.push(describeMessage(m));
      try {
        node.step(m);
      } catch (e) {
        // A response from a node no longer in the configuration: ignore, as a transport would.
        if (!(e instanceof StepPeerNotFoundError)) throw e;
      }
    }
    if (m.type === "MsgSnap") {
      this.nodes.get(m.from)?.reportSnapshot(m.to, delivered ? "finish" : "failure");
    }
  }

  /** The network lost `m` (taken off the queue): the sender learns of a lost snapshot. */
  discard(m: PeerMessage): void {
    if (m.type === "MsgSnap") this.nodes.get(m.from)?.reportSnapshot(m.to, "failure");
  }

  /** Delivers queued messages and the messages they cause until the network is quiet. */
  stabilize(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      this.processAll();
      if (this.queue.length === 0) return;
      const batch = this.queue;
      this.queue = [];
      for (const m of batch) this.deliver(m);
    }
    throw new Error(`Network did not stabilize in ${maxRounds} rounds`);
  }

  /** Steps `msgs` into their recipients, then stabilizes (etcd's `network.send`). */
  send(...msgs: PeerMessage[]): void {
    for (const m of msgs) this.queue.push(m);
    this.stabilize();
  }

  /** Node `id` campaigns, and the network stabilizes. */
  elect(id: NodeId): void {
    this.node(id).campaign();
    this.stabilize();
  }

  /** Proposes `data` at node `id` (throws ProposalDroppedError if it is not the leader). */
  propose(id: NodeId, data: string): void {
    this.node(id).propose(bytes(data));
  }

  /** Proposes a conf change at node `id`. */
  proposeConfChange(id: NodeId, cc: ConfChange): void {
    this.node(id).proposeConfChange(cc);
  }

  /** Ticks node `id` `n` times (no delivery). */
  tick(id: NodeId, n = 1): void {
    const node = this.node(id);
    for (let i = 0; i < n; i++) node.tick();
  }

  /** `n` rounds of: tick every node once, then stabilize. */
  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.tick();
      this.stabilize();
    }
  }

  /** Node `id` compacts its storage up to its applied index, snapshotting its state. */
  compact(id: NodeId): Snapshot {
    const storage = this.storages.get(id)!;
    const applied = this.applied.get(id)!;
    const index = applied.length;
    const snap = storage.createSnapshot(
      index,
      this.confStates.get(id),
      bytes(JSON.stringify(applied)),
    );
    storage.compact(index);
    return snap;
  }

  /** Drops messages from `from` to `to` with probability `p`. */
  drop(from: NodeId, to: NodeId, p: number): void {
    this.#dropped.set(`${from}->${to}`, p);
  }

  /** Drops everything between `a` and `b`, both ways. */
  cut(a: NodeId, b: NodeId): void {
    this.drop(a, b, 1);
    this.drop(b, a, 1);
  }

  /** Cuts `id` off from every other node. */
  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  /** Drops every message of type `type`. */
  ignore(type: MessageType): void {
    this.#ignored.add(type);
  }

  /** Removes every fault (drops, cuts, ignores, the hook). */
  recover(): void {
    this.#dropped.clear();
    this.#ignored.clear();
    this.msgHook = undefined;
  }
}
