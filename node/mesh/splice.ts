/**
 * Copying bytes both ways between two local TCP connections, as the mesh forwards a client to a
 * task on this node: Deno's own sockets with a read/write loop (measured about twice as fast as
 * either runtime's stream piping, see bench/RESULTS.md). Between nodes the mesh goes through
 * trunks instead (trunk.ts).
 *
 * Half-closes are passed on (a client that shuts its writing side still gets its answer); the
 * pair is closed once both directions ended, or at once when either fails.
 *
 * @module
 */
const CHUNK = 64 * 1024;

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
