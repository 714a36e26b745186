/**
 * Shoal as a library: the event model, the fold, the logs and the manager.
 *
 * ```ts
 * import { Manager, MemoryLog } from "./mod.ts";
 *
 * const log = new MemoryLog();
 * const manager = new Manager({ log });
 * await manager.start();
 * console.log(manager.state.index); // 0: an empty log
 * await manager.stop();
 * ```
 *
 * @module
 */
export * from "./events/schema.ts";
export { EventCodec, MemoryStructureStore } from "./events/codec.ts";
export { type EventLog, type LogEntry, MemoryLog } from "./events/log.ts";
export { SqliteLog } from "./events/sqlite_log.ts";
export {
  applyBatch,
  type ApplyResult,
  ClusterState,
  type NodeRecord,
  type Rejection,
  type ServiceRecord,
  type TaskRecord,
} from "./actors/state.ts";
export { restore, snapshot } from "./actors/snapshot.ts";
export { type Command, decide } from "./actors/commands.ts";
export { type CommandResult, Manager, type Projection } from "./actors/manager.ts";
export { EventRejected } from "./actors/entities/rejection.ts";
export { ActorSystem } from "./actors/runtime.ts";
