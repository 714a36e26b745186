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
 * While autolock is on, a manager's private key is stored **sealed** by the data key of its log
 * (`node/keys.ts`), which only the unlock key unwraps, as Docker's autolock protects the TLS key
 * too: the file is then a `SHOAL SEALED PRIVATE KEY` block (AES-256-GCM, base64) instead of a
 * PEM private key, and a locked manager cannot read it until it is unlocked.
 *
 * @module
 */
import { join } from "node:path";
import { DecryptError, type RecordCipher } from "../events/at_rest_cipher.ts";

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

/**
 * How a manager's key file is sealed: its data keys (`DataKeys` of `node/keys.ts`). The key is
 * written sealed while `autolock` is on, plain otherwise; a sealed one is opened with `cipher`.
 */
export interface KeySealing {
  readonly cipher: RecordCipher;
  readonly autolock: boolean;
}

/** The node's key file is sealed and cannot be opened (no data keys, or other ones). */
export class SealedKeyError extends Error {
  /** Says which file and why. */
  constructor(message: string) {
    super(message);
    this.name = "SealedKeyError";
  }
}

const SEALED_BEGIN = "-----BEGIN SHOAL SEALED PRIVATE KEY-----";
const SEALED_END = "-----END SHOAL SEALED PRIVATE KEY-----";
const SEALED_AAD = new TextEncoder().encode("shoal node tls key v1");

/** Whether a key file's text is a sealed key. */
export function isSealedKey(text: string): boolean {
  return text.trimStart().startsWith(SEALED_BEGIN);
}

function sealKey(pem: string, cipher: RecordCipher): string {
  const sealed = cipher.seal(new TextEncoder().encode(pem), SEALED_AAD);
  let bin = "";
  for (const b of sealed) bin += String.fromCharCode(b);
  const b64 = btoa(bin).replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `${SEALED_BEGIN}\n${b64}\n${SEALED_END}\n`;
}

function openKey(text: string, path: string, sealing: KeySealing | undefined): string {
  if (!isSealedKey(text)) return text;
  if (sealing === undefined) {
    throw new SealedKeyError(
      `${path} is sealed by autolock: unlock the swarm ("shoal swarm unlock") to use it`,
    );
  }
  const b64 = text.replace(SEALED_BEGIN, "").replace(SEALED_END, "").replace(/\s+/g, "");
  let sealed: Uint8Array;
  try {
    sealed = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  } catch {
    throw new SealedKeyError(`${path} is damaged: its sealed key is not base64`);
  }
  try {
    return new TextDecoder().decode(sealing.cipher.open(sealed, SEALED_AAD));
  } catch (err) {
    if (err instanceof DecryptError) {
      throw new SealedKeyError(
        `${path} does not open with this manager's data key: ${err.message}`,
      );
    }
    throw err;
  }
}

/**
 * Reads the node's key, certificate and root CA; undefined when any is missing. A sealed key is
 * opened with `sealing`; without it, {@linkcode SealedKeyError}.
 */
export async function readCredentials(
  dataDir: string,
  sealing?: KeySealing,
): Promise<Credentials | undefined> {
  const paths = credentialPaths(dataDir);
  let texts: string[];
  try {
    texts = await Promise.all([
      Deno.readTextFile(paths.key),
      Deno.readTextFile(paths.cert),
      Deno.readTextFile(paths.ca),
    ]);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  const [key, cert, ca] = texts;
  return { key: openKey(key, paths.key, sealing), cert, ca };
}

/** Writes to the certificates of one data dir in turn (a reseal must not undo a renewal). */
const writers = new Map<string, Promise<unknown>>();

function inTurn<T>(dataDir: string, job: () => Promise<T>): Promise<T> {
  const prev = writers.get(dataDir) ?? Promise.resolve();
  const next = prev.catch(() => {}).then(job);
  writers.set(dataDir, next);
  next.finally(() => {
    if (writers.get(dataDir) === next) writers.delete(dataDir);
  }).catch(() => {});
  return next;
}

/**
 * Writes the key (mode 0600; sealed while `sealing.autolock` is on), certificate and root CA,
 * each atomically, in a 0700 directory. The key goes first: a crash between the files leaves a
 * new key with the old certificate, which the next start detects (the TLS handshake fails)
 * rather than an old key with a new certificate.
 */
export function writeCredentials(
  dataDir: string,
  creds: Credentials,
  sealing?: KeySealing,
): Promise<void> {
  return inTurn(dataDir, async () => {
    const dir = certDir(dataDir);
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.chmod(dir, 0o700);
    const paths = credentialPaths(dataDir);
    const key = sealing?.autolock ? sealKey(creds.key, sealing.cipher) : creds.key;
    await writeAtomic(paths.key, key, 0o600);
    await writeAtomic(paths.cert, creds.cert, 0o644);
    await writeAtomic(paths.ca, creds.ca, 0o644);
  });
}

/**
 * Stores the key sealed or plain as `sealing.autolock` now says (autolock was turned on or off),
 * reading what is stored and writing it back in one turn. Returns whether it rewrote the key.
 */
export function resealCredentials(dataDir: string, sealing: KeySealing): Promise<boolean> {
  return inTurn(dataDir, async () => {
    const paths = credentialPaths(dataDir);
    let text: string;
    try {
      text = await Deno.readTextFile(paths.key);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
    if (isSealedKey(text) === sealing.autolock) return false;
    const pem = openKey(text, paths.key, sealing);
    await writeAtomic(
      paths.key,
      sealing.autolock ? sealKey(pem, sealing.cipher) : pem,
      0o600,
    );
    return true;
  });
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
