/**
 * How the mesh map reaches workers, which hold no state of their own: the dispatcher sends each
 * session a `mesh` message (`node/agent_protocol.ts`) when it opens and whenever the map changes
 * ({@linkcode MeshMapFeed}); the worker's mesh reads the last one its session received
 * ({@linkcode sessionMeshSource}), after checking it against {@linkcode MeshMapSchema}.
 *
 * @module
 */
import type { Logger } from "../../actors/runtime.ts";
import type { ClusterState } from "../../actors/state.ts";
import { equalData } from "../../actors/equal.ts";
import type { MeshMapMessage } from "../agent_protocol.ts";
import type { MeshSource } from "./mesh.ts";
import { EMPTY_MESH_MAP, type MeshMap, meshMapFromState, MeshMapSchema } from "./mesh_map.ts";

/** Options of a {@linkcode MeshMapFeed}. */
export interface MeshMapFeedOptions {
  /** The manager whose state the map is computed from. */
  manager: {
    readonly state: ClusterState;
    onApplied(listener: () => void): () => void;
    onRestored?(listener: () => void): () => void;
  };
  /** Called with the message for every session when the map changed. */
  broadcast: (message: MeshMapMessage) => void;
  /** Shortest time between two computations of the map, ms (default 100). */
  intervalMs?: number;
}

/**
 * The dispatcher's side: {@linkcode MeshMapFeed.full} is the message a session gets when it
 * opens; after applied entries the map is computed again (at most every `intervalMs`, since it
 * costs time linear in the swarm's tasks) and broadcast when it changed (the log index alone
 * changing is no change).
 */
export class MeshMapFeed {
  #opts: MeshMapFeedOptions;
  #last: MeshMap | undefined;
  #lastIndex = -1;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastRun = 0;
  #unsubscribe: () => void;

  /** A feed; it follows the manager until `close()`. */
  constructor(options: MeshMapFeedOptions) {
    this.#opts = options;
    const offApplied = options.manager.onApplied(() => this.#schedule());
    const offRestored = options.manager.onRestored?.(() => this.#schedule());
    this.#unsubscribe = () => {
      offApplied();
      offRestored?.();
    };
  }

  #current(): MeshMap {
    const state = this.#opts.manager.state;
    if (this.#last === undefined || this.#lastIndex !== state.index) {
      const next = meshMapFromState(state);
      this.#lastIndex = state.index;
      if (this.#last === undefined || !sameMap(this.#last, next)) this.#last = next;
    }
    return this.#last;
  }

  /** The message a session gets when it opens: the current map. */
  full(): MeshMapMessage {
    return { t: "mesh", map: this.#current() };
  }

  /** Computes the map now; broadcasts it if it changed. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lastRun = Date.now();
    const before = this.#last;
    const now = this.#current();
    if (now !== before) this.#opts.broadcast({ t: "mesh", map: now });
  }

  /** Stops following the manager. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe();
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    const interval = this.#opts.intervalMs ?? 100;
    const wait = Math.max(0, this.#lastRun + interval - Date.now());
    this.#timer = setTimeout(() => this.flush(), wait);
  }
}

function sameMap(a: MeshMap, b: MeshMap): boolean {
  return equalData(a.nodes, b.nodes) && equalData(a.networks, b.networks) &&
    equalData(a.services, b.services) && equalData(a.tasks, b.tasks);
}

/**
 * A worker's mesh source: the last map its session received. A map that fails validation is
 * logged and ignored (the previous one stays).
 */
export function sessionMeshSource(
  session: { readonly meshMap: unknown; onMeshMap(listener: () => void): () => void },
  logger?: Logger,
): MeshSource {
  let raw: unknown = undefined;
  let map: MeshMap = EMPTY_MESH_MAP;
  const current = () => {
    const next = session.meshMap;
    if (next !== raw) {
      raw = next;
      const parsed = MeshMapSchema.safeParse(next);
      if (parsed.success) map = parsed.data;
      else if (next !== undefined) {
        logger?.error(`mesh: the manager sent a map that is not valid: ${parsed.error.message}`);
      }
    }
    return map;
  };
  return { current, subscribe: (listener) => session.onMeshMap(listener) };
}
