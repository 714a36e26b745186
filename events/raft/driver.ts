/**
 * {@linkcode RaftDriver}: runs a {@linkcode RawNode} for real. It owns the clock (a tick every
 * 100 ms by default), the {@linkcode SqliteStorage} and the {@linkcode Transport}, and runs the
 * Ready loop exactly as the core's persistence contract says:
 *
 * 1. persist the Ready's snapshot, entries and hard state (one SQLite transaction, one sync);
 * 2. then send its messages;
 * 3. then apply its snapshot and committed entries (`applyConfChange` for conf changes);
 * 4. then `advance()`.
 *
 * The sync in step 1 runs off the event loop (`asyncSync`, default on): the transaction commits
 * at once, the WAL is synced by an asynchronous `fdatasync`, and steps 2-4 wait for it while the
 * driver keeps stepping messages and taking proposals for the next Ready. A leader sends before
 * it persists (`leaderSendsBeforePersist`, default on, as etcd's server does).
 *
 * **Removed members** learn that they were removed: from the log when they apply their own
 * removal, else from the members, which refuse a removed member's connection with a hello that
 * says so, and dial it once to tell it (they keep the removed ids and addresses in the applied
 * state and in snapshots). {@linkcode RaftDriver.onRemoved} and `status().removed` tell the owner.
 *
 * On top it offers what the rest of Shoal needs: {@linkcode RaftDriver.propose} (resolves with
 * the index once the entry is committed and applied here; on a follower it rejects with
 * {@linkcode NotLeaderError}, which names the leader), an async iterator of committed entries,
 * {@linkcode RaftDriver.readIndex} for linearizable reads, membership changes (add a learner,
 * promote it, remove a member), leadership transfer, status, and snapshots of an optional
 * {@linkcode StateMachine} every `snapshotEntries` entries (keeping `keepEntries` entries
 * behind the snapshot for slow followers).
 *
 * Committed data entries are also numbered densely (`seq`: 1, 2, 3... over the entries that
 * carry data), skipping the empty entries new leaders append and conf changes, so that an event
 * log built on the driver numbers its batches without gaps.
 *
 * **Fast failover.** When the connection to the leader drops (its process died: the kernel
 * closes its sockets at once), a follower does not wait out its whole election timeout. It
 * expires its leader lease (ticking the core `electionTick - 1` times; the next real tick does
 * the rest) and, one and a half ticks later, the surviving voter with the lowest id campaigns;
 * the next one 1.5 ticks after that, if still needed, and so on (three rounds at most). A
 * voter still a candidate at its next turn lost its election (two voters whose timers fired
 * together split the vote) and campaigns again at a higher term, rather than waiting out its
 * randomised timeout. Campaigning early is always safe in Raft; pre-vote and check-quorum keep
 * it from disrupting a leader that is in fact alive (a voter that still hears from the leader ignores the
 * pre-vote). Without this, failover takes the randomised 1-2 s election timeout; a network
 * partition (no connection closes) still does.
 *
 * **Bootstrap.** A brand-new member whose storage holds a configuration writes it into its log
 * as committed conf change entries (as etcd does), so that members added later learn the
 * founding members by replaying the log. A member that joins an existing cluster must start
 * with an empty configuration and the current members' addresses (`peers`).
 *
 * @module
 */
import { LogChanges } from "../log.ts";
import { Packr, Unpackr } from "msgpackr";
import { applyToConfState, decodeConfChange, encodeConfChange } from "./confchange.ts";
import { CompactedError, ProposalDroppedError, StepPeerNotFoundError } from "./errors.ts";
import { RawNode, type Status } from "./raw_node.ts";
import type { SqliteStorage } from "./sqlite_storage.ts";
import { Transport, type TransportTlsOptions } from "./transport.ts";
import {
  type ConfChange,
  type ConfState,
  discardLogger,
  type Entry,
  type Logger,
  type MsgApp,
  type NodeId,
  None,
  type PeerMessage,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
} from "./types.ts";

/** A committed entry that carries data, as the driver hands it out. */
export interface CommittedEntry {
  /** Raft index. */
  readonly index: number;
  /** Term of the leader that appended it. */
  readonly term: number;
  /** Position among the committed entries that carry data: 1, 2, 3... without gaps. */
  readonly seq: number;
  /** The proposed bytes. */
  readonly data: Uint8Array;
}

/** Where a proposal landed. */
export interface Proposed {
  /** Raft index. */
  readonly index: number;
  /** Term. */
  readonly term: number;
  /** Position among data entries (see {@linkcode CommittedEntry.seq}). */
  readonly seq: number;
}

/**
 * The application's state, for snapshots. The driver applies every committed data entry to it,
 * synchronously and in order, so `snapshot()` speaks for the last applied index.
 *
 * A state machine that folds the entries itself, after the driver applies them (it follows
 * {@linkcode RaftDriver.committed} asynchronously, as Shoal's manager does), gives
 * `appliedSeq()` instead: its `apply` may then do nothing, and `snapshot()` speaks for the data
 * entry numbered `appliedSeq()`. The driver snapshots at the raft index that state stands for
 * (the last one before the next data entry) and compacts only behind it, so such a state
 * machine never falls off the log; it waits while a membership change applied after that
 * point is not yet covered (a snapshot carries the current configuration).
 */
export interface StateMachine {
  /** Applies one committed data entry. */
  apply(entry: CommittedEntry): void;
  /** The state as of the last entry applied (as of `appliedSeq()`, when given). */
  snapshot(): Uint8Array;
  /**
   * Replaces the state with one from `snapshot()` (here or on another member). A state machine
   * with `appliedSeq` goes on folding from the entry after the snapshot's.
   */
  restore(data: Uint8Array): void;
  /**
   * Only for a state machine that lags the driver: `seq` (see {@linkcode CommittedEntry.seq})
   * of the last data entry its state includes (0 for none), at most the driver's `lastSeq`.
   */
  appliedSeq?(): number;
}

/** Options of {@linkcode RaftDriver.start}. */
export interface RaftDriverOptions {
  /** This node's raft id (a positive integer, unique in the cluster). */
  id: NodeId;
  /** The cluster's id: peers must present the same. */
  clusterId: string;
  /** Stable storage; the driver owns it from now on and closes it on `stop()`. */
  storage: SqliteStorage;
  /** Address to listen on for peers (default 127.0.0.1). */
  host?: string;
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /**
   * The address other members reach this node at (`host:port`), when it is not the listen
   * address (listening on 0.0.0.0, behind NAT). Default: the listen address.
   */
  advertiseAddress?: string;
  /** Mutual TLS between managers; plain TCP when absent. */
  tls?: TransportTlsOptions;
  /**
   * Raft addresses (`host:port`) of members known up front: every member for a new cluster,
   * the current members for a node that joins. Addresses learnt from the log take precedence.
   */
  peers?: Iterable<readonly [NodeId, string]>;
  /** Milliseconds per tick (default 100). */
  tickMs?: number;
  /** Election timeout in ticks, randomised in `[electionTicks, 2 * electionTicks)` (default 10). */
  electionTicks?: number;
  /** Heartbeat interval in ticks (default 1). */
  heartbeatTicks?: number;
  /** The state machine to snapshot; without one the log is never compacted. */
  stateMachine?: StateMachine;
  /** Applied entries between snapshots (default 10,000). */
  snapshotEntries?: number;
  /** Entries kept behind a snapshot for slow followers (default 500). */
  keepEntries?: number;
  /**
   * Let a leader send a Ready's messages before persisting it, so that its own disk write
   * overlaps its followers' (Raft thesis §10.2.1; etcd's server does this). Safe with this
   * core: it counts the leader's own log towards commit only once `advance()` reports it
   * persisted, and a node that leads when a Ready is taken has nothing in it that promises
   * durable state (no vote, no append acknowledgement: those are sent as follower or
   * candidate, and becoming leader takes a Ready of its own). Default true: a commit then
   * waits for the fastest two disks of three, not for the leader's and then a follower's, so
   * one slow sync no longer sets the latency. The simulator runs half its seeds so
   * (tests/sim/raft_sim.ts, `Scenario.leaderSendsBeforePersist`); false gives the classic
   * contract, persist then send, everywhere.
   */
  leaderSendsBeforePersist?: boolean;
  /**
   * Wait for the disk off the event loop (default true): each Ready is committed to SQLite at
   * once but synced by an asynchronous `fdatasync` of its WAL (`SqliteStorage.saveReadyAsync`),
   * and the Ready is acted on (sent, applied, advanced) only once that resolves. Meanwhile the
   * driver keeps stepping messages and taking proposals, which go into the next Ready: nothing
   * is acknowledged before it is durable, exactly as with the synchronous write, but a sync no
   * longer stalls the process. Only with `synchronous: "full"` storage (else there is no sync
   * to wait for).
   */
  asyncSync?: boolean;
  /** Expire the leader lease and campaign early when the leader's connection drops (default on). */
  fastFailover?: boolean;
  /** How long `readIndex()` and membership calls wait before giving up (default 10 s). */
  timeoutMs?: number;
  /** The core's random source (default: seeded from `crypto.getRandomValues`). */
  random?: () => number;
  /** Passed to the core: payload bytes per append message (default 1 MiB). */
  maxSizePerMsg?: number;
  /** Passed to the core: appends in flight per follower (default 256). */
  maxInflightMsgs?: number;
  /** Where to log. */
  logger?: Logger;
  /** Called once if the driver stops on an error it cannot recover from (a failed write). */
  onFatal?: (err: Error) => void;
  /** Called once when this node learns it was removed from the cluster (see `onRemoved`). */
  onRemoved?: (info: RemovedInfo) => void;
}

/** How a node learnt that it was removed from the cluster ({@linkcode RaftDriver.onRemoved}). */
export interface RemovedInfo {
  /**
   * Who said so: this node's own id when it applied its own removal from the log, else the
   * member that answered it (or dialled it) with "you were removed".
   */
  readonly by: NodeId;
  /** The removal's log index, when this node applied it; 0 otherwise. */
  readonly index: number;
  /** A sentence for the operator. */
  readonly message: string;
}

/** One member as {@linkcode RaftDriver.status} shows it. */
export interface MemberStatus {
  /** Raft id. */
  readonly id: NodeId;
  /** Raft address, if known. */
  readonly address: string | undefined;
  /** Voter or learner. */
  readonly voter: boolean;
  /** On the leader: highest index known replicated there. */
  readonly match?: number;
  /** On the leader: replication state. */
  readonly state?: string;
  /** Whether the transport is connected to it (always true for this node). */
  readonly connected: boolean;
}

/** What {@linkcode RaftDriver.status} returns. */
export interface DriverStatus {
  /** This node. */
  readonly id: NodeId;
  /** Where it listens for peers. */
  readonly address: string;
  /** Its role. */
  readonly role: Role;
  /** Current term. */
  readonly term: number;
  /** The leader it knows of (0 if none). */
  readonly leader: NodeId;
  /** The leader's raft address, if known. */
  readonly leaderAddress: string | undefined;
  /** Commit index. */
  readonly commit: number;
  /** Last applied index. */
  readonly applied: number;
  /** Last applied data entry's `seq`. */
  readonly appliedSeq: number;
  /** First index still in storage. */
  readonly firstIndex: number;
  /** Last index in storage. */
  readonly lastIndex: number;
  /** Index of the latest snapshot (0 if none). */
  readonly snapshotIndex: number;
  /** Voters and learners, with the leader's view of their progress when this node leads. */
  readonly members: readonly MemberStatus[];
  /** Set once this node was removed from the cluster. */
  readonly removed: boolean;
}

/** A proposal reached a node that is not the leader; retry at `leaderAddress`. */
export class NotLeaderError extends Error {
  /** `leaderId` is 0 while no leader is known. */
  constructor(readonly leaderId: NodeId, readonly leaderAddress: string | undefined) {
    super(
      leaderId === None
        ? "This node is not the leader and no leader is known: retry shortly"
        : `This node is not the leader: the leader is node ${leaderId}` +
          (leaderAddress ? ` at ${leaderAddress}` : ""),
    );
    this.name = "NotLeaderError";
  }
}

/**
 * A proposal was appended, but what became of it cannot be known here (this node lost its log
 * tail to a snapshot or to a new leader before the outcome was visible). It may or may not
 * have been committed.
 */
export class CommitUnknownError extends Error {
  /** `why` says what happened. */
  constructor(why: string) {
    super(`Proposal outcome unknown: ${why}`);
    this.name = "CommitUnknownError";
  }
}

/** The driver is stopped (or stopped on a fatal error, given as `cause`). */
export class DriverStoppedError extends Error {
  /** `what` names the refused operation. */
  constructor(what: string, options?: ErrorOptions) {
    super(`The raft driver is stopped: cannot ${what}`, options);
    this.name = "DriverStoppedError";
  }
}

/** A raft operation did not complete in time. */
export class RaftTimeoutError extends Error {
  /** `what` names the operation. */
  constructor(what: string) {
    super(`Timed out: ${what}`);
    this.name = "RaftTimeoutError";
  }
}

/** What the driver keeps in a snapshot around the application's bytes. */
interface Envelope {
  readonly v: 1;
  /** `seq` of the last data entry at the snapshot's index. */
  readonly seq: number;
  /** Members' addresses at the snapshot's index. */
  readonly addresses: [NodeId, string][];
  /** Members removed by then, with their last address (absent in older snapshots). */
  readonly removed?: [NodeId, string][];
  /** The state machine's snapshot. */
  readonly app: Uint8Array;
}

interface PendingProposal {
  readonly data: Uint8Array;
  readonly resolve: (p: Proposed) => void;
  readonly reject: (err: Error) => void;
  index: number;
  term: number;
}

interface PendingConfChange {
  readonly cc: ConfChange;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  index: number;
  term: number;
}

interface PendingRead {
  readonly resolve: (index: number) => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
  index: number;
  retryAt: number;
}

const envelopePackr = new Packr({ useRecords: false });
const envelopeUnpackr = new Unpackr({ useRecords: false, copyBuffers: true });
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
/** Payload bytes per page when reading committed entries from storage. */
const PAGE_BYTES = 4 * 1024 * 1024;

/** A seeded PRNG (mulberry32) seeded from the OS: the core's only randomness. */
function cryptoSeededRandom(): () => number {
  let a = crypto.getRandomValues(new Uint32Array(1))[0];
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A Raft member, running: see the module documentation. */
export class RaftDriver {
  /** This node's raft id. */
  readonly id: NodeId;
  readonly #storage: SqliteStorage;
  readonly #transport: Transport;
  readonly #node: RawNode;
  readonly #logger: Logger;
  readonly #options: RaftDriverOptions;
  readonly #tickMs: number;
  readonly #electionTicks: number;
  readonly #snapshotEntries: number;
  readonly #keepEntries: number;
  readonly #timeoutMs: number;
  readonly #stateMachine: StateMachine | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;
  /** The Ready being synced (see `asyncSync`), and the loop's continuation after it. */
  #durable: Promise<void> | undefined;
  #scheduled = false;
  #running = false;
  #stopped = false;
  #fatal: Error | undefined;

  /** Members' raft addresses (from the options and from conf change contexts). */
  #addresses = new Map<NodeId, string>();
  #confState: ConfState;
  #soft: SoftState = { lead: None, role: "follower" };
  #term = 0;
  #commit = 0;
  #applied: number;
  #snapshotIndex: number;
  /** Index of the last configuration change applied (or of the snapshot that holds it). */
  #confChangedAt = 0;
  /** A member was added to a compacted log while the state machine lagged: snapshot ASAP. */
  #snapshotWanted = false;
  #removed = false;
  /** Members removed from the cluster and their last address (""), this node too if it was. */
  #removedPeers = new Map<NodeId, string>();
  #removedListeners = new Set<(info: RemovedInfo) => void>();
  #removedInfo: RemovedInfo | undefined;

  /** `seq` of the data entry at storage's first index - 1 (everything before is compacted). */
  #seqBase = 0;
  /** Raft indexes of the applied data entries still in storage, in order. */
  #dataIndexes: number[] = [];

  #unindexed = new Map<Uint8Array, PendingProposal>();
  #byIndex = new Map<number, PendingProposal>();
  #confPending: PendingConfChange | undefined;
  #reads = new Map<string, PendingRead>();
  #readSeq = 0;
  #waitingReads: PendingRead[] = [];
  #unreachable = new Set<NodeId>();
  #snapStatus: [NodeId, "finish" | "failure"][] = [];
  #changes = new LogChanges();
  #softWaiters = new Set<() => void>();
  #roleListeners = new Set<(role: Role, leader: NodeId) => void>();
  #failoverTimer: ReturnType<typeof setTimeout> | undefined;
  #ticks = 0;
  #memberAddressCache: [NodeId, string][] | undefined;

  private constructor(options: RaftDriverOptions, transport: Transport) {
    this.id = options.id;
    this.#options = options;
    this.#storage = options.storage;
    this.#transport = transport;
    this.#logger = options.logger ?? discardLogger;
    this.#tickMs = options.tickMs ?? 100;
    this.#electionTicks = options.electionTicks ?? 10;
    this.#snapshotEntries = options.snapshotEntries ?? 10_000;
    this.#keepEntries = options.keepEntries ?? 500;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#stateMachine = options.stateMachine;
    const storage = this.#storage;
    bootstrapLog(storage);
    const applied = storage.appliedState();
    for (const [id, address] of options.peers ?? []) this.#addresses.set(id, address);
    for (const [id, address] of applied.addresses) this.#addresses.set(id, address);
    for (const [id, address] of applied.removed ?? []) this.#removedPeers.set(id, address);
    this.#confState = applied.confState;
    this.#applied = applied.index;
    this.#commit = storage.hardState().commit;
    this.#term = storage.hardState().term;
    // Bring the state machine and the seq numbering up to the applied index.
    const snapshot = storage.snapshot();
    this.#snapshotIndex = snapshot.metadata.index;
    let seqAtSnapshot = 0;
    if (snapshot.metadata.index > 0) {
      const envelope = decodeEnvelope(snapshot.data);
      seqAtSnapshot = envelope.seq;
      for (const [id, address] of envelope.addresses) {
        if (!this.#addresses.has(id)) this.#addresses.set(id, address);
      }
      for (const [id, address] of envelope.removed ?? []) {
        if (!this.#removedPeers.has(id)) this.#removedPeers.set(id, address);
      }
      this.#stateMachine?.restore(envelope.app);
    }
    const offset = storage.firstIndex() - 1;
    if (offset > snapshot.metadata.index) {
      throw new Error(
        `Raft storage was compacted to ${offset}, past its snapshot at ${snapshot.metadata.index}`,
      );
    }
    // seq at the compaction point: the snapshot's, less the data entries between them.
    this.#dataIndexes = storage.dataIndexes(offset + 1, this.#applied);
    let between = 0;
    while (
      between < this.#dataIndexes.length &&
      this.#dataIndexes[between] <= snapshot.metadata.index
    ) between++;
    this.#seqBase = seqAtSnapshot - between;
    // The state machine: the entries after the snapshot (the core does not hand them out again).
    const sm = this.#stateMachine;
    this.#confChangedAt = snapshot.metadata.index;
    if (sm) {
      let seq = seqAtSnapshot;
      this.#forEachStored(snapshot.metadata.index + 1, this.#applied, (e) => {
        if (isData(e)) sm.apply({ index: e.index, term: e.term, seq: ++seq, data: e.data });
        else if (e.type === "confChange") this.#confChangedAt = e.index;
      });
    }
    this.#node = new RawNode({
      id: options.id,
      storage,
      applied: this.#applied,
      random: options.random ?? cryptoSeededRandom(),
      electionTick: this.#electionTicks,
      heartbeatTick: options.heartbeatTicks ?? 1,
      checkQuorum: true,
      preVote: true,
      maxSizePerMsg: options.maxSizePerMsg,
      // SwarmKit's and etcd's default: 256 appends in flight per follower.
      maxInflightMsgs: options.maxInflightMsgs ?? 256,
      logger: this.#logger,
    });
  }

  /**
   * Opens a member: listens for peers, restarts the core from storage, starts ticking. A
   * cluster's only voter elects itself at once.
   */
  static async start(options: RaftDriverOptions): Promise<RaftDriver> {
    let driver: RaftDriver | undefined;
    const transport = new Transport({
      id: options.id,
      clusterId: options.clusterId,
      host: options.host,
      port: options.port,
      tls: options.tls,
      logger: options.logger,
    }, {
      onMessage: (m) => {
        if (driver) driver.#onMessage(m);
      },
      onUnreachable: (id) => {
        if (driver) driver.#onUnreachable(id);
      },
      onSnapshotStatus: (id, status) => {
        if (driver) driver.#onSnapshotStatus(id, status);
      },
      onPeerStatus: (id, up) => {
        if (driver) driver.#onPeerStatus(id, up);
      },
      isRemoved: (id) => driver !== undefined && driver.#isRemovedPeer(id),
      onRemoved: (by) => {
        if (driver) driver.#toldRemoved(by);
      },
      // Members only (anyone while this node has no configuration yet: it is joining).
      allowPeer: (id) =>
        driver !== undefined &&
        (driver.#confState.voters.length === 0 || driver.#isMember(id)),
    });
    try {
      await transport.listen();
      driver = new RaftDriver(options, transport);
    } catch (err) {
      await transport.close();
      options.storage.close();
      throw err;
    }
    driver.#addresses.set(driver.id, driver.address);
    if (driver.#removedPeers.has(driver.id)) {
      driver.#removed = true;
      driver.#notifyRemoved({
        by: driver.id,
        index: 0,
        message: `raft node ${driver.id} was removed from the cluster (recorded before a restart)`,
      });
    }
    driver.#syncPeers();
    driver.#ticker = setInterval(() => driver.#tick(), driver.#tickMs);
    const { voters } = driver.#confState;
    if (voters.length === 1 && voters[0] === driver.id) driver.#node.campaign();
    driver.#run();
    // Ready to use as with a synchronous disk: a single voter leads when this resolves.
    while (driver.#durable !== undefined) await driver.#durable;
    return driver;
  }

  /** Where this node listens for peers (`host:port`). */
  get address(): string {
    return this.#options.advertiseAddress ?? this.#transport.address;
  }

  /** Whether this node currently believes it leads. */
  get isLeader(): boolean {
    return this.#soft.role === "leader";
  }

  /** The leader this node knows of (0 if none). */
  get leader(): NodeId {
    return this.#soft.lead;
  }

  /** Last applied index. */
  get applied(): number {
    return this.#applied;
  }

  /** `seq` of the last applied data entry (0 if none). */
  get lastSeq(): number {
    return this.#seqBase + this.#dataIndexes.length;
  }

  /** `seq` of the first data entry still held (the one after the compaction point). */
  get firstSeq(): number {
    return this.#seqBase + 1;
  }

  /**
   * Proposes `data` (not empty) as one entry. Resolves with its raft index once it is
   * committed and applied on this node. Rejects with {@linkcode NotLeaderError} unless this
   * node leads, with `ProposalDroppedError` during a leadership transfer or when another
   * leader's entry took its place (it was not committed: retry), and with
   * {@linkcode CommitUnknownError} when the outcome cannot be known here.
   */
  async propose(data: Uint8Array): Promise<number> {
    return (await this.proposeEntry(data)).index;
  }

  /** Like {@linkcode propose}, resolving with the entry's index, term and seq. */
  proposeEntry(data: Uint8Array): Promise<Proposed> {
    try {
      this.#checkRunning("propose");
      if (!(data instanceof Uint8Array) || data.byteLength === 0) {
        throw new RangeError("A proposal must be non-empty bytes");
      }
      if (this.#soft.role !== "leader") throw this.#notLeader();
      // Proposals are told apart by identity: never let two share one array.
      if (this.#unindexed.has(data)) data = data.slice();
      try {
        this.#node.propose(data);
      } catch (err) {
        if (err instanceof ProposalDroppedError && !err.reason.startsWith("leadership")) {
          // The core knows better than our last Ready: this node just stopped leading.
          const lead = this.#soft.lead === this.id ? None : this.#soft.lead;
          throw new NotLeaderError(lead, lead === None ? undefined : this.#addresses.get(lead));
        }
        throw err;
      }
    } catch (err) {
      return Promise.reject(err);
    }
    const { promise, resolve, reject } = Promise.withResolvers<Proposed>();
    this.#unindexed.set(data, { data, resolve, reject, index: 0, term: 0 });
    this.#schedule();
    return promise;
  }

  /**
   * A linearizable read point: resolves with an index once this node has applied it, such that
   * local reads then see every write committed before the call. Works on followers (the leader
   * confirms its leadership with a heartbeat round).
   */
  readIndex(): Promise<number> {
    try {
      this.#checkRunning("read");
    } catch (err) {
      return Promise.reject(err);
    }
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    const ctx = this.#readContext();
    const read: PendingRead = {
      resolve,
      reject,
      deadline: this.#ticks + Math.ceil(this.#timeoutMs / this.#tickMs),
      index: 0,
      retryAt: this.#ticks + this.#electionTicks,
    };
    this.#reads.set(ctx.key, read);
    this.#node.readIndex(ctx.bytes);
    this.#schedule();
    return promise;
  }

  /** Adds node `id`, reachable at `address`, as a learner (it replicates but does not vote). */
  addLearner(id: NodeId, address: string): Promise<void> {
    return this.#proposeConfChange({
      type: "addLearner",
      nodeId: id,
      context: utf8.encode(address),
    });
  }

  /**
   * Promotes learner `id` to voter, once it holds everything committed when called (waiting
   * up to the timeout), so that it does not weaken the quorum while it catches up.
   */
  async promote(id: NodeId): Promise<void> {
    this.#checkRunning("promote");
    if (!this.#confState.learners.includes(id)) {
      if (this.#confState.voters.includes(id)) return;
      throw new RangeError(`Node ${id} is not a learner of this cluster`);
    }
    const deadline = Date.now() + this.#timeoutMs;
    // Caught up: it holds everything committed when we were asked (under load the commit
    // index keeps moving; a learner streaming right behind it is caught up).
    const target = this.#commit;
    for (;;) {
      if (this.#soft.role !== "leader") throw this.#notLeader();
      const progress = this.#node.status().progress.get(id);
      if (progress && progress.match >= target) break;
      if (Date.now() > deadline) {
        throw new RaftTimeoutError(`learner ${id} did not catch up (match ${progress?.match})`);
      }
      await this.#nextTick();
    }
    return this.#proposeConfChange({ type: "addNode", nodeId: id });
  }

  /** Removes member `id` (voter or learner). Removing the leader makes it step down. */
  remove(id: NodeId): Promise<void> {
    return this.#proposeConfChange({ type: "removeNode", nodeId: id });
  }

  /** Hands leadership to voter `to`; resolves once it leads. Call on the leader. */
  async transferLeadership(to: NodeId): Promise<void> {
    this.#checkRunning("transfer leadership");
    if (this.#soft.role !== "leader") throw this.#notLeader();
    if (to === this.id) return;
    if (!this.#confState.voters.includes(to)) throw new RangeError(`Node ${to} is not a voter`);
    this.#node.transferLeader(to);
    this.#schedule();
    const deadline = Date.now() + Math.max(this.#timeoutMs, 3 * this.#electionTicks * this.#tickMs);
    while (this.#soft.lead !== to) {
      this.#checkRunning("transfer leadership");
      if (Date.now() > deadline) throw new RaftTimeoutError(`leadership transfer to ${to}`);
      await this.#nextSoftChange();
    }
  }

  /**
   * Records where node `id` listens (a member whose address this node was not given, or one
   * that moved). Membership itself changes only through the log.
   */
  setPeerAddress(id: NodeId, address: string): void {
    this.#checkRunning("set a peer address");
    if (id === this.id) return;
    this.#addresses.set(id, address);
    this.#memberAddressCache = undefined;
    this.#syncPeers();
  }

  /** Starts an election now (tests, operators). */
  campaign(): void {
    this.#checkRunning("campaign");
    this.#node.campaign();
    this.#schedule();
  }

  /** Resolves once some node leads (this one or another). */
  async waitForLeader(timeoutMs = this.#timeoutMs): Promise<NodeId> {
    const deadline = Date.now() + timeoutMs;
    while (this.#soft.lead === None) {
      this.#checkRunning("wait for a leader");
      if (Date.now() > deadline) throw new RaftTimeoutError("no leader elected");
      await this.#nextSoftChange();
    }
    return this.#soft.lead;
  }

  /** Replaces the transport's certificate, key and trusted roots (see `Transport.setTls`). */
  setTls(update: { cert: string; key: string; ca: string | string[] }): void {
    this.#transport.setTls(update);
  }

  /**
   * Calls `listener` whenever this node's role or the leader it knows of changes; returns a
   * function that unsubscribes.
   */
  onRoleChange(listener: (role: Role, leader: NodeId) => void): () => void {
    this.#roleListeners.add(listener);
    return () => this.#roleListeners.delete(listener);
  }

  /**
   * Calls `listener` once this node learns that it was removed from the cluster: by applying
   * its own removal from the log, or because a member told it so (members answer a removed
   * member's connections, and dial it, to say it was removed; they remember removed members
   * across restarts). Called at once (in a microtask) if that is already known. The driver
   * goes on running: the owner is expected to stop it and say why (`info.message`).
   * `status().removed` says the same. Returns a function that unsubscribes.
   */
  onRemoved(listener: (info: RemovedInfo) => void): () => void {
    this.#removedListeners.add(listener);
    const info = this.#removedInfo;
    if (info !== undefined) {
      queueMicrotask(() => {
        if (this.#removedListeners.has(listener)) listener(info);
      });
    }
    return () => this.#removedListeners.delete(listener);
  }

  /** Status: role, term, leader, commit and applied indexes, members and their progress. */
  status(): DriverStatus {
    const st: Status = this.#node.status();
    const members: MemberStatus[] = [];
    const add = (id: NodeId, voter: boolean) => {
      const pr = st.progress.get(id);
      members.push({
        id,
        address: this.#addresses.get(id),
        voter,
        ...(pr ? { match: pr.match, state: pr.state } : {}),
        connected: id === this.id || this.#transport.isConnected(id),
      });
    };
    for (const id of this.#confState.voters) add(id, true);
    for (const id of this.#confState.learners) add(id, false);
    return {
      id: this.id,
      address: this.address,
      role: st.softState.role,
      term: st.hardState.term,
      leader: st.softState.lead,
      leaderAddress: st.softState.lead === None
        ? undefined
        : this.#addresses.get(st.softState.lead),
      commit: st.hardState.commit,
      applied: this.#applied,
      appliedSeq: this.lastSeq,
      firstIndex: this.#stopped ? 0 : this.#storage.firstIndex(),
      lastIndex: this.#stopped ? 0 : this.#storage.lastIndex(),
      snapshotIndex: this.#snapshotIndex,
      members,
      removed: this.#removed,
    };
  }

  /**
   * Committed data entries from raft index `from` on, then live ones as they are applied: each
   * once, in order; empty entries and conf changes are skipped (their indexes too). Throws
   * `CompactedError` when `from` (or where the reader is) was compacted away. Ends when
   * `signal` aborts or the driver stops.
   */
  committed(from: number, options: { signal?: AbortSignal } = {}): AsyncGenerator<CommittedEntry> {
    return this.#iterate(() => from, options.signal);
  }

  /** Like {@linkcode committed}, from the data entry numbered `fromSeq` on. */
  committedFromSeq(
    fromSeq: number,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<CommittedEntry> {
    return this.#iterate(() => {
      if (fromSeq <= this.#seqBase) throw new CompactedError(fromSeq);
      if (fromSeq > this.lastSeq) return undefined;
      return this.#dataIndexes[fromSeq - this.#seqBase - 1];
    }, options.signal);
  }

  /** The applied data entries numbered `[fromSeq, toSeq]` (clamped to the last one). */
  readSeq(fromSeq: number, toSeq: number = this.lastSeq): CommittedEntry[] {
    this.#checkRunning("read");
    if (fromSeq <= this.#seqBase) throw new CompactedError(fromSeq);
    const last = Math.min(toSeq, this.lastSeq);
    if (fromSeq > last) return [];
    const lo = this.#dataIndexes[fromSeq - this.#seqBase - 1];
    const hi = this.#dataIndexes[last - this.#seqBase - 1];
    const out: CommittedEntry[] = [];
    let seq = fromSeq;
    this.#forEachStored(lo, hi, (e) => {
      if (isData(e)) out.push({ index: e.index, term: e.term, seq: seq++, data: e.data });
    });
    return out;
  }

  /**
   * Stops: the ticker, the transport, the storage (flushed and closed). Pending proposals,
   * reads and membership calls reject with {@linkcode DriverStoppedError}; iterators end.
   * Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#shutdown(new DriverStoppedError("finish"));
    await this.#transport.close();
  }

  // -------------------------------------------------------------------------------------------
  // The loop

  #schedule(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    // setImmediate, not a microtask: input from every socket read in this turn of the event
    // loop is stepped before the Ready is taken, so one sync covers all of it.
    setImmediate(() => {
      this.#scheduled = false;
      this.#run();
    });
  }

  #tick(): void {
    if (this.#stopped) return;
    this.#ticks++;
    if (this.#snapshotWanted && !this.#running) {
      // A new member waits for it: do not wait for the next committed entry to try again.
      try {
        this.#maybeSnapshot();
      } catch (err) {
        this.#fail(err as Error);
        return;
      }
    }
    this.#node.tick();
    this.#checkReads();
    this.#run();
  }

  #run(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    let waiting = false;
    try {
      this.#stepReports();
      while (this.#node.hasReady()) {
        const durable = this.#handleReady();
        if (durable !== undefined) {
          // The loop goes on once the disk is done; input meanwhile goes into the next Ready.
          waiting = true;
          this.#durable = durable.then(() => {
            this.#durable = undefined;
            this.#running = false;
            this.#run();
          }, (err) => {
            this.#durable = undefined;
            this.#running = false;
            this.#fail(err as Error);
          });
          return;
        }
        this.#stepReports();
      }
    } catch (err) {
      this.#fail(err as Error);
    } finally {
      if (!waiting) this.#running = false;
    }
  }

  /**
   * Takes a Ready and persists it; sends, applies and advances at once when the write was
   * synchronous, else returns a promise that does so once the write is durable.
   */
  #handleReady(): Promise<void> | undefined {
    const node = this.#node;
    const expected = this.#unindexed;
    this.#unindexed = new Map();
    const rd = node.ready();
    // (A leader may send first: see `leaderSendsBeforePersist`.)
    const early = rd.messages.length > 0 && this.#options.leaderSendsBeforePersist !== false &&
      (rd.softState ?? this.#soft).role === "leader";
    if (early) this.#transport.send(coalesce(rd.messages, this.id));
    // 1. Persist: snapshot, entries and hard state in one transaction.
    let durable: Promise<void> | undefined;
    if (rd.snapshot || rd.entries.length > 0 || rd.hardState) {
      if (this.#options.asyncSync === false) this.#storage.saveReady(rd);
      else durable = this.#storage.saveReadyAsync(rd);
    }
    if (rd.hardState) {
      this.#term = rd.hardState.term;
      this.#commit = rd.hardState.commit;
    }
    // Our own proposals, now numbered.
    for (const e of rd.entries) {
      if (e.type === "normal") {
        const p = expected.get(e.data);
        if (p) {
          expected.delete(e.data);
          p.index = e.index;
          p.term = e.term;
          this.#byIndex.set(e.index, p);
        }
      } else if (this.#confPending && this.#confPending.index === 0) {
        const cc = decodeConfChange(e.data);
        if (cc.type === this.#confPending.cc.type && cc.nodeId === this.#confPending.cc.nodeId) {
          this.#confPending.index = e.index;
          this.#confPending.term = e.term;
        }
      }
    }
    for (const p of expected.values()) {
      p.reject(new CommitUnknownError("this node's log was replaced before the entry was saved"));
    }
    if (durable === undefined) {
      this.#finishReady(rd, early);
      return undefined;
    }
    return durable.then(() => {
      if (!this.#stopped) this.#finishReady(rd, early);
    });
  }

  /** Steps 2 to 4 of a Ready, once it is durable. */
  #finishReady(rd: Ready, early: boolean): void {
    const node = this.#node;
    // 2. Send.
    if (rd.messages.length > 0 && !early) this.#transport.send(coalesce(rd.messages, this.id));
    if (rd.softState) this.#onSoftState(rd.softState);
    // 3. Apply.
    if (rd.snapshot) this.#applySnapshot(rd.snapshot);
    if (rd.committedEntries.length > 0) this.#applyEntries(rd.committedEntries);
    for (const rs of rd.readStates) this.#onReadState(rs);
    // 4. Advance.
    node.advance();
    if (rd.committedEntries.length > 0 || rd.snapshot) {
      this.#maybeSnapshot();
      this.#changes.wake();
      this.#releaseReads();
    }
  }

  #stepReports(): void {
    if (this.#snapStatus.length > 0) {
      const reports = this.#snapStatus;
      this.#snapStatus = [];
      for (const [id, status] of reports) this.#node.reportSnapshot(id, status);
    }
    if (this.#unreachable.size > 0) {
      const ids = [...this.#unreachable];
      this.#unreachable.clear();
      for (const id of ids) this.#node.reportUnreachable(id);
    }
  }

  #applyEntries(entries: readonly Entry[]): void {
    const sm = this.#stateMachine;
    const byIndex = this.#byIndex;
    let confChanged = false;
    for (const e of entries) {
      let seq = 0;
      if (e.type === "confChange") {
        this.#applyConfChange(e);
        confChanged = true;
      } else if (e.data.byteLength > 0) {
        this.#dataIndexes.push(e.index);
        seq = this.#seqBase + this.#dataIndexes.length;
        sm?.apply({ index: e.index, term: e.term, seq, data: e.data });
      }
      this.#applied = e.index;
      const p = byIndex.size > 0 ? byIndex.get(e.index) : undefined;
      if (p) {
        byIndex.delete(e.index);
        // Committed at our index: ours if of our term (same index and term: same entry).
        if (seq > 0 && p.term === e.term) p.resolve({ index: e.index, term: e.term, seq });
        else p.reject(new ProposalDroppedError(`another leader's entry took index ${e.index}`));
      }
    }
    this.#storage.setApplied({
      index: this.#applied,
      confState: this.#confState,
      addresses: this.#memberAddresses(confChanged),
      removed: this.#removedList(),
    }, confChanged);
    if (confChanged) this.#syncPeers();
  }

  #applyConfChange(e: Entry): void {
    const cc = decodeConfChange(e.data);
    if (cc.type !== "removeNode") this.#snapshotForNewMember(e.index, cc);
    const wasMember = this.#isMember(cc.nodeId);
    this.#confState = this.#node.applyConfChange(cc);
    this.#confChangedAt = e.index;
    if (cc.type === "removeNode") {
      if (wasMember) this.#removedPeers.set(cc.nodeId, this.#addresses.get(cc.nodeId) ?? "");
      if (cc.nodeId !== this.id) this.#addresses.delete(cc.nodeId);
    } else {
      if (this.#removedPeers.delete(cc.nodeId)) this.#transport.forgetRemoved(cc.nodeId);
      if (cc.context && cc.context.byteLength > 0) {
        this.#addresses.set(cc.nodeId, fromUtf8.decode(cc.context));
      }
    }
    if (cc.nodeId === this.id) {
      if (cc.type === "removeNode" && !this.#removed) {
        this.#removed = true;
        this.#logger.warn(`raft ${this.id}: removed from the cluster at index ${e.index}`);
        this.#notifyRemoved({
          by: this.id,
          index: e.index,
          message: `raft node ${this.id} was removed from the cluster (log index ${e.index})`,
        });
      } else if (cc.type !== "removeNode") {
        this.#removed = false;
        this.#removedInfo = undefined;
      }
      this.#addresses.set(this.id, this.address);
    }
    const p = this.#confPending;
    if (p && p.index === e.index) {
      this.#confPending = undefined;
      if (p.term === e.term) p.resolve();
      else p.reject(new ProposalDroppedError(`another leader's entry took index ${e.index}`));
    }
    this.#logger.info(
      `raft ${this.id}: applied ${cc.type} ${cc.nodeId} at ${e.index}: voters ` +
        `[${this.#confState.voters}] learners [${this.#confState.learners}]`,
    );
  }

  #applySnapshot(snapshot: Snapshot): void {
    const { index, confState } = snapshot.metadata;
    const envelope = decodeEnvelope(snapshot.data);
    this.#stateMachine?.restore(envelope.app);
    this.#addresses = new Map(envelope.addresses);
    this.#addresses.set(this.id, this.address);
    this.#confState = confState;
    this.#applied = index;
    this.#commit = Math.max(this.#commit, index);
    this.#snapshotIndex = index;
    this.#confChangedAt = index;
    this.#snapshotWanted = false;
    this.#seqBase = envelope.seq;
    this.#dataIndexes = [];
    for (const [i, p] of this.#byIndex) {
      if (i > index) continue;
      this.#byIndex.delete(i);
      p.reject(new CommitUnknownError(`a snapshot at ${index} replaced this node's log`));
    }
    for (const [id, address] of envelope.removed ?? []) {
      if (!this.#removedPeers.has(id)) this.#removedPeers.set(id, address);
    }
    this.#storage.setApplied(
      { index, confState, addresses: this.#memberAddresses(true), removed: this.#removedList() },
      true,
    );
    this.#syncPeers();
    this.#logger.info(`raft ${this.id}: restored a snapshot at index ${index}`);
  }

  /**
   * A member added once the log is compacted can only start from a snapshot, and the core
   * refuses one whose configuration lacks it: so take one now, at the conf change's index,
   * with the new configuration (the state machine is at that index: the entry has no data).
   */
  #snapshotForNewMember(index: number, cc: ConfChange): void {
    const sm = this.#stateMachine;
    if (sm === undefined || this.#storage.firstIndex() <= 1) return;
    if (this.#isMember(cc.nodeId) || index <= this.#snapshotIndex) return;
    if (sm.appliedSeq !== undefined && sm.appliedSeq() !== this.lastSeq) {
      // Its state is not at this index yet: snapshot once it covers it (`#maybeSnapshot`).
      this.#snapshotWanted = true;
      return;
    }
    const confState = applyToConfState(this.#confState, cc);
    const addresses = [...this.#addresses].filter(([id]) => this.#isMember(id));
    if (cc.context && cc.context.byteLength > 0) {
      addresses.push([cc.nodeId, fromUtf8.decode(cc.context)]);
    }
    this.#createSnapshot(index, confState, addresses);
  }

  #createSnapshot(
    index: number,
    confState: ConfState,
    addresses: [NodeId, string][],
    seq = this.lastSeq,
  ): void {
    const envelope: Envelope = {
      v: 1,
      seq,
      addresses,
      removed: this.#removedList(),
      app: this.#stateMachine!.snapshot(),
    };
    this.#storage.createSnapshot(index, confState, new Uint8Array(envelopePackr.pack(envelope)));
    this.#snapshotIndex = index;
  }

  #maybeSnapshot(): void {
    const sm = this.#stateMachine;
    if (sm === undefined) return;
    const due = this.#applied - this.#snapshotIndex >= this.#snapshotEntries;
    if (!due && !this.#snapshotWanted) return;
    let at = this.#applied;
    let seq = this.lastSeq;
    if (sm.appliedSeq !== undefined) {
      seq = sm.appliedSeq();
      const point = this.#snapshotPoint(seq);
      // Not yet: the state machine is behind the last snapshot or the last membership change.
      if (point === undefined || point <= this.#snapshotIndex) return;
      at = point;
    }
    this.#snapshotWanted = false;
    const addresses = [...this.#addresses].filter(([id]) => this.#isMember(id));
    this.#createSnapshot(at, this.#confState, addresses, seq);
    if (!due) {
      this.#logger.info(`raft ${this.id}: snapshot at ${at} for a new member`);
      return;
    }
    const compactTo = at - this.#keepEntries;
    if (compactTo > this.#storage.firstIndex() - 1) {
      this.#storage.compact(compactTo);
      let drop = 0;
      while (drop < this.#dataIndexes.length && this.#dataIndexes[drop] <= compactTo) drop++;
      this.#dataIndexes = this.#dataIndexes.slice(drop);
      this.#seqBase += drop;
    }
    this.#logger.info(`raft ${this.id}: snapshot at ${at}, log compacted to ${compactTo}`);
  }

  /**
   * The raft index a lagging state machine's state stands for, given the `seq` of the last data
   * entry it includes: the last index before the next data entry (the applied index when none
   * followed), or undefined when that cannot be snapshotted now (a configuration change came
   * after it, or the entry is behind the compaction point).
   */
  #snapshotPoint(seq: number): number | undefined {
    if (!Number.isSafeInteger(seq) || seq < 0 || seq > this.lastSeq) {
      throw new RangeError(
        `The state machine says it applied entry seq ${seq}; the driver's last is ${this.lastSeq}`,
      );
    }
    if (seq < this.#seqBase) return undefined;
    const at = seq === this.lastSeq ? this.#applied : this.#dataIndexes[seq - this.#seqBase] - 1;
    return at < this.#confChangedAt ? undefined : at;
  }

  // -------------------------------------------------------------------------------------------
  // Inputs from the transport

  #onMessage(m: PeerMessage): void {
    if (this.#stopped) return;
    try {
      this.#node.step(m);
    } catch (err) {
      // A response from a node no longer in the configuration: nothing to do.
      if (err instanceof StepPeerNotFoundError) return;
      this.#fail(err as Error);
      return;
    }
    this.#schedule();
  }

  #onUnreachable(id: NodeId): void {
    if (this.#stopped) return;
    this.#unreachable.add(id);
    this.#schedule();
  }

  #onSnapshotStatus(id: NodeId, status: "finish" | "failure"): void {
    if (this.#stopped) return;
    this.#snapStatus.push([id, status]);
    this.#schedule();
  }

  #onPeerStatus(id: NodeId, up: boolean): void {
    if (this.#stopped || up) return;
    if (this.#options.fastFailover === false) return;
    if (this.#soft.role !== "follower" || this.#soft.lead !== id) return;
    this.#leaderLost(id);
  }

  /** The leader's connection dropped: see "Fast failover" in the module documentation. */
  #leaderLost(lost: NodeId): void {
    const voters = this.#confState.voters.filter((v) => v !== lost);
    const rank = voters.indexOf(this.id);
    if (rank < 0 || this.#removed) return;
    this.#logger.info(`raft ${this.id}: lost the connection to leader ${lost}`);
    // Expire the lease: after these, the next real tick makes electionElapsed reach the
    // election timeout (and, rarely, one of these ticks campaigns by itself: a pre-vote the
    // other voters, still in their lease, ignore; the attempts below start it over).
    for (let i = 0; i < this.#electionTicks - 1; i++) this.#node.tick();
    // Attempts 1.5 ticks apart by rank, then again after every voter had its turn, three
    // times at most; the core's own election timeout remains the fallback.
    const turn = this.#tickMs * 1.5;
    const attempt = (n: number) => {
      this.#failoverTimer = setTimeout(() => {
        this.#failoverTimer = undefined;
        if (this.#stopped) return;
        const { role, lead } = this.#soft;
        if (lead !== None && lead !== lost) return; // someone else leads now
        if (role === "leader" || this.#transport.isConnected(lost)) return;
        // A follower; a pre-candidate whose pre-vote went unanswered; or a candidate that lost
        // (answers take milliseconds, turns are 1.5 ticks apart), typically a split vote with
        // a voter whose own timer fired at the same moment: (re)start at a higher term. Turns
        // are staggered by rank, so the retries no longer collide.
        this.#logger.info(`raft ${this.id}: campaigning (${role}): leader ${lost} is gone`);
        this.#node.campaign();
        this.#run();
        if (n < 3) attempt(n + 1);
      }, Math.round(n === 0 ? turn * (rank + 1) : turn * voters.length));
    };
    clearTimeout(this.#failoverTimer);
    attempt(0);
    this.#schedule();
  }

  #onSoftState(soft: SoftState): void {
    const was = this.#soft;
    this.#soft = soft;
    if (was.lead !== soft.lead || was.role !== soft.role) {
      this.#logger.info(`raft ${this.id}: ${soft.role}, leader ${soft.lead}`);
    }
    if (soft.role !== "leader" && this.#confPending && this.#confPending.index === 0) {
      this.#confPending.reject(this.#notLeader());
      this.#confPending = undefined;
    }
    for (const wake of [...this.#softWaiters]) wake();
    if (was.lead !== soft.lead || was.role !== soft.role) {
      for (const listener of [...this.#roleListeners]) listener(soft.role, soft.lead);
    }
  }

  // -------------------------------------------------------------------------------------------
  // ReadIndex

  #readContext(): { key: string; bytes: Uint8Array } {
    const bytes = new Uint8Array(12);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, this.id);
    view.setFloat64(4, ++this.#readSeq);
    return { key: hex(bytes), bytes };
  }

  #onReadState(rs: ReadState): void {
    const key = hex(rs.context);
    const read = this.#reads.get(key);
    if (read === undefined) return;
    this.#reads.delete(key);
    read.index = rs.index;
    if (this.#applied >= rs.index) read.resolve(rs.index);
    else this.#waitingReads.push(read);
  }

  #releaseReads(): void {
    if (this.#waitingReads.length === 0) return;
    const still: PendingRead[] = [];
    for (const r of this.#waitingReads) {
      if (this.#applied >= r.index) r.resolve(r.index);
      else still.push(r);
    }
    this.#waitingReads = still;
  }

  /** Retries reads the core dropped (no leader then), and fails those past their deadline. */
  #checkReads(): void {
    for (const [key, r] of this.#reads) {
      if (this.#ticks >= r.deadline) {
        this.#reads.delete(key);
        r.reject(new RaftTimeoutError("no leader confirmed a read index"));
      } else if (this.#ticks >= r.retryAt) {
        r.retryAt = this.#ticks + this.#electionTicks;
        this.#node.readIndex(unhex(key));
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Helpers

  #proposeConfChange(cc: ConfChange): Promise<void> {
    try {
      this.#checkRunning(cc.type);
      if (this.#soft.role !== "leader") throw this.#notLeader();
      if (this.#confPending) {
        throw new ProposalDroppedError("another membership change is in progress");
      }
      this.#node.proposeConfChange(cc);
    } catch (err) {
      return Promise.reject(err);
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#confPending = { cc, resolve, reject, index: 0, term: 0 };
    this.#schedule();
    return promise;
  }

  /** The members' addresses, as `[id, address]`; recomputed when `changed`. */
  #memberAddresses(changed: boolean): [NodeId, string][] {
    if (changed || this.#memberAddressCache === undefined) {
      this.#memberAddressCache = [...this.#addresses].filter(([id]) => this.#isMember(id));
    }
    return this.#memberAddressCache;
  }

  #isMember(id: NodeId): boolean {
    return this.#confState.voters.includes(id) || this.#confState.learners.includes(id);
  }

  /** Whether `id` was removed from the cluster (and not added back). */
  #isRemovedPeer(id: NodeId): boolean {
    return this.#removedPeers.has(id) && !this.#isMember(id);
  }

  #removedList(): [NodeId, string][] {
    return [...this.#removedPeers];
  }

  /** Member `by` says this node was removed: record it (durably) and tell the owner. */
  #toldRemoved(by: NodeId): void {
    if (this.#stopped || this.#removed) return;
    this.#removed = true;
    this.#logger.warn(`raft ${this.id}: member ${by} says this node was removed from the cluster`);
    this.#removedPeers.set(this.id, this.address);
    try {
      this.#storage.setApplied(
        { ...this.#storage.appliedState(), removed: this.#removedList() },
        true,
      );
      this.#storage.flush();
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    this.#notifyRemoved({
      by,
      index: 0,
      message: `raft node ${this.id} was removed from the cluster (member ${by} says so)`,
    });
  }

  #notifyRemoved(info: RemovedInfo): void {
    this.#removedInfo = info;
    const listeners = [...this.#removedListeners];
    const option = this.#options.onRemoved;
    queueMicrotask(() => {
      option?.(info);
      for (const listener of listeners) listener(info);
    });
  }

  /**
   * Tells the transport whom to talk to: the members of the configuration (with the addresses
   * we know), or, while this node has no configuration yet (it is joining), every address it
   * was given.
   */
  #syncPeers(): void {
    if (this.#stopped) return;
    const members = [...this.#confState.voters, ...this.#confState.learners];
    const wanted = members.length > 0 ? members : [...this.#addresses.keys()];
    const keep = new Set(wanted);
    for (const id of this.#transport.peers().keys()) {
      if (!keep.has(id)) this.#transport.removePeer(id);
    }
    for (const id of wanted) {
      if (id !== this.id) this.#transport.setPeer(id, this.#addresses.get(id));
    }
    // Removed members are told so, once (see Transport.tellRemoved).
    if (!this.#removed) {
      for (const [id, address] of this.#removedPeers) {
        if (address !== "" && !keep.has(id)) this.#transport.tellRemoved(id, address);
      }
    }
  }

  /** Reads stored entries `[lo, hi]` page by page. */
  #forEachStored(lo: number, hi: number, fn: (e: Entry) => void): void {
    let next = lo;
    while (next <= hi) {
      const page = this.#storage.entries(next, hi + 1, PAGE_BYTES);
      for (const e of page) fn(e);
      next += page.length;
    }
  }

  async *#iterate(
    start: () => number | undefined,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<CommittedEntry> {
    // A seq beyond the end has no raft index yet: wait for it.
    let next = start();
    while (next === undefined) {
      if (this.#stopped || signal?.aborted) return;
      await this.#changes.next(signal);
      next = start();
    }
    if (!Number.isSafeInteger(next) || next < 1) {
      throw new RangeError(`Raft indexes are whole numbers from 1; got ${next}`);
    }
    while (!this.#stopped && !signal?.aborted) {
      if (next > this.#applied) {
        await this.#changes.next(signal);
        continue;
      }
      if (next <= this.#storage.firstIndex() - 1) throw new CompactedError(next);
      const page = this.#storage.entries(next, this.#applied + 1, PAGE_BYTES);
      for (const e of page) {
        next = e.index + 1;
        if (!isData(e)) continue;
        const seq = this.#seqOf(e.index);
        yield { index: e.index, term: e.term, seq, data: e.data };
        if (this.#stopped || signal?.aborted) return;
      }
    }
  }

  /** `seq` of the applied data entry at raft index `index`. */
  #seqOf(index: number): number {
    const a = this.#dataIndexes;
    let lo = 0;
    let hi = a.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] === index) return this.#seqBase + mid + 1;
      if (a[mid] < index) lo = mid + 1;
      else hi = mid - 1;
    }
    throw new CompactedError(index);
  }

  #nextTick(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.#tickMs));
  }

  /** Resolves at the next change of role or leader, or after a tick at most. */
  #nextSoftChange(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#softWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, this.#tickMs);
      this.#softWaiters.add(done);
    });
  }

  #notLeader(): NotLeaderError {
    const lead = this.#soft.lead;
    return new NotLeaderError(lead, lead === None ? undefined : this.#addresses.get(lead));
  }

  #checkRunning(what: string): void {
    if (this.#stopped) throw new DriverStoppedError(what, { cause: this.#fatal });
  }

  #fail(err: Error): void {
    if (this.#stopped) return;
    this.#logger.error(`raft ${this.id}: stopping on a fatal error: ${err.stack ?? err}`);
    this.#fatal = err;
    this.#shutdown(new DriverStoppedError("go on after a fatal error", { cause: err }));
    this.#transport.close().catch(() => {});
    this.#options.onFatal?.(err);
  }

  #shutdown(err: Error): void {
    this.#stopped = true;
    clearInterval(this.#ticker);
    clearTimeout(this.#failoverTimer);
    for (const p of this.#unindexed.values()) p.reject(err);
    for (const p of this.#byIndex.values()) p.reject(err);
    this.#unindexed.clear();
    this.#byIndex.clear();
    this.#confPending?.reject(err);
    this.#confPending = undefined;
    for (const r of this.#reads.values()) r.reject(err);
    for (const r of this.#waitingReads) r.reject(err);
    this.#reads.clear();
    this.#waitingReads = [];
    this.#changes.wake();
    for (const wake of [...this.#softWaiters]) wake();
    try {
      this.#storage.close();
    } catch (closeErr) {
      this.#logger.error(`raft ${this.id}: closing storage: ${closeErr}`);
    }
  }
}

/**
 * Writes the configuration of a brand-new member (the storage's bootstrap configuration) into
 * its log, as committed conf change entries at term 1, as etcd's bootstrap does. A member that
 * joins later replays the log from index 1 and must learn the founding members from it, or it
 * would believe itself the only voter. The entries carry no addresses, so every founding member
 * writes exactly the same bytes (log matching); addresses come from `peers` and later entries.
 */
function bootstrapLog(storage: SqliteStorage): void {
  const applied = storage.appliedState();
  const fresh = storage.lastIndex() === 0 && storage.firstIndex() === 1 &&
    storage.hardState().term === 0 && applied.index === 0;
  const { voters, learners } = applied.confState;
  if (!fresh || voters.length === 0) return;
  const changes: ConfChange[] = [
    ...[...voters].sort((a, b) => a - b).map((nodeId) => ({ type: "addNode" as const, nodeId })),
    ...[...learners].sort((a, b) => a - b).map((nodeId) => ({
      type: "addLearner" as const,
      nodeId,
    })),
  ];
  const entries: Entry[] = changes.map((cc, i) => ({
    index: i + 1,
    term: 1,
    type: "confChange",
    data: encodeConfChange(cc),
  }));
  storage.setApplied(
    { index: entries.length, confState: applied.confState, addresses: [] },
    true,
  );
  storage.saveReady({ hardState: { term: 1, vote: None, commit: entries.length }, entries });
}

function isData(e: Entry): boolean {
  return e.type === "normal" && e.data.byteLength > 0;
}

/**
 * Merges consecutive appends to the same follower into one message: what a follower does with
 * the merged message is what it would do with both, minus the first answer (a lost message,
 * which Raft tolerates). Under load the leader makes one MsgApp per proposal; merged, a Ready
 * costs each follower one message, one append and one answer.
 */
export function coalesce(messages: readonly PeerMessage[], self: NodeId): PeerMessage[] {
  const out: PeerMessage[] = [];
  const lastApp = new Map<NodeId, number>();
  for (const m of messages) {
    if (m.to === self) continue;
    if (m.type !== "MsgApp") {
      // Another message to this peer: later appends must not jump ahead of it.
      lastApp.delete(m.to);
      out.push(m);
      continue;
    }
    const at = lastApp.get(m.to);
    const prev = at === undefined ? undefined : out[at] as MsgApp;
    const tail = prev?.entries.at(-1);
    if (
      prev && tail && prev.term === m.term && m.index === tail.index && m.logTerm === tail.term
    ) {
      out[at!] = {
        ...prev,
        entries: [...prev.entries, ...m.entries],
        commit: Math.max(prev.commit, m.commit),
      };
      continue;
    }
    lastApp.set(m.to, out.length);
    out.push(m);
  }
  return out;
}

function decodeEnvelope(data: Uint8Array): Envelope {
  const e = envelopeUnpackr.unpack(data) as Partial<Envelope>;
  if (
    typeof e !== "object" || e === null || e.v !== 1 || typeof e.seq !== "number" ||
    !Array.isArray(e.addresses) || !(e.app instanceof Uint8Array) ||
    (e.removed !== undefined && !Array.isArray(e.removed))
  ) {
    throw new SyntaxError("A raft snapshot's data is not a driver envelope");
  }
  return e as Envelope;
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function unhex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}
