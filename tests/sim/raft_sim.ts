/**
 * The Raft core under deterministic simulation (DESIGN.md, "The Raft core"; issue 3, "How it is
 * proven").
 *
 * One seed drives everything through one {@linkcode SeededRandom}: the scenario (3 or 5 voters,
 * sometimes starting from 1 or 3 and growing by membership changes; the core's knobs; how hostile
 * the network and the machines are), a virtual clock, every node's election randomness
 * (`Config.random` draws from the same source), and every fault. Nothing reads a clock, a timer
 * or `Math.random`, so a seed replays exactly, trace line for trace line.
 *
 * What is simulated, as a discrete-event simulation on virtual milliseconds:
 *
 * - **Drivers.** Each node ticks every 100 ms (±5% skew per incarnation) and runs etcd's classic
 *   Ready loop: take a Ready, then after a simulated disk latency (none, for some seeds: a
 *   synchronous driver like driver.ts) "sync" it: persist its snapshot, entries and hard state
 *   to the node's storage (which therefore holds exactly what is durable), then send its
 *   messages, apply its snapshot and committed entries, collect its ReadStates, and
 *   `advance()`. Between `ready()` and the sync the node keeps being ticked and stepped, which
 *   the core's contract allows. The state machine is the list of applied entries as text; a
 *   snapshot's data is that list as JSON. Like etcd's server, the driver sends a fresh snapshot
 *   of its applied state when the stored one predates the recipient's membership
 *   (`Scenario.freshSnapshots`); with it off, it does what driver.ts does instead: it takes a
 *   snapshot whenever it applies an addition to a compacted log, so that the stored one never
 *   predates a member.
 * - **Crashes.** A crash loses the RawNode, its unsynced Ready, its state machine and its
 *   pending client requests. A restart rebuilds the node from its storage in either way
 *   `InitialState` allows, chosen at random: from the snapshot (`applied` at its index; the
 *   core hands the rest out again), or from the applied index and configuration persisted
 *   after each apply (the driver replays the log up to it, as driver.ts does). Sometimes the
 *   crash hits mid-sync: persisted, but nothing sent. Nodes also pause (a long GC pause:
 *   everything addressed to them waits).
 * - **Network.** Messages are sent when their Ready syncs; each is lost, delayed (sometimes ten
 *   times the usual) or duplicated at random, and dropped by partitions: symmetric splits, and
 *   one-way cuts, that heal after a while. For half the seeds messages overtake each other;
 *   for the other half each link is FIFO, like the real transport's TCP connections. Snapshot
 *   sends are reported to the sender (`reportSnapshot`), and some sends into a partition as
 *   `reportUnreachable`.
 * - **Clients and operators.** Clients propose unique values, mostly at a node that believes
 *   it leads, and issue ReadIndex requests at any node. A proposal is acknowledged only when the
 *   node it was proposed at applies it (as the real driver resolves `propose`). Operators add
 *   learners, promote, demote and remove members (a removed node is shut down for good), move
 *   leadership, and nodes snapshot and compact their logs.
 *
 * After every event the {@linkcode RaftChecker} checks election safety, log matching (on
 * everything persisted), leader completeness, state machine safety (also against every
 * snapshot restored), that no value is applied twice, and that ReadIndex reads see every write
 * acknowledged before they were issued. At the end the network heals (no more losses,
 * duplicates, reordering or slow tail), crashed members restart, and the cluster must elect a
 * leader that commits a fresh proposal, which every live member then applies; slow is fine,
 * but nothing may stall for long. Finally every live member must hold every acknowledged value
 * exactly once, at the index it was acknowledged at.
 *
 * A joining node starts from the genesis configuration (the one every node was bootstrapped
 * with, as at index 0): replaying the log from index 1 then reproduces every configuration, and
 * it is not a member of any of them until its addition commits.
 *
 * @module
 */
import {
  type ConfChange,
  type ConfState,
  decodeConfChange,
  describeConfChange,
  describeConfState,
  describeEntry,
  describeHardState,
  describeMessage,
  describeSnapshot,
  type Entry,
  type InitialState,
  MemoryStorage,
  type NodeId,
  type PeerMessage,
  ProposalDroppedError,
  RawNode,
  type Ready,
  type Role,
  StepPeerNotFoundError,
} from "../../events/raft/mod.ts";
import { SeededRandom } from "../_harness/cluster_history.ts";

/** Virtual milliseconds per tick (Shoal's default raft tick). */
export const TICK_MS = 100;

/** The default length of the faulty phase, in ticks (a minute of virtual time). */
export const DEFAULT_RAFT_TICKS = 600;

// ---------------------------------------------------------------------------------------------
// The checker

/** An invariant was broken. */
export class Violation extends Error {
  /** `message` says which invariant and how. */
  constructor(message: string) {
    super(message);
    this.name = "Violation";
  }
}

/** A value acknowledged to its client: it committed at `index`. */
export interface Acked {
  readonly value: string;
  readonly index: number;
  /** The event at which it was acknowledged. */
  readonly step: number;
}

/** What a node's log holds at an index, for the leader completeness check. */
export type LogLookup = (index: number) => { term: number; text: string } | "compacted" | undefined;

/**
 * Raft's safety properties, checked incrementally as the simulation reports what happened.
 * Pure bookkeeping: no Raft in here, so tests can feed it corrupted histories directly.
 * Every method throws a {@linkcode Violation} as soon as an invariant is broken.
 */
export class RaftChecker {
  /** Leader of each term seen. */
  readonly #leaders = new Map<number, NodeId>();
  /** Every entry ever persisted, by `index/term`: `prevTerm text` (log matching). */
  readonly #persisted = new Map<string, string>();
  /** Highest index any node ever knew committed. */
  #committed = 0;
  /** `commitTerm[i]`: the term in which index `i` was first known committed. */
  readonly #commitTerm: number[] = [0];
  /** `applied[i]`: the entry applied at index `i` (by whichever node applied it first). */
  readonly #applied: ({ term: number; text: string } | undefined)[] = [undefined];
  /** Where each non-empty entry text was applied (nothing may be applied twice). */
  readonly #textIndex = new Map<string, number>();
  /** Acknowledged values, in the order acknowledged. */
  readonly acked: Acked[] = [];
  readonly #ackedByValue = new Map<string, Acked>();
  #maxAcked: Acked | undefined;

  /** Terms that had a leader. */
  get leaderTerms(): number {
    return this.#leaders.size;
  }

  /** Highest index known committed anywhere. */
  get committedIndex(): number {
    return this.#committed;
  }

  /** The acknowledged value with the highest index, if any. */
  get maxAcked(): Acked | undefined {
    return this.#maxAcked;
  }

  /** The acknowledgement of `value`, if it was acknowledged. */
  ackOf(value: string): Acked | undefined {
    return this.#ackedByValue.get(value);
  }

  /** Election safety: `node` is leader in `term`; nobody else may be. */
  leader(node: NodeId, term: number): void {
    const other = this.#leaders.get(term);
    if (other !== undefined && other !== node) {
      throw new Violation(`election safety: two leaders in term ${term}: ${other} and ${node}`);
    }
    this.#leaders.set(term, node);
  }

  /**
   * Log matching: `node` persisted an entry at (`index`, `term`) whose predecessor has term
   * `prevTerm`. Every entry with the same index and term must have the same text and the same
   * predecessor's term, so (by induction) two logs that share an entry share the log up to it.
   */
  persisted(node: NodeId, index: number, term: number, prevTerm: number, text: string): void {
    const key = `${index}/${term}`;
    const value = `${prevTerm} ${text}`;
    const seen = this.#persisted.get(key);
    if (seen === undefined) {
      this.#persisted.set(key, value);
    } else if (seen !== value) {
      throw new Violation(
        `log matching: node ${node} persisted entry ${term}/${index} as [prev term ` +
          `${prevTerm}, ${JSON.stringify(text)}] but it was persisted elsewhere as [prev term ` +
          `${seen.slice(0, seen.indexOf(" "))}, ${
            JSON.stringify(seen.slice(seen.indexOf(" ") + 1))
          }]`,
      );
    }
  }

  /**
   * `node`, in `term`, knows everything up to `commit` committed. The first node to know an
   * index committed is the leader that committed it (or its follower, in the same term), so
   * this records the term each entry was committed in.
   */
  committed(node: NodeId, term: number, commit: number): void {
    void node;
    while (this.#committed < commit) {
      this.#committed++;
      this.#commitTerm[this.#committed] = term;
    }
  }

  /**
   * State machine safety: `node` applied (`index`, `term`, `text`). No other node may apply a
   * different entry at that index, and no text (other than the empty no-op) twice.
   */
  applied(node: NodeId, index: number, term: number, text: string): void {
    if (index > this.#committed) {
      throw new Violation(
        `node ${node} applied index ${index}, beyond the highest commit index ever seen ` +
          `(${this.#committed})`,
      );
    }
    const seen = this.#applied[index];
    if (seen === undefined) {
      this.#applied[index] = { term, text };
    } else if (seen.term !== term || seen.text !== text) {
      throw new Violation(
        `state machine safety: node ${node} applied ${term}/${index} ${JSON.stringify(text)}, ` +
          `but ${seen.term}/${index} ${JSON.stringify(seen.text)} was applied elsewhere`,
      );
    }
    this.#noDuplicate(node, index, text);
  }

  /** State machine safety of a restored snapshot: `list[i - 1]` is the text at index `i`. */
  restored(node: NodeId, list: readonly string[]): void {
    for (let i = 1; i <= list.length; i++) {
      const text = list[i - 1];
      const seen = this.#applied[i];
      if (seen === undefined) {
        throw new Violation(
          `node ${node} restored a snapshot holding index ${i}, which nobody applied`,
        );
      }
      if (seen.text !== text) {
        throw new Violation(
          `state machine safety: node ${node} restored a snapshot with ${JSON.stringify(text)} ` +
            `at index ${i}, but ${JSON.stringify(seen.text)} was applied there`,
        );
      }
      this.#noDuplicate(node, i, text);
    }
  }

  #noDuplicate(node: NodeId, index: number, text: string): void {
    if (text === "") return;
    const at = this.#textIndex.get(text);
    if (at === undefined) this.#textIndex.set(text, index);
    else if (at !== index) {
      throw new Violation(
        `node ${node} applied ${JSON.stringify(text)} twice: at index ${at} and ${index}`,
      );
    }
  }

  /** A client's proposal of `value` was acknowledged: it was applied at `index`. */
  acknowledged(value: string, index: number, step: number): void {
    const seen = this.#applied[index];
    if (seen?.text !== value) {
      throw new Violation(
        `acknowledged ${JSON.stringify(value)} at index ${index}, where ` +
          `${JSON.stringify(seen?.text)} was applied`,
      );
    }
    const a = { value, index, step };
    this.acked.push(a);
    this.#ackedByValue.set(value, a);
    if (this.#maxAcked === undefined || index > this.#maxAcked.index) this.#maxAcked = a;
  }

  /**
   * Leader completeness: `node`, elected in `term`, must hold every entry committed in an
   * earlier term: in its log (with the term it was applied with) or under its snapshot.
   */
  leaderLog(node: NodeId, term: number, lookup: LogLookup): void {
    for (let i = 1; i <= this.#committed; i++) {
      if (this.#commitTerm[i] >= term) continue;
      const got = lookup(i);
      if (got === "compacted") continue;
      const want = this.#applied[i];
      if (got === undefined) {
        throw new Violation(
          `leader completeness: node ${node}, leader of term ${term}, lacks index ${i}, ` +
            `committed in term ${this.#commitTerm[i]}` +
            (want ? ` (${want.term}/${i} ${JSON.stringify(want.text)})` : ""),
        );
      }
      if (want && (want.term !== got.term || want.text !== got.text)) {
        throw new Violation(
          `leader completeness: node ${node}, leader of term ${term}, has ${got.term}/${i} ` +
            `${JSON.stringify(got.text)} where ${want.term}/${i} ${JSON.stringify(want.text)} ` +
            `was committed in term ${this.#commitTerm[i]}`,
        );
      }
    }
  }

  /**
   * Linearizable reads: a ReadIndex read issued after `mustSee` was acknowledged got read index
   * `readIndex`, and was served from `state` (the node's applied entries at the time).
   */
  read(
    node: NodeId,
    context: string,
    mustSee: Acked | undefined,
    readIndex: number,
    state: readonly string[],
  ): void {
    if (mustSee === undefined) return;
    if (readIndex < mustSee.index) {
      throw new Violation(
        `stale read: ${context} at node ${node} got read index ${readIndex}, but ` +
          `${JSON.stringify(mustSee.value)} was acknowledged at index ${mustSee.index} before ` +
          `the read was issued`,
      );
    }
    if (state[mustSee.index - 1] !== mustSee.value) {
      throw new Violation(
        `stale read: ${context} at node ${node} was served from a state without ` +
          `${JSON.stringify(mustSee.value)} at index ${mustSee.index}`,
      );
    }
  }

  /**
   * The end: every acknowledged value is in every live member's applied sequence exactly once,
   * at the index it was acknowledged at (hence in the same order everywhere).
   */
  final(nodes: ReadonlyMap<NodeId, readonly string[]>): void {
    for (const [id, list] of nodes) {
      const where = new Map<string, number>();
      for (let i = 0; i < list.length; i++) {
        const text = list[i];
        if (text === "") continue;
        const at = where.get(text);
        if (at !== undefined) {
          throw new Violation(
            `node ${id} applied ${JSON.stringify(text)} twice: at index ${at} and ${i + 1}`,
          );
        }
        where.set(text, i + 1);
      }
      for (const a of this.acked) {
        const at = where.get(a.value);
        if (at === undefined) {
          throw new Violation(
            `lost acknowledged value: node ${id} never applied ${JSON.stringify(a.value)} ` +
              `(acknowledged at index ${a.index}; it applied ${list.length} entries)`,
          );
        }
        if (at !== a.index) {
          throw new Violation(
            `node ${id} applied acknowledged ${JSON.stringify(a.value)} at index ${at}, not ` +
              `${a.index}`,
          );
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The event queue

type SimEvent =
  | { kind: "tick"; node: NodeId; inc: number }
  | { kind: "sync"; node: NodeId; inc: number }
  | { kind: "deliver"; msg: PeerMessage; dup: boolean; senderInc: number }
  | {
    kind: "report";
    node: NodeId;
    inc: number;
    about: NodeId;
    what: "snapFinish" | "snapFailure" | "unreachable";
  }
  | { kind: "chaos"; action: Action }
  | { kind: "restart"; node: NodeId }
  | { kind: "shutdown"; node: NodeId }
  | { kind: "heal"; epoch: number };

interface Queued {
  at: number;
  seq: number;
  ev: SimEvent;
}

/** A binary min-heap of events by (time, insertion order): equal times run first-in first-out. */
class EventQueue {
  readonly #heap: Queued[] = [];
  #seq = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(at: number, ev: SimEvent): void {
    const h = this.#heap;
    h.push({ at, seq: this.#seq++, ev });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  pop(): Queued | undefined {
    const h = this.#heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l], h[m])) m = l;
        if (r < h.length && before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Queued, b: Queued): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

// ---------------------------------------------------------------------------------------------
// The scenario a seed draws

/** Everything a seed decides up front. */
export interface Scenario {
  /** Voters the cluster grows to. */
  readonly targetVoters: number;
  /** Voters it starts with. */
  readonly initialVoters: number;
  readonly electionTick: number;
  readonly heartbeatTick: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly maxSizePerMsg: number;
  readonly maxInflightMsgs: number;
  readonly maxCommittedSizePerReady: number;
  /** Probability that a message is lost. */
  readonly drop: number;
  /** Probability that a message is delivered twice. */
  readonly dup: number;
  /** Usual one-way latency, at most, in ms. */
  readonly latency: number;
  /** Probability of a latency ten times the usual. */
  readonly slow: number;
  /** Messages overtake each other (else each link is FIFO, like a TCP connection). */
  readonly reorder: boolean;
  /**
   * The driver sends a fresh snapshot when the stored one predates the recipient's membership
   * (etcd's server does; see `#snapshotFor`). Off, it does what driver.ts does instead: it
   * snapshots when it applies an addition (`#snapshotForNewMember`); with neither, a joining
   * node livelocks (regressions.ts, seed 1).
   */
  readonly freshSnapshots: boolean;
  /**
   * A broken driver, for tests of the simulator: it sends a Ready's messages before persisting
   * it, and sometimes crashes in between (votes and acknowledgements then promise state that
   * is lost).
   */
  readonly sendBeforePersist: boolean;
  /**
   * The driver's `leaderSendsBeforePersist`: a node that leads when it takes a Ready sends the
   * Ready's messages at once, before the disk sync (half the seeds, from a stream of its own so
   * that the rest of each seed's scenario is as it was).
   */
  readonly leaderSendsBeforePersist: boolean;
  /** Longest disk sync, ms (0 for some: the driver syncs at once). */
  readonly disk: number;
  /** Mean virtual ms between two actions of each kind (0: never). */
  readonly every: Readonly<Record<Action, number>>;
}

type Action =
  | "propose"
  | "read"
  | "crash"
  | "pause"
  | "partition"
  | "compact"
  | "membership"
  | "transfer"
  | "campaign";

/** One line: `targetVoters=5 initialVoters=1 … every.crash=9205 …`. */
export function describeScenario(sc: Scenario): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(sc)) {
    if (typeof v === "object") {
      for (const [k2, v2] of Object.entries(v)) parts.push(`${k}.${k2}=${v2}`);
    } else {
      parts.push(`${k}=${typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : v}`);
    }
  }
  return parts.join(" ");
}

/** Draws a seed's scenario from `rnd`. */
function drawScenario(rnd: SeededRandom): Scenario {
  const targetVoters = rnd.chance(0.5) ? 3 : 5;
  const initialVoters = rnd.chance(0.5)
    ? targetVoters
    : rnd.pick(targetVoters === 5 ? [1, 3] : [1]);
  const hostile = rnd.next();
  return {
    targetVoters,
    initialVoters,
    electionTick: rnd.chance(0.7) ? 10 : rnd.pick([3, 5, 20]),
    heartbeatTick: rnd.chance(0.8) ? 1 : 2,
    checkQuorum: rnd.chance(0.85),
    preVote: rnd.chance(0.85),
    maxSizePerMsg: rnd.pick([1024 * 1024, 1024 * 1024, 64, 8, 0]),
    maxInflightMsgs: rnd.pick([256, 256, 8, 2, 1]),
    maxCommittedSizePerReady: rnd.pick([Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, 32, 1]),
    drop: rnd.chance(0.3) ? 0 : rnd.next() * 0.15 * hostile,
    dup: rnd.chance(0.4) ? 0 : rnd.next() * 0.08,
    latency: rnd.pick([2, 5, 20, 60]),
    slow: rnd.chance(0.5) ? 0 : rnd.next() * 0.1,
    reorder: rnd.chance(0.5),
    freshSnapshots: true,
    sendBeforePersist: false,
    leaderSendsBeforePersist: false,
    disk: rnd.chance(0.3) ? 0 : rnd.pick([1, 5, 20]),
    every: {
      propose: rnd.pick([20, 50, 100]),
      read: rnd.pick([100, 300, 1000]),
      crash: Math.round(2000 + (1 - hostile) * 20_000),
      pause: rnd.chance(0.5) ? 0 : 20_000,
      partition: Math.round(3000 + (1 - hostile) * 20_000),
      compact: rnd.pick([500, 1000, 3000]),
      membership: rnd.chance(0.2) ? 0 : rnd.pick([2000, 4000, 8000]),
      transfer: rnd.chance(0.3) ? 0 : rnd.pick([5000, 15_000]),
      campaign: rnd.chance(0.7) ? 0 : 20_000,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The simulation

/** What one seed's run found. */
export interface RaftSeedResult {
  seed: number;
  /** Events simulated (each one followed by the checks). */
  events: number;
  /** Virtual time simulated, ms. */
  virtualMs: number;
  /** Proposals acknowledged. */
  acked: number;
  /** Proposals the core refused (not the leader, transfer, pending conf change). */
  refused: number;
  /** Terms that had a leader. */
  leaderTerms: number;
  crashes: number;
  partitions: number;
  /** Snapshots received from a leader and installed. */
  snapshotsInstalled: number;
  confChangesApplied: number;
  readsServed: number;
  /** Voters at the end. */
  voters: number;
  /** The first violation, if any. */
  violation?: string;
}

/** Options of {@linkcode runRaftSeed}. */
export interface RaftSimOptions {
  /** Length of the faulty phase, in ticks (100 ms each). Default {@linkcode DEFAULT_RAFT_TICKS}. */
  ticks?: number;
  /** Receives one line per event. */
  trace?: (line: string) => void;
  /** Overrides of the drawn scenario (tests). */
  scenario?: Partial<Scenario>;
}

interface PendingRead {
  readonly issuedAt: number;
  readonly mustSee: Acked | undefined;
  index?: number;
}

/** One simulated machine: durable storage, and (while up) a RawNode and its driver's state. */
interface SimNode {
  readonly id: NodeId;
  /** What is durable: written only when a Ready syncs. */
  readonly storage: SimStorage;
  /** The running core, absent while the node is down. */
  raw?: RawNode;
  /** Incremented at every start: events of an earlier life are stale. */
  inc: number;
  /** The Ready taken and not yet synced. */
  inflight?: Ready;
  /** Its messages went out when it was taken (`Scenario.leaderSendsBeforePersist`). */
  inflightSent?: boolean;
  /** The state machine: the text of each applied entry, from index 1. */
  applied: string[];
  /** The configuration as of the applied index. */
  confState: ConfState;
  /** Proposals made here in this life, awaiting their application here. */
  pending: Set<string>;
  /** ReadIndex requests made here in this life, by context. */
  reads: Map<string, PendingRead>;
  /** Handles nothing until then (a long pause). */
  pausedUntil: number;
  /** Removed from the cluster and shut down for good. */
  removed: boolean;
  /** Ms between ticks in this life. */
  tickMs: number;
  /** What the checker last saw. */
  role: Role;
  term: number;
  commit: number;
  /** The highest `lastIndex + applied` seen (liveness: progress). */
  highest: number;
  /** Leader completeness is checked once the first Ready taken as leader of this term syncs. */
  leaderCheck?: { term: number; armed: boolean };
}

/**
 * A node's durable storage: {@linkcode MemoryStorage}, plus the applied index and the
 * configuration as of it, which a driver may persist after applying (as driver.ts does) to
 * restart from there rather than from the snapshot.
 */
class SimStorage extends MemoryStorage {
  /** Persisted after each applied batch. */
  applied: { index: number; confState: ConfState } | undefined;
  /** What `initialState` reports: the snapshot's configuration, or the applied one. */
  restartFromApplied = false;

  override initialState(): InitialState {
    const s = super.initialState();
    return this.restartFromApplied && this.applied
      ? { hardState: s.hardState, confState: this.applied.confState }
      : s;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const textCache = new WeakMap<Entry, string>();

/** What the state machine records for an entry: its value, `""` for a no-op, `cc:…`. */
export function entryText(e: Entry): string {
  let t = textCache.get(e);
  if (t === undefined) {
    t = e.type === "confChange"
      ? `cc:${describeConfChange(decodeConfChange(e.data))}`
      : decoder.decode(e.data);
    textCache.set(e, t);
  }
  return t;
}

/** Encodes a state machine (the applied texts) as snapshot data. */
export function encodeState(list: readonly string[]): Uint8Array {
  return encoder.encode(JSON.stringify(list));
}

/** Decodes snapshot data. */
export function decodeState(data: Uint8Array): string[] {
  return data.byteLength === 0 ? [] : JSON.parse(decoder.decode(data));
}

/** Hard cap on events, against a runaway simulation. */
const MAX_EVENTS = 1_000_000;

/**
 * Messages in flight per directed link, at most. Like the real transport's bounded queue per
 * peer (transport.ts, `maxQueueMessages`), a full link drops what is sent and reports the peer
 * unreachable. Without a bound, a reordering network, one-entry messages and a large in-flight
 * window feed back into a resend storm (each stale rejection then late acknowledgement sends
 * the whole window again).
 */
const LINK_CAPACITY = 512;

class RaftSim {
  readonly rnd: SeededRandom;
  readonly sc: Scenario;
  readonly check = new RaftChecker();
  readonly queue = new EventQueue();
  readonly nodes = new Map<NodeId, SimNode>();
  readonly trace: ((line: string) => void) | undefined;
  readonly genesis: ConfState;
  now = 0;
  events = 0;
  /** Directed links cut by the current partition: `from>to`. */
  blocked = new Set<string>();
  /** Bumped by each partition, so a stale heal does nothing. */
  epoch = 0;
  chaos = true;
  /** The network's loss, duplication and slow-tail rates (zero once healed). */
  drop: number;
  dup: number;
  slow: number;
  reorder: boolean;
  /** Per link, when its last message arrives (FIFO links). */
  readonly #arrival = new Map<string, number>();
  /** Per link, messages in flight. */
  readonly #inFlight = new Map<string, number>();
  nextId: NodeId;
  readonly maxId: NodeId;
  serial = 0;
  stats = {
    refused: 0,
    crashes: 0,
    partitions: 0,
    snapshotsInstalled: 0,
    confChangesApplied: 0,
    readsServed: 0,
  };
  #touched = new Set<NodeId>();

  constructor(seed: number, overrides: Partial<Scenario>, trace?: (line: string) => void) {
    this.rnd = new SeededRandom(seed ^ 0x7a6f7);
    this.sc = {
      ...drawScenario(this.rnd),
      leaderSendsBeforePersist: new SeededRandom(seed ^ 0x1ead5).next() < 0.5,
      ...overrides,
    };
    this.trace = trace;
    this.drop = this.sc.drop;
    this.dup = this.sc.dup;
    this.slow = this.sc.slow;
    this.reorder = this.sc.reorder;
    const voters = Array.from({ length: this.sc.initialVoters }, (_, i) => i + 1);
    this.genesis = { voters, learners: [] };
    this.nextId = voters.length + 1;
    this.maxId = this.sc.targetVoters + 6;
    this.log(`scenario ${describeScenario(this.sc)}`);
    for (const id of voters) this.#createNode(id);
    for (const action of Object.keys(this.sc.every) as Action[]) {
      if (this.sc.every[action] > 0) {
        this.queue.push(this.#interval(action), { kind: "chaos", action });
      }
    }
  }

  log(line: string): void {
    this.trace?.(`${(this.now / 1000).toFixed(3).padStart(8)}s ${line}`);
  }

  /** When to take `action` next: exponentially distributed waits (a Poisson process). */
  #interval(action: Action): number {
    return this.now + 1 + Math.floor(-Math.log(1 - this.rnd.next()) * this.sc.every[action]);
  }

  #createNode(id: NodeId): SimNode {
    const n: SimNode = {
      id,
      storage: new SimStorage({ confState: this.genesis }),
      inc: 0,
      applied: [],
      confState: this.genesis,
      pending: new Set(),
      reads: new Map(),
      pausedUntil: 0,
      removed: false,
      tickMs: TICK_MS,
      role: "follower",
      term: 0,
      commit: 0,
      highest: 0,
    };
    this.nodes.set(id, n);
    this.#start(n);
    return n;
  }

  /**
   * Starts (or restarts) `n` from its storage, in one of the two ways `InitialState` allows:
   * from the snapshot (`applied` at its index; the core hands out the committed entries after
   * it again), or from the persisted applied index and configuration (the driver replays the
   * entries up to it into the state machine itself, as driver.ts does).
   */
  #start(n: SimNode): void {
    n.inc++;
    const st = n.storage;
    const snap = st.snapshot();
    n.applied = decodeState(snap.data);
    if (n.applied.length !== snap.metadata.index) {
      throw new Violation(
        `node ${n.id}'s snapshot at index ${snap.metadata.index} holds ${n.applied.length} entries`,
      );
    }
    this.check.restored(n.id, n.applied);
    n.confState = snap.metadata.confState;
    const durable = st.applied;
    st.restartFromApplied = durable !== undefined && durable.index > snap.metadata.index &&
      this.rnd.chance(0.5);
    if (st.restartFromApplied && durable) {
      for (const e of st.entries(snap.metadata.index + 1, durable.index + 1, Infinity)) {
        const text = entryText(e);
        this.check.applied(n.id, e.index, e.term, text);
        n.applied.push(text);
      }
      n.confState = durable.confState;
    }
    n.pending = new Set();
    n.reads = new Map();
    n.inflight = undefined;
    n.leaderCheck = undefined;
    n.pausedUntil = 0;
    n.tickMs = Math.round(TICK_MS * (0.95 + 0.1 * this.rnd.next()));
    n.raw = new RawNode({
      id: n.id,
      storage: st,
      applied: n.applied.length,
      random: () => this.rnd.next(),
      electionTick: this.sc.electionTick,
      heartbeatTick: this.sc.heartbeatTick,
      checkQuorum: this.sc.checkQuorum,
      preVote: this.sc.preVote,
      maxSizePerMsg: this.sc.maxSizePerMsg,
      maxInflightMsgs: this.sc.maxInflightMsgs,
      maxCommittedSizePerReady: this.sc.maxCommittedSizePerReady,
    });
    const status = n.raw.status();
    n.role = status.softState.role;
    n.term = status.hardState.term;
    n.commit = status.hardState.commit;
    this.queue.push(this.now + 1 + this.rnd.int(n.tickMs), {
      kind: "tick",
      node: n.id,
      inc: n.inc,
    });
    this.#touched.add(n.id);
  }

  #up(id: NodeId): SimNode | undefined {
    const n = this.nodes.get(id);
    return n?.raw ? n : undefined;
  }

  /** Live nodes, by id. */
  #live(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.raw !== undefined);
  }

  /** Live nodes that believe they lead, highest term first. */
  #leaders(): SimNode[] {
    return this.#live().filter((n) => n.role === "leader").sort((a, b) => b.term - a.term);
  }

  // -------------------------------------------------------------------------------------------
  // The loop

  /** Runs events until virtual time `until` (or `done` says stop). Returns false at the cap. */
  runUntil(until: number, done?: () => boolean): void {
    for (;;) {
      if (done?.()) return;
      const q = this.queue.pop();
      if (q === undefined) return;
      if (q.at > until) {
        this.queue.push(q.at, q.ev);
        this.now = until;
        return;
      }
      this.now = q.at;
      this.events++;
      if (this.events > MAX_EVENTS) {
        throw new Violation(`runaway simulation: more than ${MAX_EVENTS} events`);
      }
      this.#handle(q.ev);
      this.#afterEvent();
    }
  }

  #handle(ev: SimEvent): void {
    switch (ev.kind) {
      case "tick": {
        const n = this.nodes.get(ev.node);
        if (!n?.raw || n.inc !== ev.inc) return;
        if (this.#postpone(n, ev)) return;
        if (this.trace) this.log(`tick ${n.id}`);
        n.raw.tick();
        this.#touched.add(n.id);
        this.queue.push(this.now + n.tickMs, ev);
        return;
      }
      case "sync": {
        const n = this.nodes.get(ev.node);
        if (!n?.raw || n.inc !== ev.inc) return;
        if (this.#postpone(n, ev)) return;
        this.#sync(n);
        return;
      }
      case "deliver":
        this.#deliver(ev);
        return;
      case "report": {
        const n = this.nodes.get(ev.node);
        if (!n?.raw || n.inc !== ev.inc) return;
        if (this.#postpone(n, ev)) return;
        if (ev.what === "unreachable") {
          this.log(`report ${n.id}: ${ev.about} unreachable`);
          n.raw.reportUnreachable(ev.about);
        } else {
          const status = ev.what === "snapFinish" ? "finish" : "failure";
          this.log(`report ${n.id}: snapshot to ${ev.about} ${status}`);
          n.raw.reportSnapshot(ev.about, status);
        }
        this.#touched.add(n.id);
        return;
      }
      case "chaos":
        if (!this.chaos) return;
        this.#chaos(ev.action);
        this.queue.push(this.#interval(ev.action), ev);
        return;
      case "restart": {
        const n = this.nodes.get(ev.node);
        if (!n || n.raw || n.removed) return;
        this.#start(n);
        const hs = n.storage.initialState().hardState;
        this.log(
          `restart ${n.id}: ${describeHardState(hs)}, snapshot ${
            describeSnapshot(n.storage.snapshot())
          }, last index ${n.storage.lastIndex()}, applied ${n.applied.length}` +
            (n.storage.restartFromApplied ? " (persisted)" : " (from the snapshot)"),
        );
        return;
      }
      case "shutdown": {
        const n = this.nodes.get(ev.node);
        if (!n || n.removed) return;
        this.log(`shutdown ${n.id} (removed from the cluster)`);
        n.removed = true;
        n.raw = undefined;
        n.inflight = undefined;
        n.inc++;
        return;
      }
      case "heal":
        if (ev.epoch !== this.epoch || this.blocked.size === 0) return;
        this.blocked.clear();
        this.log("heal: the network is whole again");
        return;
    }
  }

  /** While `n` is paused, its events wait for the pause to end. */
  #postpone(n: SimNode, ev: SimEvent): boolean {
    if (this.now >= n.pausedUntil) return false;
    this.queue.push(n.pausedUntil, ev);
    return true;
  }

  /** After every event: checks on the nodes it touched, and their next Ready taken. */
  #afterEvent(): void {
    if (this.#touched.size === 0) return;
    const ids = [...this.#touched].sort((a, b) => a - b);
    this.#touched.clear();
    for (const id of ids) {
      const n = this.nodes.get(id);
      if (!n?.raw) continue;
      this.#observe(n);
      if (n.inflight === undefined && n.raw.hasReady()) this.#takeReady(n);
    }
  }

  /** Election safety and commit terms, from `n`'s status. */
  #observe(n: SimNode): void {
    const st = n.raw!.status();
    const role = st.softState.role;
    const term = st.hardState.term;
    const commit = st.hardState.commit;
    if (role !== n.role || term !== n.term) {
      if (this.trace) {
        this.log(`role ${n.id}: ${role} in term ${term} (leader ${st.softState.lead})`);
      }
    }
    if (role === "leader") {
      this.check.leader(n.id, term);
      if (n.role !== "leader" || n.term !== term) n.leaderCheck = { term, armed: false };
    }
    if (commit !== n.commit) {
      if (commit < n.commit) {
        throw new Violation(`node ${n.id}'s commit index went back from ${n.commit} to ${commit}`);
      }
      if (this.trace) this.log(`commit ${n.id}: ${commit} (term ${term})`);
      this.check.committed(n.id, term, commit);
    }
    n.role = role;
    n.term = term;
    n.commit = commit;
  }

  #takeReady(n: SimNode): void {
    const rd = n.raw!.ready();
    n.inflight = rd;
    // driver.ts's leaderSendsBeforePersist: a node that leads when the Ready is taken sends at
    // once, while its disk works (a crash before the sync loses the Ready, not the sends).
    n.inflightSent = this.sc.leaderSendsBeforePersist && rd.messages.length > 0 &&
      (rd.softState?.role ?? n.role) === "leader";
    if (n.inflightSent) {
      if (this.trace) this.log(`send ${n.id}: ${rd.messages.length} before persisting (leader)`);
      for (const m of rd.messages) this.#send(n, m);
    }
    if (n.leaderCheck) n.leaderCheck.armed = true;
    const delay = this.sc.disk === 0 ? 0 : this.rnd.int(this.sc.disk + 1);
    this.queue.push(this.now + delay, { kind: "sync", node: n.id, inc: n.inc });
  }

  /** The driver handles `n`'s Ready: persist, send, apply, advance. */
  #sync(n: SimNode): void {
    const rd = n.inflight!;
    const raw = n.raw!;
    n.inflight = undefined;
    const st = n.storage;
    if (this.sc.sendBeforePersist) {
      for (const m of rd.messages) this.#send(n, m);
      if (this.chaos && this.rnd.chance(0.02)) {
        this.#crash(n, "after sending, before persisting (a broken driver)");
        return;
      }
    }
    // 1. Persist: this is all that survives a crash.
    if (rd.snapshot) {
      st.applySnapshot(rd.snapshot);
      this.stats.snapshotsInstalled++;
    }
    if (rd.entries.length > 0) {
      st.append(rd.entries);
      const first = st.firstIndex();
      for (const e of rd.entries) {
        if (e.index < first) continue;
        this.check.persisted(n.id, e.index, e.term, st.term(e.index - 1), entryText(e));
      }
    }
    if (rd.hardState) st.setHardState(rd.hardState);
    if (this.trace) {
      this.log(
        `sync ${n.id}:` +
          (rd.softState ? ` soft ${rd.softState.role}/${rd.softState.lead}` : "") +
          (rd.hardState ? ` hard ${describeHardState(rd.hardState)}` : "") +
          (rd.snapshot ? ` snapshot ${describeSnapshot(rd.snapshot)}` : "") +
          (rd.entries.length
            ? ` entries ${rd.entries[0].index}..${rd.entries.at(-1)!.index}`
            : "") +
          (rd.messages.length ? ` send ${rd.messages.length}` : "") +
          (rd.committedEntries.length
            ? ` apply ${rd.committedEntries[0].index}..${rd.committedEntries.at(-1)!.index}`
            : "") +
          (rd.mustSync ? "" : " (no fsync)"),
      );
    }
    if (this.chaos && this.rnd.chance(0.0005)) {
      // The machine dies between the fsync and the sends.
      this.#crash(n, "after persisting, before sending");
      return;
    }
    // 2. Send.
    if (!this.sc.sendBeforePersist && !n.inflightSent) {
      for (const m of rd.messages) this.#send(n, m);
    }
    n.inflightSent = false;
    // 3. Apply.
    if (rd.snapshot) {
      const list = decodeState(rd.snapshot.data);
      if (list.length !== rd.snapshot.metadata.index) {
        throw new Violation(
          `snapshot at index ${rd.snapshot.metadata.index} holds ${list.length} entries`,
        );
      }
      this.check.restored(n.id, list);
      n.applied = list;
      n.confState = rd.snapshot.metadata.confState;
      if (this.trace) this.log(`apply ${n.id}: snapshot ${describeSnapshot(rd.snapshot)}`);
    }
    for (const e of rd.committedEntries) this.#apply(n, raw, e);
    if (rd.snapshot || rd.committedEntries.length > 0) {
      st.applied = { index: n.applied.length, confState: n.confState };
    }
    for (const rs of rd.readStates) {
      const ctx = decoder.decode(rs.context);
      const r = n.reads.get(ctx);
      if (r === undefined || r.index !== undefined) {
        this.log(`read ${n.id}: ${ctx} at index ${rs.index} (not pending here: ignored)`);
        continue;
      }
      r.index = rs.index;
      this.log(`read ${n.id}: ${ctx} gets read index ${rs.index}`);
    }
    // 4. Acknowledge.
    raw.advance();
    this.#touched.add(n.id);
    this.#serveReads(n);
    if (n.leaderCheck?.armed) {
      const term = n.leaderCheck.term;
      n.leaderCheck = undefined;
      this.check.leaderLog(n.id, term, (i) => {
        if (i < st.firstIndex()) return "compacted";
        if (i > st.lastIndex()) return undefined;
        const [e] = st.entries(i, i + 1, Number.POSITIVE_INFINITY);
        return { term: e.term, text: entryText(e) };
      });
    }
  }

  #apply(n: SimNode, raw: RawNode, e: Entry): void {
    if (e.index !== n.applied.length + 1) {
      throw new Violation(
        `node ${n.id} applied up to ${n.applied.length}, then was given entry ${e.index}`,
      );
    }
    const text = entryText(e);
    this.check.applied(n.id, e.index, e.term, text);
    n.applied.push(text);
    let note = "";
    if (e.type === "confChange") {
      const cc = decodeConfChange(e.data);
      const wasMember = n.confState.voters.includes(cc.nodeId) ||
        n.confState.learners.includes(cc.nodeId);
      n.confState = raw.applyConfChange(cc);
      if (!this.sc.freshSnapshots && cc.type !== "removeNode" && !wasMember) {
        this.#snapshotForNewMember(n, e.index);
      }
      this.stats.confChangesApplied++;
      note = ` -> ${describeConfState(n.confState)}`;
      if (cc.type === "removeNode") this.#retire(cc.nodeId);
    } else if (n.pending.delete(text)) {
      this.check.acknowledged(text, e.index, this.events);
      note = " (acknowledged)";
    }
    if (this.trace) this.log(`apply ${n.id}: ${describeEntry(e)}${note}`);
  }

  /**
   * driver.ts (`#snapshotForNewMember`): once the log is compacted, a member can only join from
   * a snapshot, and it refuses one whose configuration lacks it; so when an addition is
   * applied, the driver takes a snapshot at its index, with the new configuration. Modelled
   * when the driver does not send fresh snapshots (`Scenario.freshSnapshots` off).
   */
  #snapshotForNewMember(n: SimNode, index: number): void {
    const st = n.storage;
    if (st.firstIndex() <= 1 || index <= st.snapshot().metadata.index) return;
    st.createSnapshot(index, n.confState, encodeState(n.applied));
    if (this.trace) this.log(`snapshot ${n.id}: at ${index} for the new member`);
  }

  /** A committed removal: the removed node is shut down for good, soon. */
  #retire(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n || n.removed) return;
    this.queue.push(this.now + this.rnd.int(1000), { kind: "shutdown", node: id });
  }

  #serveReads(n: SimNode): void {
    for (const [ctx, r] of n.reads) {
      if (r.index === undefined) {
        if (this.now - r.issuedAt > 5000) n.reads.delete(ctx); // the client gave up
        continue;
      }
      if (n.applied.length < r.index) continue;
      this.check.read(n.id, ctx, r.mustSee, r.index, n.applied);
      this.stats.readsServed++;
      this.log(`read ${n.id}: ${ctx} served at applied index ${n.applied.length}`);
      n.reads.delete(ctx);
    }
  }

  // -------------------------------------------------------------------------------------------
  // The network

  #send(from: SimNode, msg: PeerMessage): void {
    const m = msg.type === "MsgSnap" ? this.#snapshotFor(from, msg) : msg;
    const link = `${m.from}>${m.to}`;
    const what = m.type === "MsgSnap" ? "snapFailure" : "unreachable";
    if (this.blocked.has(link)) {
      if (this.trace) this.log(`drop ${describeMessage(m)} (partition)`);
      if (m.type === "MsgSnap" || this.rnd.chance(0.3)) this.#report(from, m.to, what);
      return;
    }
    if (this.drop > 0 && this.rnd.chance(this.drop)) {
      if (this.trace) this.log(`drop ${describeMessage(m)} (lost)`);
      if (m.type === "MsgSnap") this.#report(from, m.to, what);
      return;
    }
    const inFlight = this.#inFlight.get(link) ?? 0;
    if (inFlight >= LINK_CAPACITY) {
      if (this.trace) this.log(`drop ${describeMessage(m)} (link full)`);
      this.#report(from, m.to, what);
      return;
    }
    this.#inFlight.set(link, inFlight + 1);
    this.queue.push(this.#arrive(link), {
      kind: "deliver",
      msg: m,
      dup: false,
      senderInc: from.inc,
    });
    if (this.dup > 0 && this.rnd.chance(this.dup)) {
      if (this.trace) this.log(`dup ${describeMessage(m)}`);
      this.#inFlight.set(link, inFlight + 2);
      this.queue.push(this.#arrive(link), {
        kind: "deliver",
        msg: m,
        dup: true,
        senderInc: from.inc,
      });
    }
  }

  /** When a message sent now on `link` arrives: never before an earlier one on a FIFO link. */
  #arrive(link: string): number {
    const at = this.#latency();
    if (this.reorder) return at;
    const fifo = Math.max(at, this.#arrival.get(link) ?? 0);
    this.#arrival.set(link, fifo);
    return fifo;
  }

  /**
   * The snapshot the driver really sends. The core names the stored one, which may predate the
   * recipient's addition to the cluster; the recipient would refuse it (it is not in its
   * configuration) and the leader would send it again, forever. Like etcd's server
   * (`createMergedSnapshotMessage`), the driver then sends a fresh snapshot of its applied
   * state instead, and sometimes does so anyway.
   */
  #snapshotFor(from: SimNode, m: Extract<PeerMessage, { type: "MsgSnap" }>): PeerMessage {
    const cs = m.snapshot.metadata.confState;
    const member = cs.voters.includes(m.to) || cs.learners.includes(m.to);
    if (!this.sc.freshSnapshots || (member && this.rnd.chance(0.5))) return m;
    const index = from.applied.length;
    if (index <= m.snapshot.metadata.index) return m;
    const snapshot = {
      metadata: { index, term: from.storage.term(index), confState: from.confState },
      data: encodeState(from.applied),
    };
    if (this.trace) {
      this.log(`fresh snapshot for ${m.to} at ${from.id}: ${describeSnapshot(snapshot)}`);
    }
    return { ...m, snapshot };
  }

  #latency(): number {
    const base = 1 + this.rnd.int(this.sc.latency);
    return this.now + (this.slow > 0 && this.rnd.chance(this.slow) ? base * 10 : base);
  }

  /** The transport tells the sender how a send went, a moment later. */
  #report(from: SimNode, about: NodeId, what: "snapFinish" | "snapFailure" | "unreachable"): void {
    this.queue.push(this.now + 1 + this.rnd.int(5), {
      kind: "report",
      node: from.id,
      inc: from.inc,
      about,
      what,
    });
  }

  #deliver(ev: Extract<SimEvent, { kind: "deliver" }>): void {
    const m = ev.msg;
    const link = `${m.from}>${m.to}`;
    const to = this.nodes.get(m.to);
    const sender = this.nodes.get(m.from);
    const reportTo = sender?.raw && sender.inc === ev.senderInc && !ev.dup ? sender : undefined;
    const dup = ev.dup ? " (duplicate)" : "";
    if (to?.raw && this.now < to.pausedUntil && !this.blocked.has(link)) {
      this.#postpone(to, ev);
      return;
    }
    // The message leaves the link now, delivered or not.
    this.#inFlight.set(link, (this.#inFlight.get(link) ?? 1) - 1);
    if (!to?.raw) {
      if (this.trace) {
        this.log(`drop ${describeMessage(m)} (${to ? "node down" : "no such node"})${dup}`);
      }
      if (m.type === "MsgSnap" && reportTo) this.#report(reportTo, m.to, "snapFailure");
      return;
    }
    if (this.blocked.has(link)) {
      if (this.trace) this.log(`drop ${describeMessage(m)} (partition)${dup}`);
      if (m.type === "MsgSnap" && reportTo) this.#report(reportTo, m.to, "snapFailure");
      return;
    }
    if (this.trace) this.log(`deliver ${describeMessage(m)}${dup}`);
    try {
      to.raw.step(m);
    } catch (e) {
      // A response from a node no longer in the configuration: a transport drops it.
      if (!(e instanceof StepPeerNotFoundError)) throw e;
      this.log(`ignored by ${to.id}: ${(e as Error).message}`);
    }
    this.#touched.add(to.id);
    if (m.type === "MsgSnap" && reportTo) this.#report(reportTo, m.to, "snapFinish");
  }

  // -------------------------------------------------------------------------------------------
  // Chaos

  #chaos(action: Action): void {
    switch (action) {
      case "propose":
        return this.#propose();
      case "read":
        return this.#read();
      case "crash": {
        const live = this.#live();
        if (live.length > 0) this.#crash(this.rnd.pick(live), "");
        return;
      }
      case "pause": {
        const live = this.#live();
        if (live.length === 0) return;
        const n = this.rnd.pick(live);
        n.pausedUntil = Math.max(n.pausedUntil, this.now + 100 + this.rnd.int(3000));
        this.log(`pause ${n.id} until ${(n.pausedUntil / 1000).toFixed(3)}s`);
        return;
      }
      case "partition":
        return this.#partition();
      case "compact":
        return this.#compact();
      case "membership":
        return this.#membership();
      case "transfer":
        return this.#transfer();
      case "campaign": {
        const live = this.#live();
        if (live.length === 0) return;
        const n = this.rnd.pick(live);
        this.log(`campaign ${n.id}`);
        n.raw!.campaign();
        this.#touched.add(n.id);
        return;
      }
    }
  }

  /** The node a client sends to: mostly one that believes it leads. */
  #target(): SimNode | undefined {
    const leaders = this.#leaders();
    if (leaders.length > 0 && this.rnd.chance(0.85)) return this.rnd.pick(leaders);
    const live = this.#live();
    return live.length > 0 ? this.rnd.pick(live) : undefined;
  }

  #propose(): void {
    const n = this.#target();
    if (!n) return;
    const value = `v${++this.serial}`;
    this.#proposeAt(n, value);
  }

  #proposeAt(n: SimNode, value: string): boolean {
    try {
      n.raw!.propose(encoder.encode(value));
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      this.stats.refused++;
      this.log(`propose ${JSON.stringify(value)} at ${n.id}: refused (${e.reason})`);
      return false;
    }
    n.pending.add(value);
    this.log(`propose ${JSON.stringify(value)} at ${n.id}`);
    this.#touched.add(n.id);
    return true;
  }

  #read(): void {
    const live = this.#live();
    if (live.length === 0) return;
    const n = this.rnd.pick(live);
    const ctx = `r${++this.serial}`;
    n.reads.set(ctx, { issuedAt: this.now, mustSee: this.check.maxAcked });
    this.log(`read ${n.id}: issue ${ctx}`);
    n.raw!.readIndex(encoder.encode(ctx));
    this.#touched.add(n.id);
  }

  #crash(n: SimNode, when: string): void {
    this.stats.crashes++;
    const lost = n.inflight
      ? ` (lost an unsynced Ready: ${n.inflight.entries.length} entries, ${n.inflight.messages.length} messages)`
      : "";
    this.log(`crash ${n.id}${when ? ` ${when}` : ""}${lost}`);
    n.raw = undefined;
    n.inflight = undefined;
    n.leaderCheck = undefined;
    n.pending = new Set();
    n.reads = new Map();
    n.pausedUntil = 0;
    n.inc++;
    const down = 100 + this.rnd.int(this.rnd.chance(0.8) ? 3000 : 15000);
    this.queue.push(this.now + down, { kind: "restart", node: n.id });
  }

  #partition(): void {
    const ids = [...this.nodes.values()].filter((n) => !n.removed).map((n) => n.id);
    if (ids.length < 2) return;
    this.blocked.clear();
    this.stats.partitions++;
    const epoch = ++this.epoch;
    const kind = this.rnd.int(3);
    if (kind === 0) {
      // A symmetric split into two sides.
      const side = new Set(ids.filter(() => this.rnd.chance(0.5)));
      if (side.size === 0) side.add(this.rnd.pick(ids));
      if (side.size === ids.length) side.delete(this.rnd.pick(ids));
      for (const a of ids) {
        for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
      }
      this.log(
        `partition [${[...side].sort((a, b) => a - b).join(" ")}] | [${
          ids.filter((i) => !side.has(i)).join(" ")
        }]`,
      );
    } else if (kind === 1) {
      // One node hears everyone, but nobody hears it (or the reverse).
      const a = this.rnd.pick(ids);
      const outbound = this.rnd.chance(0.5);
      for (const b of ids) if (b !== a) this.blocked.add(outbound ? `${a}>${b}` : `${b}>${a}`);
      this.log(`partition: ${a} ${outbound ? "cannot send to" : "cannot hear"} anyone`);
    } else {
      // Random one-way cuts.
      for (const a of ids) {
        for (const b of ids) if (a !== b && this.rnd.chance(0.3)) this.blocked.add(`${a}>${b}`);
      }
      this.log(`partition: one-way cuts ${[...this.blocked].sort().join(" ")}`);
    }
    this.queue.push(this.now + 500 + this.rnd.int(8000), { kind: "heal", epoch });
  }

  #compact(): void {
    const live = this.#live();
    if (live.length === 0) return;
    const n = this.rnd.pick(live);
    const st = n.storage;
    const at = n.applied.length;
    const snapIndex = st.snapshot().metadata.index;
    if (at <= snapIndex) return;
    st.createSnapshot(at, n.confState, encodeState(n.applied));
    const keep = this.rnd.pick([0, 0, 5, 50]);
    const to = Math.max(at - keep, snapIndex + 1);
    if (to > snapIndex && to <= at) st.compact(to);
    this.log(`compact ${n.id}: snapshot at ${at}, log from ${st.firstIndex()}`);
    this.#touched.add(n.id);
  }

  #membership(): void {
    const leaders = this.#leaders();
    if (leaders.length === 0) return;
    const lead = leaders[0];
    const cs = lead.raw!.status().config;
    const voters = cs.voters;
    const learners = cs.learners;
    const members = voters.length + learners.length;
    const options: (() => void)[] = [];
    const add = () => {
      if (this.nextId > this.maxId) return;
      const id = this.nextId;
      if (this.#confChange(lead, { type: "addLearner", nodeId: id })) {
        this.nextId++;
        this.#createNode(id);
        this.log(`start ${id} (joining as a learner)`);
      }
    };
    const promote = () =>
      this.#confChange(lead, { type: "addNode", nodeId: this.rnd.pick(learners) });
    const remove = (pool: readonly NodeId[]) =>
      this.#confChange(lead, { type: "removeNode", nodeId: this.rnd.pick(pool) });
    if (voters.length < this.sc.targetVoters) {
      if (learners.length > 0) options.push(promote);
      else options.push(add);
    } else {
      if (learners.length > 0) options.push(promote, () => remove(learners));
      if (members < this.sc.targetVoters + 1) options.push(add);
      if (voters.length > 1) options.push(() => remove(voters));
      if (voters.length > 1) {
        options.push(() =>
          this.#confChange(lead, { type: "addLearner", nodeId: this.rnd.pick(voters) })
        );
      }
    }
    if (options.length > 0) this.rnd.pick(options)();
  }

  #confChange(n: SimNode, cc: ConfChange): boolean {
    const full: ConfChange = { ...cc, context: encoder.encode(`op${++this.serial}`) };
    try {
      n.raw!.proposeConfChange(full);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      this.log(`propose conf change ${describeConfChange(full)} at ${n.id}: refused (${e.reason})`);
      return false;
    }
    this.log(`propose conf change ${describeConfChange(full)} at ${n.id}`);
    this.#touched.add(n.id);
    return true;
  }

  #transfer(): void {
    const leaders = this.#leaders();
    if (leaders.length === 0) return;
    const lead = leaders[0];
    const voters = lead.raw!.status().config.voters.filter((v) => v !== lead.id);
    if (voters.length === 0) return;
    const to = this.rnd.pick(voters);
    // Usually asked of the leader; sometimes of another node, which forwards it.
    const at = this.rnd.chance(0.8) ? lead : this.nodes.get(to);
    if (!at?.raw) return;
    this.log(`transfer leadership to ${to} (asked at ${at.id})`);
    at.raw.transferLeader(to);
    this.#touched.add(at.id);
  }

  // -------------------------------------------------------------------------------------------
  // The end

  /** Stops the faults: heals the network and restarts every crashed member. */
  heal(): void {
    this.chaos = false;
    this.blocked.clear();
    this.log("the end of chaos: heal everything, restart crashed members");
    this.drop = 0;
    this.dup = 0;
    this.slow = 0;
    this.reorder = false;
    for (const n of this.nodes.values()) {
      n.pausedUntil = Math.min(n.pausedUntil, this.now);
      if (!n.raw && !n.removed) this.queue.push(this.now + 1, { kind: "restart", node: n.id });
    }
  }

  /** The live node leading in the highest term, if any. */
  leader(): SimNode | undefined {
    return this.#leaders()[0];
  }

  /** Members of the configuration the leader has applied, that are running. */
  members(lead: SimNode): SimNode[] {
    const cs = lead.confState;
    return [...cs.voters, ...cs.learners].map((id) => this.nodes.get(id)!).filter((n) =>
      n && !n.removed
    );
  }

  /**
   * How far the live nodes have come: the sum of each node's highest last index and applied
   * index ever seen. It grows while any log or state machine gets anywhere new, however slowly.
   */
  #progress(): number {
    let sum = 0;
    for (const n of this.#live()) {
      n.highest = Math.max(n.highest, n.storage.lastIndex() + n.applied.length);
      sum += n.highest;
    }
    return sum;
  }

  /**
   * Runs until `done`, checking every 200 ms that the cluster still gets somewhere: fails when
   * nothing progressed for `stallMs`, or when `until` passes. `each` runs at every check.
   */
  #await(what: string, done: () => boolean, until: number, each?: () => void): void {
    const electionMs = 2 * this.sc.electionTick * TICK_MS;
    const stallMs = 10_000 + 10 * electionMs;
    let last = this.#progress();
    let lastAt = this.now;
    while (!done()) {
      if (this.now >= until) {
        throw new Violation(`liveness: ${what} by ${(until / 1000).toFixed(1)} s (${this.#who()})`);
      }
      if (this.now - lastAt >= stallMs) {
        throw new Violation(
          `liveness: ${what}, and nothing progressed for ${stallMs} ms (${this.#who()})`,
        );
      }
      each?.();
      this.runUntil(Math.min(until, this.now + 200), done);
      const p = this.#progress();
      if (p > last) {
        last = p;
        lastAt = this.now;
      }
    }
  }

  /** Who leads, and how far each live member is. */
  #who(): string {
    const lead = this.leader();
    const members = lead ? this.members(lead) : this.#live();
    return (lead ? `leader ${lead.id} in term ${lead.term}` : "no leader") + "; " +
      members.map((n) =>
        `${n.id}: ${n.raw ? `log ${n.storage.lastIndex()}, applied ${n.applied.length}` : "down"}`
      ).join(", ");
  }

  /**
   * The liveness check, once healed: a leader emerges and a fresh proposal commits (proposed
   * again, as a new value, at whoever leads should leadership move), then every live member
   * applies it. Slow is fine (a backlog may take a while with one entry per message); stuck
   * is not.
   */
  settle(): void {
    const until = this.now + 300_000;
    // Each attempt proposes a new value: an attempt whose proposer lost leadership may still
    // commit, and must not look like a value applied twice.
    const values: string[] = [];
    const done = () => values.some((v) => this.check.ackOf(v) !== undefined);
    let proposedAt: SimNode | undefined;
    let proposedInc = 0;
    this.#await("a fresh proposal has not committed", done, until, () => {
      const lead = this.leader();
      const stillWaiting = proposedAt?.raw && proposedAt.inc === proposedInc &&
        proposedAt.role === "leader" && proposedAt.pending.has(values.at(-1)!);
      if (lead && !stillWaiting) {
        const value = `final${++this.serial}`;
        if (this.#proposeAt(lead, value)) {
          values.push(value);
          proposedAt = lead;
          proposedInc = lead.inc;
        }
        this.#afterEvent();
      }
    });
    // Every acknowledged value must reach every member: the final one, and any acknowledged
    // since (a retried final value, or a proposal from the faulty phase committing late).
    let want = 0;
    const caughtUp = () => {
      want = this.check.maxAcked!.index;
      const l = this.leader();
      return l !== undefined && this.members(l).every((n) => n.raw && n.applied.length >= want);
    };
    this.#await("members have not all applied every acknowledged value", caughtUp, until);
    const lead = this.leader()!;
    this.log(
      `final: leader ${lead.id} in term ${lead.term}, ${describeConfState(lead.confState)}, ` +
        `${this.check.acked.length} acknowledged, index ${want}`,
    );
    this.check.final(new Map(this.members(lead).map((n) => [n.id, n.applied])));
  }
}

/** An exception's message and its first few frames. */
function shortStack(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const lines = (e.stack ?? `${e.name}: ${e.message}`).split("\n");
  return lines.slice(0, 5).map((l) => l.trim()).join(" ");
}

/** Runs one seed: the faulty phase, then heal, settle and the final checks. */
export function runRaftSeed(seed: number, options: RaftSimOptions = {}): RaftSeedResult {
  const ticks = options.ticks ?? DEFAULT_RAFT_TICKS;
  let sim: RaftSim | undefined;
  let violation: string | undefined;
  try {
    sim = new RaftSim(seed, options.scenario ?? {}, options.trace);
    sim.runUntil(ticks * TICK_MS);
    sim.heal();
    sim.settle();
  } catch (e) {
    const where = sim ? ` (at ${(sim.now / 1000).toFixed(3)}s, event ${sim.events})` : "";
    violation = e instanceof Violation
      ? `${e.message}${where}`
      : `the core threw: ${shortStack(e)}${where}`;
    sim?.log(`VIOLATION: ${violation}`);
  }
  const lead = sim?.leader();
  return {
    seed,
    events: sim?.events ?? 0,
    virtualMs: sim?.now ?? 0,
    acked: sim?.check.acked.length ?? 0,
    refused: sim?.stats.refused ?? 0,
    leaderTerms: sim?.check.leaderTerms ?? 0,
    crashes: sim?.stats.crashes ?? 0,
    partitions: sim?.stats.partitions ?? 0,
    snapshotsInstalled: sim?.stats.snapshotsInstalled ?? 0,
    confChangesApplied: sim?.stats.confChangesApplied ?? 0,
    readsServed: sim?.stats.readsServed ?? 0,
    voters: lead ? lead.confState.voters.length : 0,
    ...(violation ? { violation } : {}),
  };
}
