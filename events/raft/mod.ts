/**
 * Shoal's Raft core, modelled on etcd-io/raft: a pure, synchronous state machine
 * ({@linkcode RawNode}) driven by ticks, messages and proposals, whose every output is a
 * {@linkcode Ready}. The driver (events/raft/driver.ts) owns the clock, storage and transport.
 *
 * The persistence contract is etcd's classic one: for each Ready, persist its snapshot,
 * entries and hard state, then send its messages, then apply its snapshot and committed
 * entries, then call `advance()`. Votes and append acknowledgements thus always speak for
 * durable state, and a leader counts its own log towards commit only once `advance()` says it
 * is persisted. Proposals are accepted only by the leader (no forwarding): the driver routes
 * them. The only randomness is `Config.random`; time is `tick()`.
 *
 * ```ts
 * import { MemoryStorage, RawNode } from "./mod.ts";
 *
 * const storage = new MemoryStorage({ confState: { voters: [1], learners: [] } });
 * const node = new RawNode({ id: 1, storage, random: () => 0.5 });
 * node.campaign(); // a single voter elects itself
 * while (node.hasReady()) {
 *   const rd = node.ready();
 *   // 1. persist, 2. send rd.messages, 3. apply rd.committedEntries, 4. advance
 *   if (rd.hardState) storage.setHardState(rd.hardState);
 *   storage.append(rd.entries);
 *   node.advance();
 * }
 * console.log(node.status().softState.role); // "leader"
 * ```
 *
 * @module
 */
export { type ProgressStatus, RawNode, type Status } from "./raw_node.ts";
export { type Config, validateConfig, type ValidConfig } from "./raft.ts";
export * from "./types.ts";
export {
  type InitialState,
  MemoryStorage,
  type MemoryStorageOptions,
  type Storage,
} from "./storage.ts";
export {
  CompactedError,
  ProposalDroppedError,
  SnapOutOfDateError,
  SnapshotTemporarilyUnavailableError,
  StepLocalMsgError,
  StepPeerNotFoundError,
  UnavailableError,
} from "./errors.ts";
export { applyToConfState, decodeConfChange, encodeConfChange } from "./confchange.ts";
export type { ProgressState } from "./progress.ts";
export {
  type DataFormatter,
  describeConfChange,
  describeConfState,
  describeEntries,
  describeEntry,
  describeHardState,
  describeMessage,
  describeReadState,
  describeReady,
  describeSnapshot,
  describeSoftState,
  formatData,
} from "./describe.ts";
