/**
 * The local control socket of a running node: `<data dir>/control.sock`, a unix socket of mode
 * 0600 (only the user running the node can use it), through which `shoal swarm leave` and
 * `shoal info --data-dir` reach the node process, as the docker CLI reaches its local daemon.
 *
 * One JSON line in (`{"op":"info"}`, `{"op":"leave","force":false}` or `{"op":"stop"}`), one
 * JSON line out
 * (`{"ok":true,"result":...}` or `{"ok":false,"message":"..."}`).
 *
 * The socket also guards the data dir: a second node process started on a data dir whose
 * socket answers is refused.
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../actors/runtime.ts";

/** A request to a node. */
export type ControlRequest =
  | { op: "info" }
  | { op: "leave"; force: boolean }
  /** Stops the node as Ctrl-C would (`shoal stop`, for a node running in the background). */
  | { op: "stop" };

/** What a node does with requests. */
export interface ControlHandlers {
  info(): unknown;
  /**
   * Leaves the swarm; throws an Error whose message is shown to the user to refuse. May return a
   * function to call once the answer is sent (to stop the process, say).
   */
  leave(force: boolean): Promise<(() => void) | void>;
  /** Stops the node once the answer is sent; absent: `stop` is refused. */
  stop?(): void;
}

/** No node process answers on the data dir's control socket. */
export class NodeNotRunningError extends Error {
  /** Creates the error. */
  constructor(readonly dataDir: string, cause?: unknown) {
    super(`no Shoal node is running with data dir ${dataDir}`, { cause });
    this.name = "NodeNotRunningError";
  }
}

/** The node refused the request; the message says why. */
export class ControlRefusedError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ControlRefusedError";
  }
}

/** Where a data dir's control socket is. */
export function controlSocketPath(dataDir: string): string {
  return join(dataDir, "control.sock");
}

/** A control socket being served. */
export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Serves the control socket of `dataDir`. Throws if another process already answers on it; a
 * stale socket file (from a killed process) is replaced.
 */
export async function serveControl(
  dataDir: string,
  handlers: ControlHandlers,
  logger?: Logger,
): Promise<ControlServer> {
  const path = controlSocketPath(dataDir);
  if (await answers(path)) {
    throw new Error(
      `another Shoal node is already running with data dir ${dataDir} (its control socket ${path} answers)`,
    );
  }
  await Deno.remove(path).catch(() => {});
  const listener = Deno.listen({ transport: "unix", path });
  await Deno.chmod(path, 0o600);
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      void handle(conn, handlers, logger).finally(() => conns.delete(conn));
    }
  })().catch(() => {});
  return {
    path,
    async close() {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      await serving;
      await Deno.remove(path).catch(() => {});
    },
  };
}

async function handle(conn: Deno.Conn, handlers: ControlHandlers, logger?: Logger) {
  try {
    const line = await readLine(conn, 64 * 1024);
    let response: unknown;
    let after: (() => void) | void = undefined;
    try {
      const req = JSON.parse(line) as ControlRequest;
      if (req.op === "info") response = { ok: true, result: await handlers.info() };
      else if (req.op === "leave") {
        after = await handlers.leave(req.force === true);
        response = { ok: true };
      } else if (req.op === "stop" && handlers.stop !== undefined) {
        after = handlers.stop.bind(handlers);
        response = { ok: true };
      } else {response = {
          ok: false,
          message: `unknown operation ${JSON.stringify((req as { op: unknown }).op)}`,
        };}
    } catch (err) {
      response = { ok: false, message: (err as Error).message };
    }
    try {
      await writeAll(conn, new TextEncoder().encode(JSON.stringify(response) + "\n"));
    } finally {
      after?.();
    }
  } catch (err) {
    logger?.warn(`control socket: ${(err as Error).message}`);
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** Sends one request to the node running with `dataDir`; resolves with its result. */
export async function callControl(
  dataDir: string,
  request: ControlRequest,
  timeoutMs = 60_000,
): Promise<unknown> {
  const path = controlSocketPath(dataDir);
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (err) {
    throw new NodeNotRunningError(dataDir, err);
  }
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }, timeoutMs);
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(request) + "\n"));
    let line: string;
    try {
      line = await readLine(conn, 16 * 1024 * 1024);
    } catch (err) {
      throw new Error(`the node did not answer: ${(err as Error).message}`);
    }
    const response = JSON.parse(line) as { ok: boolean; result?: unknown; message?: string };
    if (!response.ok) throw new ControlRefusedError(response.message ?? "refused");
    return response.result;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

async function answers(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function readLine(conn: Deno.Conn, max: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(16 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    const chunk = buf.slice(0, n);
    chunks.push(chunk);
    size += n;
    if (chunk.includes(10)) break;
    if (size > max) throw new Error("the message is too long");
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  const text = new TextDecoder().decode(all);
  const end = text.indexOf("\n");
  if (end < 0) throw new Error("the connection closed before a full line");
  return text.slice(0, end);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}
