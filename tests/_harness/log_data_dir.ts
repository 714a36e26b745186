/**
 * Real manager data dirs for the log tools' tests: a {@linkcode Manager} with Shoal's projections
 * carries out real commands (a secret, a network, services, a scale) over either log format,
 * `log.db` (a single manager's {@linkcode SqliteLog}, with snapshots kept beside it) or
 * `raft.db` (a one-voter {@linkcode RaftDriver} whose state machine is the fold, snapshotting
 * and compacting every few entries), optionally encrypted at rest with `node/keys.ts`.
 */
import { EventCodec } from "../../events/codec.ts";
import type { EventLog } from "../../events/log.ts";
import { SqliteLog } from "../../events/sqlite_log.ts";
import { RaftDriver, type StateMachine } from "../../events/raft/driver.ts";
import { SqliteStorage } from "../../events/raft/sqlite_storage.ts";
import { RaftLog } from "../../events/raft_log.ts";
import { NetworkSpec, SecretSpec, ServiceSpec } from "../../events/schema.ts";
import type { AtRestCipher } from "../../events/at_rest_cipher.ts";
import { Manager } from "../../actors/manager.ts";
import { orchestrator } from "../../actors/projections/orchestrator/decide.ts";
import { allocator } from "../../actors/projections/allocator/decide.ts";
import { applyBatch, ClusterState } from "../../actors/state.ts";
import { restore, snapshot } from "../../actors/snapshot.ts";
import { initKeys } from "../../node/keys.ts";

/** The secret's plaintext, to look for on disk. */
export const SECRET_TEXT = "correct-horse-battery-staple";
/** The secret's name. */
export const SECRET_NAME = "db-password";

/** What {@linkcode buildDataDir} made. */
export interface BuiltDataDir {
  readonly dataDir: string;
  readonly format: "raft" | "log";
  readonly cipher?: AtRestCipher;
  /** With autolock: the unlock key. */
  readonly unlockKey?: string;
  /** The last log index. */
  readonly lastIndex: number;
  /** The log index after `service create web` (1 replica), before the scale to 3. */
  readonly beforeScale: number;
  /** The snapshots' log indexes. */
  readonly snapshots: readonly number[];
}

/** Options of {@linkcode buildDataDir}. */
export interface BuildOptions {
  readonly format: "raft" | "log";
  /** Encrypt at rest: the KEK stored beside the data, or derived from an unlock key. */
  readonly encrypt?: "stored" | "autolock";
  /** Where (default: a new temporary dir). */
  readonly dataDir?: string;
  /** Raft only: compact the log behind its snapshots (keeping 2 entries), as production does. */
  readonly compact?: boolean;
}

const spec = (name: string, replicas: number) =>
  ServiceSpec.parse({
    name,
    task: { runtime: { kind: "process", command: "/bin/sleep", args: ["600"] } },
    mode: { kind: "replicated", replicas },
  });

/** Builds a stopped manager's data dir (see the module documentation). */
export async function buildDataDir(options: BuildOptions): Promise<BuiltDataDir> {
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "shoal-log-dir-" });
  let cipher: AtRestCipher | undefined;
  let unlockKey: string | undefined;
  if (options.encrypt !== undefined) {
    const keys = await initKeys(dataDir, { autolock: options.encrypt === "autolock" });
    cipher = keys.cipher;
    unlockKey = keys.unlockKey;
  }
  let log: EventLog;
  let sqlite: SqliteLog | undefined;
  let driver: RaftDriver | undefined;
  if (options.format === "log") {
    sqlite = new SqliteLog({ path: `${dataDir}/log.db`, synchronous: "off", cipher });
    log = sqlite;
  } else {
    const codec = new EventCodec();
    let state = new ClusterState();
    const fold: StateMachine = {
      apply: (e) => void applyBatch(state, codec.decodeBatch(e.data), e.seq),
      snapshot: () => snapshot(state),
      restore: (data) => void (state = restore(data)),
    };
    const storage = new SqliteStorage({
      path: `${dataDir}/raft.db`,
      synchronous: "off",
      confState: { voters: [1], learners: [] },
      cipher,
    });
    driver = await RaftDriver.start({
      id: 1,
      clusterId: "log-tools-test",
      storage,
      tickMs: 10,
      stateMachine: fold,
      snapshotEntries: 6,
      keepEntries: options.compact ? 2 : 1_000,
    });
    await driver.waitForLeader(10_000);
    log = new RaftLog(driver);
  }
  const manager = new Manager({ log, projections: [orchestrator, allocator] });
  const snapshots: number[] = [];
  try {
    await manager.start();
    await manager.setLeader(true);
    const by = (what: string) => ({ by: `user:${what}` });
    await manager.execute({
      kind: "CreateFileObject",
      object: "secret",
      spec: SecretSpec.parse({ name: SECRET_NAME, data: btoa(SECRET_TEXT) }),
    }, by("secret.create"));
    await manager.execute(
      { kind: "CreateNetwork", spec: NetworkSpec.parse({ name: "backend" }) },
      by("network.create"),
    );
    await manager.execute({ kind: "CreateService", spec: spec("web", 1) }, by("service.create"));
    await settle(manager);
    const beforeScale = manager.state.index;
    if (sqlite) {
      sqlite.saveSnapshot(beforeScale, snapshot(manager.state));
      snapshots.push(beforeScale);
    }
    await manager.execute(
      { kind: "ScaleService", service: "web", replicas: 3 },
      by("service.scale"),
    );
    await manager.execute({ kind: "CreateService", spec: spec("api", 2) }, by("service.create"));
    await settle(manager);
    if (sqlite) {
      sqlite.saveSnapshot(manager.state.index, snapshot(manager.state));
      snapshots.push(manager.state.index);
    }
    await manager.execute(
      { kind: "ScaleService", service: "api", replicas: 1 },
      by("service.scale"),
    );
    await settle(manager);
    const lastIndex = manager.state.index;
    if (driver) {
      const s = driver.status();
      if (s.snapshotIndex === 0) throw new Error("the raft log took no snapshot");
    }
    return {
      dataDir,
      format: options.format,
      cipher,
      unlockKey,
      lastIndex,
      beforeScale,
      snapshots,
    };
  } finally {
    await manager.stop();
    await log.close();
  }
}

/** Waits until the projections have nothing more to do (no entry for 100 ms). */
async function settle(manager: Manager): Promise<void> {
  let last = -1;
  while (manager.state.index !== last) {
    last = manager.state.index;
    await new Promise((r) => setTimeout(r, 100));
  }
}
