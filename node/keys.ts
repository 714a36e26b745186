/**
 * The keys of encryption at rest (SwarmKit's model, `manager/deks.go`): a random data
 * encryption key (DEK) encrypts the log's entries and snapshots ({@linkcode AtRestCipher}); the
 * DEK is stored wrapped (AES-256-GCM, WebCrypto) by a key encryption key (KEK).
 *
 * - **Without autolock** the KEK is stored beside the data, in the same file, as SwarmKit keeps
 *   the DEK in the PEM headers of the node's key: whoever can read the data dir can read the
 *   log. What it buys: the log's rows, copies of `raft.db` and backups made of the db file
 *   alone are not readable.
 * - **With autolock** the KEK is derived (HKDF-SHA256) from an unlock key `SWMKEY-1-...`
 *   (32 random bytes, base64 as Docker prints them), shown once and never stored. A restarted
 *   manager cannot read its log until it is given the key (`shoal swarm unlock`).
 * - **Rotating the unlock key** (or turning autolock on or off) rewraps the same DEK: nothing in
 *   the log is rewritten, and the old key stops working at once.
 *
 * The file is `<data dir>/keys.json` (mode 0600, replaced atomically):
 *
 * ```json
 * { "version": 1, "autolock": true, "dekId": "1a2b3c4d",
 *   "salt": "<base64>", "nonce": "<base64>", "wrappedDek": "<base64>" }
 * ```
 * plus `"kek": "<base64>"` when autolock is off.
 *
 * A wrong unlock key fails the GCM check of the wrapped DEK and gives
 * {@linkcode UnlockError} "the swarm could not be unlocked: invalid key".
 *
 * @module
 */
import { join } from "node:path";
import { AtRestCipher, DEK_BYTES, dekId } from "../events/at_rest_cipher.ts";

/** The prefix of an unlock key, as Docker's. */
export const UNLOCK_KEY_PREFIX = "SWMKEY-1-";
/** The name of the key file in a data dir. */
export const KEY_FILE = "keys.json";

const KEY_FILE_VERSION = 1;
const WRAP_AAD = new TextEncoder().encode("shoal dek v1");
const KEK_INFO = new TextEncoder().encode("shoal kek v1");

/** `keys.json`: the wrapped DEK and, without autolock, the KEK. */
export interface KeyFile {
  readonly version: 1;
  /** Whether the KEK comes from an unlock key (and is not stored). */
  readonly autolock: boolean;
  /** The DEK's id ({@linkcode AtRestCipher.keyId}). */
  readonly dekId: string;
  /** HKDF salt, base64. */
  readonly salt: string;
  /** Nonce of the wrapping, base64. */
  readonly nonce: string;
  /** The DEK encrypted (AES-256-GCM) by the KEK, base64. */
  readonly wrappedDek: string;
  /** The KEK itself, base64: only without autolock. */
  readonly kek?: string;
}

/** A manager's log cannot be read: a wrong, missing or malformed unlock key. */
export class UnlockError extends Error {
  /** `detail` follows "the swarm could not be unlocked: ". */
  constructor(detail: string) {
    super(`the swarm could not be unlocked: ${detail}`);
    this.name = "UnlockError";
  }
}

/** What {@linkcode createKeys} and {@linkcode rewrapKeys} give. */
export interface NewKeys {
  /** The file to store. */
  readonly file: KeyFile;
  /** The unlock key to show the user once (autolock only); never store it. */
  readonly unlockKey?: string;
}

/** A new unlock key: `SWMKEY-1-` and 32 random bytes in base64 without padding. */
export function generateUnlockKey(): string {
  return UNLOCK_KEY_PREFIX +
    toBase64(crypto.getRandomValues(new Uint8Array(32))).replace(/=+$/, "");
}

/** The 32 bytes of an unlock key; {@linkcode UnlockError} when it is not one. */
export function parseUnlockKey(key: string): Uint8Array<ArrayBuffer> {
  const text = key.trim();
  if (!text.startsWith(UNLOCK_KEY_PREFIX)) {
    throw new UnlockError(
      `invalid key: an unlock key starts with ${UNLOCK_KEY_PREFIX} (as "shoal swarm unlock-key" prints it)`,
    );
  }
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = fromBase64(text.slice(UNLOCK_KEY_PREFIX.length));
  } catch {
    bytes = new Uint8Array();
  }
  if (bytes.byteLength !== 32) {
    throw new UnlockError(
      `invalid key: ${UNLOCK_KEY_PREFIX} must be followed by 32 bytes in base64 (43 characters)`,
    );
  }
  return bytes;
}

/** How to wrap a DEK. */
export interface WrapOptions {
  /** Derive the KEK from an unlock key (not stored) rather than store a random KEK. */
  autolock: boolean;
  /**
   * The unlock key to use (autolock only), for a key shared by every manager of a swarm, as
   * SwarmKit's is; by default a new one is generated.
   */
  unlockKey?: string;
}

/** A new DEK, wrapped by a new KEK: stored (no autolock) or from an unlock key. */
export async function createKeys(options: WrapOptions): Promise<
  NewKeys & {
    /** The new DEK, for {@linkcode AtRestCipher}. */
    dek: Uint8Array;
  }
> {
  const dek = crypto.getRandomValues(new Uint8Array(DEK_BYTES));
  const keys = await rewrapKeys(dek, options);
  return { ...keys, dek };
}

/**
 * Wraps `dek` under a new KEK: a stored one, or (autolock) one derived from a new unlock key,
 * which is returned. Rotating the unlock key and turning autolock on or off are this.
 */
export async function rewrapKeys(dek: Uint8Array, options: WrapOptions): Promise<NewKeys> {
  if (!options.autolock && options.unlockKey !== undefined) {
    throw new Error("an unlock key is only used with autolock");
  }
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const unlockKey = options.autolock ? options.unlockKey ?? generateUnlockKey() : undefined;
  const kekBytes = unlockKey === undefined
    ? crypto.getRandomValues(new Uint8Array(32))
    : await deriveKek(parseUnlockKey(unlockKey), salt);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const kek = await crypto.subtle.importKey("raw", kekBytes, "AES-GCM", false, ["encrypt"]);
  const wrapped = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: WRAP_AAD },
      kek,
      new Uint8Array(dek),
    ),
  );
  const file: KeyFile = {
    version: KEY_FILE_VERSION,
    autolock: options.autolock,
    dekId: dekId(dek),
    salt: toBase64(salt),
    nonce: toBase64(nonce),
    wrappedDek: toBase64(wrapped),
    ...(unlockKey === undefined ? { kek: toBase64(kekBytes) } : {}),
  };
  return unlockKey === undefined ? { file } : { file, unlockKey };
}

/**
 * The DEK of `file`: unwrapped with the stored KEK, or (autolock) with the KEK derived from
 * `unlockKey`. {@linkcode UnlockError} when the key is missing, malformed or wrong.
 */
export async function unwrapDek(file: KeyFile, unlockKey?: string): Promise<Uint8Array> {
  let kekBytes: Uint8Array<ArrayBuffer>;
  if (file.autolock) {
    if (unlockKey === undefined || unlockKey.trim() === "") {
      throw new UnlockError(
        'it is autolocked and no unlock key was given ("shoal swarm unlock", or --unlock-key)',
      );
    }
    kekBytes = await deriveKek(parseUnlockKey(unlockKey), fromBase64(file.salt));
  } else {
    if (file.kek === undefined) {
      throw new UnlockError(`${KEY_FILE} has neither autolock nor a stored key: it is damaged`);
    }
    kekBytes = fromBase64(file.kek);
  }
  const kek = await crypto.subtle.importKey("raw", kekBytes, "AES-GCM", false, ["decrypt"]);
  let dek: Uint8Array;
  try {
    dek = new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: fromBase64(file.nonce), additionalData: WRAP_AAD },
        kek,
        fromBase64(file.wrappedDek),
      ),
    );
  } catch {
    throw new UnlockError(
      file.autolock ? "invalid key" : `invalid key: the key stored in ${KEY_FILE} does not fit`,
    );
  }
  if (dekId(dek) !== file.dekId) {
    throw new UnlockError(`invalid key: the data key is not the one ${KEY_FILE} names`);
  }
  return dek;
}

/** Where the key file of `dataDir` is. */
export function keyFilePath(dataDir: string): string {
  return join(dataDir, KEY_FILE);
}

/** Reads `<dataDir>/keys.json`; undefined when there is none (the data dir is not encrypted). */
export async function readKeyFile(dataDir: string): Promise<KeyFile | undefined> {
  const path = keyFilePath(dataDir);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return parseKeyFile(text, path);
}

/** Checks and parses the text of a key file; `path` is for messages. */
export function parseKeyFile(text: string, path = KEY_FILE): KeyFile {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not valid JSON`);
  }
  const strings = ["dekId", "salt", "nonce", "wrappedDek"];
  if (typeof v !== "object" || v === null || v.version !== KEY_FILE_VERSION) {
    throw new Error(`${path}: unknown version ${JSON.stringify(v?.version)} (expected 1)`);
  }
  for (const k of strings) {
    if (typeof v[k] !== "string") throw new Error(`${path}: ${k} is missing or not a string`);
  }
  if (typeof v.autolock !== "boolean") throw new Error(`${path}: autolock must be true or false`);
  if (!v.autolock && typeof v.kek !== "string") {
    throw new Error(`${path}: without autolock the key encryption key (kek) must be stored`);
  }
  if (v.autolock && v.kek !== undefined) {
    throw new Error(`${path}: an autolocked key file must not hold the key encryption key`);
  }
  return v as unknown as KeyFile;
}

/** Writes `<dataDir>/keys.json` (0600) atomically: beside, then renamed over. */
export async function writeKeyFile(dataDir: string, file: KeyFile): Promise<void> {
  const path = keyFilePath(dataDir);
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
  await Deno.chmod(tmp, 0o600);
  await Deno.rename(tmp, path);
}

/**
 * A data dir's keys, unlocked: the cipher for the stores, and what a running manager does with
 * its keys. It holds the DEK, so rotating the unlock key needs no old key (as
 * `docker swarm unlock-key --rotate` on a running manager).
 */
export class DataKeys {
  /** The data dir whose `keys.json` these are. */
  readonly dataDir: string;
  /** Seals and opens the log's records. */
  readonly cipher: AtRestCipher;
  #dek: Uint8Array;
  #autolock: boolean;

  /** Keys of `dataDir` with DEK `dek`; `autolock` as `keys.json` says. */
  constructor(dataDir: string, dek: Uint8Array, autolock: boolean) {
    this.dataDir = dataDir;
    this.#dek = dek.slice();
    this.cipher = new AtRestCipher(this.#dek);
    this.#autolock = autolock;
  }

  /** Whether the KEK comes from an unlock key. */
  get autolock(): boolean {
    return this.#autolock;
  }

  /**
   * Rewraps the DEK under a new KEK and replaces `keys.json`: a new unlock key (returned, to
   * show once), turning autolock on or off (`autolock`), or a given shared `unlockKey`. The old
   * unlock key stops working at once; nothing in the log is rewritten.
   */
  async rotate(options: Partial<WrapOptions> = {}): Promise<{ unlockKey?: string }> {
    const autolock = options.autolock ?? this.#autolock;
    const next = await rewrapKeys(this.#dek, { autolock, unlockKey: options.unlockKey });
    await writeKeyFile(this.dataDir, next.file);
    this.#autolock = autolock;
    return next.unlockKey === undefined ? {} : { unlockKey: next.unlockKey };
  }
}

/**
 * The keys of `dataDir`, or undefined when it holds no key file (its log is not encrypted).
 * {@linkcode UnlockError} when it is autolocked and `unlockKey` is missing or wrong.
 */
export async function openKeys(dataDir: string, unlockKey?: string): Promise<DataKeys | undefined> {
  const file = await readKeyFile(dataDir);
  if (file === undefined) return undefined;
  return new DataKeys(dataDir, await unwrapDek(file, unlockKey), file.autolock);
}

/** The cipher of `dataDir` ({@linkcode openKeys}), or undefined when it is not encrypted. */
export async function openCipher(
  dataDir: string,
  unlockKey?: string,
): Promise<AtRestCipher | undefined> {
  return (await openKeys(dataDir, unlockKey))?.cipher;
}

/**
 * Sets up encryption for a new data dir: creates the keys and writes `keys.json`. Returns the
 * keys (and their cipher, for the stores) and, with autolock, the unlock key to show once.
 * Refuses a data dir that already has keys (use {@linkcode openKeys}).
 */
export async function initKeys(
  dataDir: string,
  options: WrapOptions,
): Promise<{ keys: DataKeys; cipher: AtRestCipher; unlockKey?: string }> {
  if (await readKeyFile(dataDir) !== undefined) {
    throw new Error(`${keyFilePath(dataDir)} already exists: this data dir has its keys`);
  }
  const created = await createKeys(options);
  await writeKeyFile(dataDir, created.file);
  const keys = new DataKeys(dataDir, created.dek, options.autolock);
  return created.unlockKey === undefined
    ? { keys, cipher: keys.cipher }
    : { keys, cipher: keys.cipher, unlockKey: created.unlockKey };
}

/**
 * Rotates the unlock key of a stopped manager's `dataDir` (or turns autolock on or off): unwraps
 * the DEK with the current key (`unlockKey`, when autolocked), rewraps it and replaces
 * `keys.json`. Returns the new unlock key when autolock is (now) on.
 */
export async function rotateUnlockKey(
  dataDir: string,
  options: { unlockKey?: string; autolock?: boolean } = {},
): Promise<{ unlockKey?: string }> {
  const keys = await openKeys(dataDir, options.unlockKey);
  if (keys === undefined) {
    throw new Error(`${dataDir} holds no ${KEY_FILE}: its log is not encrypted`);
  }
  return await keys.rotate({ autolock: options.autolock ?? keys.autolock });
}

async function deriveKek(
  unlock: Uint8Array<ArrayBuffer>,
  salt: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const ikm = await crypto.subtle.importKey("raw", unlock, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt, info: KEK_INFO },
      ikm,
      256,
    ),
  );
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const padded = text + "=".repeat((4 - (text.length % 4)) % 4);
  const raw = atob(padded);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}
