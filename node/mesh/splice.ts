/**
 * Copying bytes both ways between two connections, as the mesh forwards them. Plain TCP uses
 * Deno's own sockets with a read/write loop (measured about twice as fast as either runtime's
 * stream piping, see bench/RESULTS.md). The mesh crosses between nodes through trunks
 * (trunk.ts); {@linkcode spliceSocketConn} joins a `node:tls` socket (Deno's own TLS cannot ask
 * clients for certificates) to a Deno socket for the endpoint's one-connection-per-stream
 * `connect` requests (peer.ts).
 *
 * Half-closes are passed on (a client that shuts its writing side still gets its answer); the
 * pair is closed once both directions ended, or at once when either fails.
 *
 * @module
 */
import type { HeldSocket } from "./peer.ts";

const CHUNK = 64 * 1024;
/** Bytes read from a TLS socket but not yet written to the Deno side, above which it is paused. */
export const MAX_BACKLOG = 16 * 1024 * 1024;

function closeConn(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Copies `from` to `to` until `from` ends; then half-closes `to`. Throws on failure. */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(CHUNK);
  for (;;) {
    const n = await from.read(buf);
    if (n === null) break;
    await writeAll(to, buf.subarray(0, n));
  }
  await to.closeWrite().catch(() => {});
}

/** Joins two Deno connections both ways; resolves when both are closed. */
export async function spliceConns(a: Deno.Conn, b: Deno.Conn): Promise<void> {
  const fail = () => {
    closeConn(a);
    closeConn(b);
  };
  await Promise.all([pump(a, b).catch(fail), pump(b, a).catch(fail)]);
  closeConn(a);
  closeConn(b);
}

/**
 * Joins a `node:net`/`node:tls` socket (with what was held of it, see {@linkcode HeldSocket}) and
 * a Deno connection both ways; resolves when both are closed. The socket must allow half-open
 * connections (`allowHalfOpen`), or a half-close would end both directions.
 *
 * The socket is paused only when what it delivered and the Deno side has not taken yet passes
 * {@linkcode MAX_BACKLOG}: Deno's `node:tls` (2.9) can lose the end of a stream that arrives
 * while a socket is paused (seen in mesh_test.ts's large transfer when pausing at 1 MiB: 1 run
 * in 10 to 15 never saw the end), so pausing is kept for consumers that fall that far behind.
 */
export function spliceSocketConn(held: HeldSocket, conn: Deno.Conn): Promise<void> {
  const socket = held.socket;
  const { promise, resolve } = Promise.withResolvers<void>();
  let closed = false;
  let ended = 0;
  const close = () => {
    if (closed) return;
    closed = true;
    socket.destroy();
    closeConn(conn);
    resolve();
  };
  const oneEnded = () => {
    if (++ended === 2) close();
  };
  // socket → conn: writes are chained in order.
  let writing: Promise<void> = Promise.resolve();
  let backlog = 0;
  let paused = false;
  const onData = (chunk: Uint8Array) => {
    backlog += chunk.length;
    if (backlog > MAX_BACKLOG && !paused) {
      paused = true;
      socket.pause();
    }
    writing = writing.then(() => writeAll(conn, chunk)).then(() => {
      backlog -= chunk.length;
      if (paused && backlog <= MAX_BACKLOG / 2 && !closed) {
        paused = false;
        socket.resume();
      }
    }, close);
  };
  const onEnd = () => {
    writing.then(() => conn.closeWrite()).catch(() => {}).finally(oneEnded);
  };
  const taken = held.take();
  socket.on("data", onData);
  socket.once("end", onEnd);
  socket.once("error", close);
  socket.once("close", () => {
    // A socket that closes without ending cleanly takes the pair with it.
    if (ended < 2) writing.finally(close);
  });
  for (const chunk of taken.chunks) onData(chunk);
  if (taken.ended) {
    socket.off("end", onEnd);
    onEnd();
  }
  // conn → socket, waiting for the socket to drain when its buffer is full.
  (async () => {
    const buf = new Uint8Array(CHUNK);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (!socket.write(buf.slice(0, n))) {
        await new Promise<void>((r) => {
          const done = () => {
            socket.off("drain", done);
            socket.off("close", done);
            r();
          };
          socket.on("drain", done);
          socket.on("close", done);
        });
      }
      if (closed) return;
    }
    // Ended once what was written is flushed: destroying the socket before would drop it.
    socket.end(oneEnded);
  })().catch(close);
  socket.resume();
  return promise;
}
