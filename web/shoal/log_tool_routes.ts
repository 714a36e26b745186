/**
 * The log tools on a running manager (what `shoal log` does offline on a data dir):
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /shoal/v1/log/snapshots[?full=1]` | the stored snapshots: index, raft index, term, size, members, a summary of the state (the whole state, redacted, with `full`) |
 * | `GET /shoal/v1/log/objects/{kind}[/{ref}][?at=I]` | the objects of a kind (`nodes`, `services`, `tasks`, `networks`, `secrets`, `configs`, `cluster`), or the one `ref` names, as of index `I` (default: now); secret data, the CA key and join tokens redacted |
 * | `GET /shoal/v1/log/verify` | reads every entry (checksums, decryption, continuity), compares every snapshot with the fold of the log, and the fold with the running state |
 *
 * The entries themselves are `GET /shoal/v1/log?from=&to=` (`web/shoal/routes.ts`). Errors are
 * `{ "message", "code" }`: an unknown kind or a bad index is a 400, no such object a 404,
 * history compacted away a 410.
 *
 * @module
 */
import type { Manager } from "../../actors/manager.ts";
import { HistoryError, stateAt } from "../../actors/history.ts";
import { describeSnapshots, dumpObjects, parseKind, verifyLog } from "../../actors/log_inspect.ts";
import type { ClusterState } from "../../actors/state.ts";
import type { StoredSnapshot } from "../../events/stored_log.ts";
import { ApiError, json } from "../http.ts";
import type { RouteContext, Router } from "../router.ts";

/** What the log routes need besides the manager. */
export interface LogToolRoutesOptions {
  /**
   * The snapshots the manager's log keeps: `raftSnapshots(storage)` for a Raft member,
   * `sqliteLogSnapshots(log)` for a single manager (`events/stored_log.ts`). None by default.
   */
  snapshots?: () => StoredSnapshot[];
  /** The state at an index, when a faster source than a fold is at hand (`LiveHistory.view`). */
  stateAt?: (index: number) => ClusterState | Promise<ClusterState>;
}

const STATUS_OF: Record<string, number> = {
  out_of_range: 400,
  invalid_argument: 400,
  not_found: 404,
  compacted: 410,
  gap: 500,
};

/** Adds the `/shoal/v1/log/...` routes above to `router`. */
export function addLogToolRoutes(
  router: Router,
  manager: Manager,
  options: LogToolRoutesOptions = {},
): void {
  const snapshots = () => options.snapshots?.() ?? [];
  const guarded = (handler: (ctx: RouteContext) => Response | Promise<Response>) =>
  async (
    ctx: RouteContext,
  ) => {
    try {
      return await handler(ctx);
    } catch (err) {
      if (err instanceof HistoryError) {
        throw new ApiError(STATUS_OF[err.code] ?? 400, err.code, err.message);
      }
      throw err;
    }
  };

  router.get(
    "/shoal/v1/log/snapshots",
    guarded(({ url }) => {
      const full = ["1", "true"].includes(url.searchParams.get("full") ?? "");
      return json(describeSnapshots(snapshots(), full));
    }),
  );

  const objects = guarded(async ({ url, params }) => {
    const kind = parseKind(params.kind);
    const raw = url.searchParams.get("at");
    const last = manager.state.index;
    let state: ClusterState = manager.state;
    if (raw !== null && raw !== "") {
      if (!/^\d+$/.test(raw) || Number(raw) > last) {
        throw new ApiError(
          400,
          "out_of_range",
          `query parameter at: no index ${raw} in this log: indexes go from 0 to ${last}`,
        );
      }
      const at = Number(raw);
      if (at !== last) {
        state = options.stateAt ? await options.stateAt(at) : stateAt(manager.log, at, snapshots());
      }
    }
    // Rendered at once: a live state changes at the next await.
    return json(dumpObjects(state, kind, params.ref));
  });
  router.get("/shoal/v1/log/objects/{kind}", objects);
  router.get("/shoal/v1/log/objects/{kind}/{ref}", objects);

  router.get(
    "/shoal/v1/log/verify",
    guarded(() => json(verifyLog(manager.log, snapshots(), { live: manager.state }))),
  );
}
