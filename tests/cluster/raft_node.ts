/**
 * A Raft manager as its own OS process, for the real-process tests and the Raft benchmark: a
 * {@linkcode RaftDriver} on a {@linkcode SqliteStorage}, and the client protocol of
 * `raft_protocol.ts` (propose, status, entries, readIndex, campaign, transfer).
 *
 * ```sh
 * deno run -A tests/cluster/raft_node.ts --id 1 --data DIR --raft-port 7001 --client-port 7101 \
 *   --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
 * ```
 *
 * Prints `READY <raft address> <client address>` once it listens. A new data dir bootstraps
 * the voters named in `--peers`. SIGTERM or SIGINT stop it cleanly; SIGKILL is the point.
 *
 * @module
 */
import * as net from "node:net";
import { Packr } from "msgpackr";
import { CommitUnknownError, NotLeaderError, RaftDriver } from "../../events/raft/driver.ts";
import { ProposalDroppedError } from "../../events/raft/errors.ts";
import { SqliteStorage, type SyncMode } from "../../events/raft/sqlite_storage.ts";
import { frame, FrameReader, Op, Status } from "./raft_protocol.ts";

interface Args {
  id: number;
  data: string;
  raftPort: number;
  clientPort: number;
  peers: [number, string][];
  tickMs: number;
  sync: SyncMode;
  cluster: string;
  verbose: boolean;
  /** Unset: the driver's default. */
  leaderSendsBeforePersist: boolean | undefined;
  /** The driver's `asyncSync` (`--sync-on-loop` turns it off). */
  asyncSync: boolean;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string, fallback?: string): string => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
    if (fallback !== undefined) return fallback;
    throw new Error(`raft_node: --${name} is required`);
  };
  const peers = get("peers").split(",").map((p) => {
    const [id, addr] = p.split("=");
    return [Number(id), addr] as [number, string];
  });
  return {
    id: Number(get("id")),
    data: get("data"),
    raftPort: Number(get("raft-port", "0")),
    clientPort: Number(get("client-port", "0")),
    peers,
    tickMs: Number(get("tick-ms", "100")),
    sync: get("sync", "full") as SyncMode,
    cluster: get("cluster", "raft-test"),
    verbose: argv.includes("--verbose"),
    leaderSendsBeforePersist: argv.includes("--leader-sends-before-persist")
      ? true
      : argv.includes("--no-leader-sends-before-persist")
      ? false
      : undefined,
    asyncSync: !argv.includes("--sync-on-loop"),
  };
}

const utf8 = new TextEncoder();
const packr = new Packr({ useRecords: false });

async function main(): Promise<void> {
  const args = parseArgs(Deno.args);
  await Deno.mkdir(args.data, { recursive: true });
  const voters = args.peers.map(([id]) => id).sort((a, b) => a - b);
  const storage = new SqliteStorage({
    path: `${args.data}/raft.db`,
    synchronous: args.sync,
    confState: { voters, learners: [] },
  });
  const log = (level: string) => (m: string) => {
    if (args.verbose || level !== "debug") {
      console.error(`${new Date().toISOString()} [raft ${args.id}] ${level} ${m}`);
    }
  };
  const driver = await RaftDriver.start({
    id: args.id,
    clusterId: args.cluster,
    storage,
    port: args.raftPort,
    peers: args.peers,
    tickMs: args.tickMs,
    leaderSendsBeforePersist: args.leaderSendsBeforePersist,
    asyncSync: args.asyncSync,
    logger: {
      debug: args.verbose ? log("debug") : () => {},
      info: args.verbose ? log("info") : () => {},
      warn: log("warn"),
      error: log("error"),
    },
    onFatal: (err) => {
      console.error(`[raft ${args.id}] fatal: ${err.stack ?? err}`);
      Deno.exit(70);
    },
  });
  const server = net.createServer((socket) => serve(driver, socket));
  await new Promise<void>((resolve) => server.listen(args.clientPort, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  console.log(`READY ${driver.address} 127.0.0.1:${port}`);

  const stop = async () => {
    server.close();
    await driver.stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}

/** Serves one client connection: requests in, responses out, many in flight. */
function serve(driver: RaftDriver, socket: net.Socket): void {
  socket.setNoDelay(true);
  const reader = new FrameReader();
  let out: Uint8Array[] = [];
  let scheduled = false;
  const respond = (id: number, status: number, result: Uint8Array) => {
    const head = new Uint8Array(5);
    new DataView(head.buffer).setUint32(0, id);
    head[4] = status;
    out.push(frame(head, result));
    if (!scheduled) {
      scheduled = true;
      // Every response of this turn in one write.
      setImmediate(() => {
        scheduled = false;
        const parts = out;
        out = [];
        if (socket.destroyed) return;
        let len = 0;
        for (const p of parts) len += p.length;
        const all = new Uint8Array(len);
        let at = 0;
        for (const p of parts) {
          all.set(p, at);
          at += p.length;
        }
        socket.write(all);
      });
    }
  };
  const fail = (id: number, err: unknown) => {
    if (err instanceof NotLeaderError) {
      respond(
        id,
        Status.notLeader,
        utf8.encode(JSON.stringify({ leaderId: err.leaderId, leaderAddress: err.leaderAddress })),
      );
    } else if (err instanceof ProposalDroppedError) {
      respond(id, Status.dropped, utf8.encode(err.message));
    } else if (err instanceof CommitUnknownError) {
      respond(id, Status.unknown, utf8.encode(err.message));
    } else {
      respond(id, Status.error, utf8.encode(String((err as Error)?.message ?? err)));
    }
  };
  const f64s = (...values: number[]) => {
    const b = new Uint8Array(8 * values.length);
    const v = new DataView(b.buffer);
    values.forEach((x, i) => v.setFloat64(8 * i, x));
    return b;
  };
  socket.on("data", (chunk: Uint8Array) => {
    for (const body of reader.push(chunk)) {
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      const id = view.getUint32(0);
      const op = body[4];
      const arg = body.subarray(5);
      try {
        switch (op) {
          case Op.propose:
            driver.proposeEntry(new Uint8Array(arg)).then(
              (p) => respond(id, Status.ok, f64s(p.index, p.seq)),
              (err) => fail(id, err),
            );
            break;
          case Op.status:
            respond(id, Status.ok, utf8.encode(JSON.stringify(driver.status())));
            break;
          case Op.entries: {
            const from = view.getFloat64(5);
            const most = view.getUint32(13);
            const rows = driver.readSeq(from, from + most - 1).map((e) => [
              e.seq,
              e.index,
              e.term,
              e.data,
            ]);
            respond(id, Status.ok, new Uint8Array(packr.pack(rows)));
            break;
          }
          case Op.readIndex:
            driver.readIndex().then((i) => respond(id, Status.ok, f64s(i)), (err) => fail(id, err));
            break;
          case Op.campaign:
            driver.campaign();
            respond(id, Status.ok, new Uint8Array(0));
            break;
          case Op.transfer:
            driver.transferLeadership(view.getFloat64(5)).then(
              () => respond(id, Status.ok, new Uint8Array(0)),
              (err) => fail(id, err),
            );
            break;
          default:
            respond(id, Status.error, utf8.encode(`unknown op ${op}`));
        }
      } catch (err) {
        fail(id, err);
      }
    }
  });
  socket.on("error", () => socket.destroy());
}

if (import.meta.main) await main();
