/**
 * The API of a manager that is locked (autolock, SwarmKit's): its log is encrypted with a data key
 * wrapped by a key derived from the unlock key, which is never stored, so after a restart it can
 * read nothing until someone gives that key. Until then it answers only `GET /info` (as Docker's
 * `LocalNodeState: "locked"`) and `POST /swarm/unlock`; everything else is refused with Docker's
 * words.
 *
 * @module
 */
import { type DataKeys, openKeys, UnlockError } from "./keys.ts";

/** Docker's words for any request to a locked manager. */
export const LOCKED_MESSAGE =
  'Swarm is encrypted and needs to be unlocked before it can be used. Please use "shoal swarm unlock" to unlock it.';

/** A handler for the locked API, and the keys once someone unlocked it. */
export interface LockedApi {
  handler(req: Request): Promise<Response>;
  /** Resolves with the opened keys once a valid unlock key was given. */
  readonly unlocked: Promise<DataKeys>;
}

/** The locked API of the manager of `dataDir` (node `nodeId`). */
export function lockedApi(dataDir: string, nodeId: string): LockedApi {
  const { promise, resolve } = Promise.withResolvers<DataKeys>();
  let opened = false;
  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", "api-version": "1.41", "ostype": "linux" },
    });
  return {
    unlocked: promise,
    async handler(req) {
      const path = new URL(req.url).pathname.replace(/^\/v[0-9.]+(?=\/)/, "");
      if (req.method === "GET" && (path === "/_ping" || path === "/version")) {
        return path === "/_ping" ? new Response("OK") : json({ ApiVersion: "1.41", Os: "linux" });
      }
      if (req.method === "GET" && path === "/info") {
        return json({
          ID: nodeId,
          Swarm: {
            NodeID: nodeId,
            NodeAddr: "",
            LocalNodeState: "locked",
            ControlAvailable: false,
            Error: "",
            RemoteManagers: null,
          },
        });
      }
      if (req.method === "POST" && path === "/swarm/unlock") {
        if (opened) return json({ message: "swarm is not locked" }, 503);
        let key = "";
        try {
          const body = await req.json();
          key = typeof body?.UnlockKey === "string" ? body.UnlockKey.trim() : "";
        } catch {
          return json({ message: 'invalid request: expected {"UnlockKey": "SWMKEY-1-..."}' }, 400);
        }
        try {
          const keys = await openKeys(dataDir, key);
          if (keys === undefined) throw new UnlockError("this node holds no keys");
          opened = true;
          resolve(keys);
          return new Response(null, { status: 200 });
        } catch (err) {
          if (err instanceof UnlockError || /unlock key/i.test((err as Error).message)) {
            return json({ message: (err as Error).message }, 400);
          }
          throw err;
        }
      }
      return json({ message: LOCKED_MESSAGE }, 503);
    },
  };
}
