/**
 * What a node keeps about itself in its data dir, besides a manager's log:
 *
 * ```
 * <data dir>/node.json                         who it is: node id, role, swarm, addresses
 * <data dir>/certificates/swarm-node.key       its private key (0600; the directory is 0700)
 * <data dir>/certificates/swarm-node.crt       its node certificate
 * <data dir>/certificates/swarm-root-ca.crt    the swarm's root CA certificate
 * <data dir>/tasks/                            the agent's task directories
 * <data dir>/control.sock                      the local control socket (0600) while it runs
 * ```
 * (The certificate names are Docker's, under `/var/lib/docker/swarm/certificates/`.) Files are
 * replaced atomically: written beside, then renamed over.
 *
 * @module
 */
import { join } from "node:path";

/** `node.json`. */
export interface NodeConfig {
  nodeId: string;
  /** Absent in data dirs written before roles were recorded: a manager. */
  role?: "manager" | "worker";
  clusterId?: string;
  /** A worker's managers: their cluster addresses (`host:port`). */
  managers?: string[];
  /** A manager's cluster listen address (`host:port`), if it serves one. */
  listenAddr?: string;
  /** The address other nodes reach this manager's cluster port at. */
  advertiseAddr?: string;
  /** A manager's API address. */
  apiAddr?: string;
  /** A manager's raft id (absent: a manager whose log predates Raft, or a worker). */
  raftId?: number;
  /** A manager's raft listen address (`host:port`). */
  raftListenAddr?: string;
  /** Raft members' addresses last known here (`[raftId, "host:port"]`), to find the group again. */
  raftPeers?: [number, string][];
}

/** A node's TLS material, PEM. */
export interface Credentials {
  key: string;
  cert: string;
  ca: string;
}

const ID = /^[0-9a-z]{25}$/;

/** Where `node.json` is. */
export function nodeConfigPath(dataDir: string): string {
  return join(dataDir, "node.json");
}

/** Reads `node.json`; undefined when there is none. Throws when it is not valid. */
export async function readNodeConfig(dataDir: string): Promise<NodeConfig | undefined> {
  const path = nodeConfigPath(dataDir);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  let parsed: NodeConfig;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed?.nodeId !== "string" || !ID.test(parsed.nodeId)) {
    throw new Error(`${path} holds no valid node id`);
  }
  if (parsed.role !== undefined && parsed.role !== "manager" && parsed.role !== "worker") {
    throw new Error(`${path}: role must be "manager" or "worker", got ${parsed.role}`);
  }
  return parsed;
}

/** Writes `node.json` (atomically). */
export async function writeNodeConfig(dataDir: string, config: NodeConfig): Promise<void> {
  await writeAtomic(nodeConfigPath(dataDir), JSON.stringify(config, null, 2) + "\n", 0o644);
}

function certDir(dataDir: string): string {
  return join(dataDir, "certificates");
}

/** Paths of the key, certificate and root CA. */
export function credentialPaths(dataDir: string): { key: string; cert: string; ca: string } {
  const dir = certDir(dataDir);
  return {
    key: join(dir, "swarm-node.key"),
    cert: join(dir, "swarm-node.crt"),
    ca: join(dir, "swarm-root-ca.crt"),
  };
}

/** Reads the node's key, certificate and root CA; undefined when any is missing. */
export async function readCredentials(dataDir: string): Promise<Credentials | undefined> {
  const paths = credentialPaths(dataDir);
  try {
    const [key, cert, ca] = await Promise.all([
      Deno.readTextFile(paths.key),
      Deno.readTextFile(paths.cert),
      Deno.readTextFile(paths.ca),
    ]);
    return { key, cert, ca };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Writes the key (mode 0600), certificate and root CA, each atomically, in a 0700 directory. The
 * key goes first: a crash between the files leaves a new key with the old certificate, which the
 * next start detects (the TLS handshake fails) rather than an old key with a new certificate.
 */
export async function writeCredentials(dataDir: string, creds: Credentials): Promise<void> {
  const dir = certDir(dataDir);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  const paths = credentialPaths(dataDir);
  await writeAtomic(paths.key, creds.key, 0o600);
  await writeAtomic(paths.cert, creds.cert, 0o644);
  await writeAtomic(paths.ca, creds.ca, 0o644);
}

/**
 * Removes what makes the data dir a swarm member (`swarm leave`): node.json, the certificates,
 * the task directories and a manager's log. The data dir itself stays.
 */
export async function removeSwarmState(dataDir: string): Promise<void> {
  const names = [
    "node.json",
    "certificates",
    "tasks",
    "log.db",
    "log.db-wal",
    "log.db-shm",
    "raft.db",
    "raft.db-wal",
    "raft.db-shm",
    "keys.json",
  ];
  for (const name of names) {
    await Deno.remove(join(dataDir, name), { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, text, { mode });
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}
