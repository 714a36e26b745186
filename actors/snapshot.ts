/**
 * Snapshots of the cluster state: `snapshot(state)` to bytes and `restore(bytes)` back. A restored
 * state is indistinguishable from the one that was saved: same records, same insertion order,
 * same indexes (rebuilt as rows go in), same recent rejections. Folding the rest of the log onto a
 * restored snapshot gives exactly the state a full replay gives.
 *
 * Snapshots are self-describing msgpack (records on, structures inside the message), so they need
 * nothing from the log's codec to be read.
 *
 * @module
 */
import { Packr } from "msgpackr";
import {
  ClusterState,
  type FileObjectRecord,
  type NetworkRecord,
  type NodeRecord,
  type Rejection,
  type ServiceRecord,
  type SpecRecord,
  type TaskRecord,
} from "./state.ts";
import type { Row, Table } from "./table.ts";

/** The snapshot format this code writes. */
export const SNAPSHOT_FORMAT = 1;

/** What a snapshot holds, as plain data. */
export interface SnapshotData {
  format: number;
  index: number;
  clusters: ClusterState["clusters"] extends Table<infer R> ? R[] : never;
  nodes: NodeRecord[];
  services: ServiceRecord[];
  specs: SpecRecord[];
  tasks: TaskRecord[];
  secrets: FileObjectRecord[];
  configs: FileObjectRecord[];
  networks: NetworkRecord[];
  rejections: Rejection[];
}

const packr = new Packr({ useRecords: true, moreTypes: false });

/** The state as plain data, in table order. */
export function snapshotData(state: ClusterState): SnapshotData {
  return {
    format: SNAPSHOT_FORMAT,
    index: state.index,
    clusters: [...state.clusters.values()],
    nodes: [...state.nodes.values()],
    services: [...state.services.values()],
    specs: [...state.specs.values()],
    tasks: [...state.tasks.values()],
    secrets: [...state.secrets.values()],
    configs: [...state.configs.values()],
    networks: [...state.networks.values()],
    rejections: [...state.rejections],
  };
}

/** Serialises the whole state. */
export function snapshot(state: ClusterState): Uint8Array {
  return packr.pack(snapshotData(state));
}

/** Rebuilds a state from `snapshot`'s bytes. Throws a clear error on bytes that are not one. */
export function restore(bytes: Uint8Array): ClusterState {
  return restoreData(decode(bytes));
}

/**
 * Replaces everything `state` holds with the snapshot in `bytes`, in place: whoever holds the
 * object sees the snapshot's state, exactly as {@linkcode restore} would build it. The bytes are
 * checked before `state` is touched; a state left half-restored (only by a bug) is emptied.
 */
export function restoreInto(state: ClusterState, bytes: Uint8Array): void {
  const data = decode(bytes);
  clearState(state);
  try {
    restoreData(data, state);
  } catch (err) {
    clearState(state);
    throw err;
  }
}

/**
 * Empties a state in place (index 0, no records, no rejections), every row removed through its
 * table so that every index stays in step.
 */
export function clearState(state: ClusterState): void {
  for (const table of tablesOf(state)) {
    for (const id of [...table.values()].map((row) => row.id)) table.delete(id);
  }
  state.rejections.length = 0;
  state.index = 0;
}

function tablesOf(state: ClusterState): Table<Row>[] {
  return [
    state.tasks,
    state.services,
    state.specs,
    state.nodes,
    state.secrets,
    state.configs,
    state.networks,
    state.clusters,
  ] as unknown as Table<Row>[];
}

function decode(bytes: Uint8Array): SnapshotData {
  let data: SnapshotData;
  try {
    data = packr.unpack(bytes) as SnapshotData;
  } catch (err) {
    throw new SyntaxError(`Cannot read snapshot: ${(err as Error).message}`);
  }
  if (data === null || typeof data !== "object" || data.format !== SNAPSHOT_FORMAT) {
    throw new SyntaxError(
      `Cannot read snapshot: format ${
        (data as { format?: unknown })?.format
      } is not ${SNAPSHOT_FORMAT}`,
    );
  }
  return data;
}

/** Rebuilds a state from plain snapshot data, into `state` (an empty one) when given. */
export function restoreData(
  data: SnapshotData,
  state: ClusterState = new ClusterState(),
): ClusterState {
  state.index = data.index;
  fill(state.clusters, data.clusters);
  fill(state.nodes, data.nodes);
  fill(state.specs, data.specs);
  fill(state.services, data.services);
  fill(state.secrets, data.secrets);
  fill(state.configs, data.configs);
  fill(state.networks, data.networks);
  fill(state.tasks, data.tasks);
  state.rejections.push(...data.rejections);
  return state;
}

function fill<R extends Row>(table: Table<R>, rows: readonly R[]): void {
  for (const row of rows) table.put(row);
}
