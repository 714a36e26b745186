/**
 * UDP through the mesh: a socket on a published port or a VIP's port whose datagrams go to a
 * task of the service, with the task's answers sent back to whoever asked. UDP has no
 * connections, so the relay keeps a flow table, as Linux's conntrack does for Docker's IPVS:
 * one flow per client address and port, tied to one task (through its own socket on this node,
 * or a flow on the trunk to the task's node), forgotten after {@linkcode UDP_IDLE_MS} without
 * a datagram either way.
 *
 * @module
 */
import * as dgram from "node:dgram";
import type { Logger } from "../../actors/runtime.ts";

/** How long a flow lives without a datagram either way (conntrack's UDP timeout is 30 s). */
export const UDP_IDLE_MS = 30_000;
/** Datagrams of a new flow held while its task is chosen; later ones are dropped. */
const MAX_PENDING = 64;

/** Where a flow's datagrams go. */
export interface UdpTarget {
  /** Sends one datagram to the task. */
  send(datagram: Uint8Array): void;
  /** Ends the flow (its socket or its trunk flow). */
  close(): void;
}

/** A client of a relay: the source of its datagrams. */
export interface UdpClient {
  readonly address: string;
  readonly port: number;
}

/** Options of a {@linkcode UdpRelay}. */
export interface UdpRelayOptions {
  host: string;
  port: number;
  /**
   * Chooses a task for a new client and opens the way to it; `reply` sends the task's answers
   * to the client, `onEnd` says the target went (the next datagram opens a new flow).
   * Undefined: the client is refused (its datagrams are dropped, as a firewall drops them).
   */
  open(
    client: UdpClient,
    reply: (datagram: Uint8Array) => void,
    onEnd: () => void,
  ): Promise<UdpTarget | undefined>;
  /** Flow idle timeout, ms (default {@linkcode UDP_IDLE_MS}). */
  idleMs?: number;
  logger?: Logger;
}

interface Flow {
  target: UdpTarget | undefined;
  /** Datagrams that came while the target was being opened. */
  pending: Uint8Array[] | undefined;
  lastActive: number;
  closed: boolean;
}

/** A UDP socket of the mesh and its flows. See the module documentation. */
export class UdpRelay {
  #opts: UdpRelayOptions;
  #socket: dgram.Socket | undefined;
  #flows = new Map<string, Flow>();
  #sweep: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** A relay; call `start()`. */
  constructor(options: UdpRelayOptions) {
    this.#opts = options;
  }

  /** Flows open now. */
  get flows(): number {
    return this.#flows.size;
  }

  /** Binds the socket; rejects if it cannot. */
  async start(): Promise<void> {
    const { host, port } = this.#opts;
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, host, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    if (this.#closed) {
      socket.close();
      return;
    }
    this.#socket = socket;
    socket.on("error", (err: Error) => this.#opts.logger?.warn(`mesh udp ${host}:${port}: ${err}`));
    socket.on("message", (msg: Uint8Array, from: dgram.RemoteInfo) => this.#onMessage(msg, from));
    const idle = this.#opts.idleMs ?? UDP_IDLE_MS;
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const [key, flow] of this.#flows) {
        if (now - flow.lastActive > idle) this.#end(key, flow);
      }
    }, Math.max(10, Math.min(5_000, idle / 3)));
  }

  /** Closes the socket and every flow. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const [key, flow] of this.#flows) this.#end(key, flow);
    try {
      this.#socket?.close();
    } catch {
      // already closed
    }
  }

  #onMessage(msg: Uint8Array, from: dgram.RemoteInfo): void {
    const key = `${from.address}|${from.port}`;
    const existing = this.#flows.get(key);
    if (existing) {
      existing.lastActive = Date.now();
      if (existing.target) existing.target.send(msg);
      else if (existing.pending && existing.pending.length < MAX_PENDING) {
        existing.pending.push(msg);
      }
      return;
    }
    const flow: Flow = { target: undefined, pending: [msg], lastActive: Date.now(), closed: false };
    this.#flows.set(key, flow);
    const client = { address: from.address, port: from.port };
    const reply = (datagram: Uint8Array) => {
      if (flow.closed || this.#socket === undefined) return;
      flow.lastActive = Date.now();
      this.#socket.send(datagram, client.port, client.address);
    };
    this.#opts.open(client, reply, () => this.#end(key, flow)).then((target) => {
      if (target === undefined || flow.closed) {
        target?.close();
        this.#end(key, flow);
        return;
      }
      flow.target = target;
      const pending = flow.pending ?? [];
      flow.pending = undefined;
      for (const d of pending) target.send(d);
    }, (err) => {
      this.#opts.logger?.warn(`mesh udp: a flow from ${client.address}:${client.port}: ${err}`);
      this.#end(key, flow);
    });
  }

  #end(key: string, flow: Flow): void {
    if (flow.closed) return;
    flow.closed = true;
    if (this.#flows.get(key) === flow) this.#flows.delete(key);
    flow.pending = undefined;
    flow.target?.close();
  }
}

/**
 * A flow to a task on this node: a socket of its own, which takes answers from the task only
 * (its port is open to anyone on the machine). `onError` hears of a failed socket.
 */
export function localUdpTarget(
  addr: string,
  port: number,
  reply: (datagram: Uint8Array) => void,
  onError: () => void = () => {},
): UdpTarget {
  const socket = dgram.createSocket(addr.includes(":") ? "udp6" : "udp4");
  let closed = false;
  socket.on("message", (msg: Uint8Array, from: dgram.RemoteInfo) => {
    if (!closed && from.address === addr && from.port === port) reply(msg);
  });
  socket.on("error", onError);
  return {
    send(datagram) {
      if (!closed) socket.send(datagram, port, addr);
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        socket.close();
      } catch {
        // already closed
      }
    },
  };
}
