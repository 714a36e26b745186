/**
 * What Linux's `/proc` tells about sockets, for the mesh:
 *
 * - **which ports a task listens on** (`/proc/net/tcp` and `tcp6`, state LISTEN), so that a
 *   service's virtual IP also forwards ports its spec does not name, as Docker's VIP forwards
 *   every port. A socket bound to the task's own address is the task's; one bound to every
 *   address (`0.0.0.0` or `::`) counts only if one of the task's processes holds it (found by
 *   the socket's inode among `/proc/<pid>/fd` of the processes whose environment carries
 *   `SHOAL_TASK_ID`, which the process executor sets).
 * - **which task opened a connection** (or sent a DNS query): a task that does not bind its own
 *   address connects from 127.0.0.1, so the source address alone does not say; the socket's
 *   inode, found by its local and remote ends, and the process holding it do.
 *
 * Addresses in `/proc/net/*` are hexadecimal in the machine's byte order (little-endian on every
 * platform Shoal runs on) and ports big-endian.
 *
 * @module
 */

/** One line of `/proc/net/tcp`, `tcp6`, `udp` or `udp6`. */
export interface ProcSocket {
  readonly localAddr: string;
  readonly localPort: number;
  readonly remoteAddr: string;
  readonly remotePort: number;
  /** The kernel's state number (TCP LISTEN is 0x0A; UDP sockets are 0x07). */
  readonly state: number;
  readonly uid: number;
  readonly inode: number;
}

/** TCP's LISTEN state in `/proc/net/tcp`. */
export const TCP_LISTEN = 0x0a;

/** A little-endian hex word of `/proc/net` as four address bytes. */
function wordBytes(hex: string): number[] {
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** An address of `/proc/net/tcp` (8 hex digits) or `tcp6` (32) as text; v4-mapped v6 as v4. */
export function decodeProcAddr(hex: string): string {
  if (hex.length === 8) return wordBytes(hex).join(".");
  if (hex.length !== 32) throw new SyntaxError(`not a /proc/net address: ${hex}`);
  const bytes: number[] = [];
  for (let i = 0; i < 32; i += 8) bytes.push(...wordBytes(hex.slice(i, i + 8)));
  const isMapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff &&
    bytes[11] === 0xff;
  if (isMapped) return bytes.slice(12).join(".");
  if (bytes.every((b) => b === 0)) return "::";
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

/** Parses the text of `/proc/net/tcp` (or tcp6, udp, udp6). Malformed lines are skipped. */
export function parseProcNet(text: string): ProcSocket[] {
  const out: ProcSocket[] = [];
  const lines = text.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const f = lines[i].trim().split(/\s+/);
    if (f.length < 10) continue;
    const [la, lp] = f[1].split(":");
    const [ra, rp] = f[2].split(":");
    try {
      out.push({
        localAddr: decodeProcAddr(la),
        localPort: parseInt(lp, 16),
        remoteAddr: decodeProcAddr(ra),
        remotePort: parseInt(rp, 16),
        state: parseInt(f[3], 16),
        uid: Number(f[7]),
        inode: Number(f[9]),
      });
    } catch {
      continue;
    }
  }
  return out;
}

/** Whether an address means "every address". */
export function isWildcard(addr: string): boolean {
  return addr === "0.0.0.0" || addr === "::";
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

/** The TCP sockets of this network namespace (v4 and v6). */
export async function readTcpSockets(): Promise<ProcSocket[]> {
  const [v4, v6] = await Promise.all([readText("/proc/net/tcp"), readText("/proc/net/tcp6")]);
  return [...parseProcNet(v4), ...parseProcNet(v6)];
}

/** The UDP sockets of this network namespace (v4 and v6). */
export async function readUdpSockets(): Promise<ProcSocket[]> {
  const [v4, v6] = await Promise.all([readText("/proc/net/udp"), readText("/proc/net/udp6")]);
  return [...parseProcNet(v4), ...parseProcNet(v6)];
}

/**
 * Which process belongs to which task, by the `SHOAL_TASK_ID` in its environment. Each pid's
 * environment is read once (it does not change after `exec`); pids that went away are forgotten
 * at the next {@linkcode TaskProcesses.refresh}.
 */
export class TaskProcesses {
  #taskOf = new Map<number, string | null>();
  #procRoot: string;

  /** Reads processes under `procRoot` (default `/proc`). */
  constructor(procRoot = "/proc") {
    this.#procRoot = procRoot;
  }

  /** Re-lists the processes; returns task id → its pids. */
  async refresh(): Promise<Map<string, number[]>> {
    const seen = new Set<number>();
    try {
      for await (const entry of Deno.readDir(this.#procRoot)) {
        if (!/^\d+$/.test(entry.name)) continue;
        const pid = Number(entry.name);
        seen.add(pid);
        if (!this.#taskOf.has(pid)) this.#taskOf.set(pid, await this.#readTask(pid));
      }
    } catch {
      // No /proc: nothing is known.
    }
    for (const pid of this.#taskOf.keys()) if (!seen.has(pid)) this.#taskOf.delete(pid);
    const byTask = new Map<string, number[]>();
    for (const [pid, task] of this.#taskOf) {
      if (task === null) continue;
      const list = byTask.get(task);
      if (list) list.push(pid);
      else byTask.set(task, [pid]);
    }
    return byTask;
  }

  /** The task a pid belongs to, reading it if not known yet. */
  async taskOf(pid: number): Promise<string | undefined> {
    let task = this.#taskOf.get(pid);
    if (task === undefined) {
      task = await this.#readTask(pid);
      this.#taskOf.set(pid, task);
    }
    return task ?? undefined;
  }

  async #readTask(pid: number): Promise<string | null> {
    let environ: Uint8Array;
    try {
      environ = await Deno.readFile(`${this.#procRoot}/${pid}/environ`);
    } catch {
      return null;
    }
    const text = new TextDecoder().decode(environ);
    for (const entry of text.split("\0")) {
      if (entry.startsWith("SHOAL_TASK_ID=")) return entry.slice("SHOAL_TASK_ID=".length);
    }
    return null;
  }

  /** The socket inodes a process holds. */
  async socketInodes(pid: number): Promise<Set<number>> {
    const out = new Set<number>();
    const dir = `${this.#procRoot}/${pid}/fd`;
    try {
      for await (const entry of Deno.readDir(dir)) {
        let link: string;
        try {
          link = await Deno.readLink(`${dir}/${entry.name}`);
        } catch {
          continue;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m) out.add(Number(m[1]));
      }
    } catch {
      // Gone, or not ours to read.
    }
    return out;
  }

  /**
   * The task holding the socket `inode`, looking only at task processes (a socket held by no
   * task process is the host's). Undefined: no task holds it.
   */
  async taskHolding(inode: number): Promise<string | undefined> {
    const byTask = await this.refresh();
    for (const [task, pids] of byTask) {
      for (const pid of pids) {
        if ((await this.socketInodes(pid)).has(inode)) return task;
      }
    }
    return undefined;
  }
}

/**
 * The TCP ports each task listens on: sockets in LISTEN bound to one of the task's addresses, or
 * to every address and held by one of the task's processes (`pidsByTask`, `inodesOf`).
 */
export async function listeningPortsByTask(
  sockets: readonly ProcSocket[],
  tasks: readonly { id: string; addrs: readonly string[] }[],
  pidsByTask: ReadonlyMap<string, readonly number[]>,
  inodesOf: (pid: number) => Promise<Set<number>>,
): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  const listening = sockets.filter((s) => s.state === TCP_LISTEN);
  const wildcard = listening.filter((s) => isWildcard(s.localAddr));
  for (const task of tasks) {
    const ports = new Set<number>();
    for (const s of listening) if (task.addrs.includes(s.localAddr)) ports.add(s.localPort);
    const pids = pidsByTask.get(task.id) ?? [];
    if (wildcard.length > 0 && pids.length > 0) {
      const held = new Set<number>();
      for (const pid of pids) for (const inode of await inodesOf(pid)) held.add(inode);
      for (const s of wildcard) if (held.has(s.inode)) ports.add(s.localPort);
    }
    if (ports.size > 0) out.set(task.id, [...ports].sort((a, b) => a - b));
  }
  return out;
}
