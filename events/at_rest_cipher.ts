/**
 * Encryption at rest for the log: {@linkcode AtRestCipher} seals and opens stored records with
 * AES-256-GCM under a data encryption key (DEK). Key handling (generating the DEK, wrapping it
 * with a key encryption key, unlock keys) is `node/keys.ts`; the stores (`events/sqlite_log.ts`,
 * `events/raft/sqlite_storage.ts`) take any {@linkcode RecordCipher}.
 *
 * - **Synchronous.** The stores read and write inside synchronous calls (the Raft core reads
 *   entries through `Storage.entries()`, a Ready is saved in one transaction), and WebCrypto is
 *   asynchronous only, so records go through `node:crypto`'s AES-256-GCM, which is the same
 *   algorithm and format: what one seals the other opens (tested). WebCrypto does the key
 *   wrapping, which happens once at start-up (`node/keys.ts`).
 * - **Layout** of a sealed record: `[1][key id: 4][nonce: 12][ciphertext][tag: 16]`, 33 bytes
 *   more than the plaintext. The nonce is random (96 bits): under one key the stores write far
 *   fewer than the 2^32 records after which random nonces may repeat.
 * - **Key id**: the first 4 bytes of SHA-256 over a label and the DEK. A record sealed under
 *   another key then fails with "another data key" rather than a bare authentication failure,
 *   and a future key rotation can tell current records from old ones.
 * - **Associated data**: each store binds a record to its place (an entry's index and term, the
 *   snapshot's index), so a row copied to another place does not open.
 *
 * The CRC32C the stores keep is over what is stored (the sealed bytes): a flipped bit is still
 * reported as a checksum mismatch at its index before decryption is tried.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, createHash } from "node:crypto";

/** What a store needs to encrypt its records: seal on write, open on read. */
export interface RecordCipher {
  /** The sealed form of `plaintext`, bound to `aad`. */
  seal(plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** The plaintext of `sealed`; throws {@linkcode DecryptError} when it does not open. */
  open(sealed: Uint8Array, aad: Uint8Array): Uint8Array;
}

/** The version byte of a sealed record. */
export const SEALED_VERSION = 1;
/** Bytes a sealed record adds to its plaintext. */
export const SEALED_OVERHEAD = 1 + 4 + 12 + 16;
/** Length of a DEK, bytes (AES-256). */
export const DEK_BYTES = 32;

const NONCE = 12;
const TAG = 16;
const HEADER = 1 + 4 + NONCE;

/** A record that does not decrypt: another key, altered bytes, or not encrypted at all. */
export class DecryptError extends Error {
  /** `detail` says which of these it is, as far as can be told. */
  constructor(detail: string) {
    super(`cannot decrypt: ${detail}`);
    this.name = "DecryptError";
  }
}

/** The key id of a DEK, as 8 hex digits. */
export function dekId(dek: Uint8Array): string {
  const h = createHash("sha256");
  h.update(new TextEncoder().encode("shoal data key id\n"));
  h.update(dek);
  return (h.digest() as Uint8Array).subarray(0, 4).reduce(
    (s, b) => s + b.toString(16).padStart(2, "0"),
    "",
  );
}

/** AES-256-GCM over stored records with one DEK: see the module documentation. */
export class AtRestCipher implements RecordCipher {
  /** The DEK's id (8 hex digits), written in every record. */
  readonly keyId: string;
  #key: Uint8Array;
  #idBytes: Uint8Array;

  /** A cipher for `dek` (32 bytes). The bytes are copied. */
  constructor(dek: Uint8Array) {
    if (dek.byteLength !== DEK_BYTES) {
      throw new RangeError(`A data encryption key is ${DEK_BYTES} bytes; got ${dek.byteLength}`);
    }
    this.#key = dek.slice();
    this.keyId = dekId(this.#key);
    this.#idBytes = hexBytes(this.keyId);
  }

  /** Seals `plaintext` (any length, empty included) bound to `aad`. */
  seal(plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    const out = new Uint8Array(HEADER + plaintext.byteLength + TAG);
    out[0] = SEALED_VERSION;
    out.set(this.#idBytes, 1);
    const nonce = out.subarray(5, HEADER);
    crypto.getRandomValues(nonce);
    const c = createCipheriv("aes-256-gcm", this.#key, nonce);
    c.setAAD(aad);
    const body = c.update(plaintext) as Uint8Array;
    const tail = c.final() as Uint8Array;
    out.set(body, HEADER);
    out.set(tail, HEADER + body.byteLength);
    out.set(c.getAuthTag() as Uint8Array, HEADER + plaintext.byteLength);
    return out;
  }

  /** Opens a record made by {@linkcode seal} with the same `aad`. */
  open(sealed: Uint8Array, aad: Uint8Array): Uint8Array {
    if (sealed.byteLength < SEALED_OVERHEAD || sealed[0] !== SEALED_VERSION) {
      throw new DecryptError(
        "the record is not encrypted (or not in a format this version knows); " +
          "was the data dir written without encryption?",
      );
    }
    const id = sealed.subarray(1, 5);
    if (!id.every((b, i) => b === this.#idBytes[i])) {
      throw new DecryptError(
        `it was encrypted with another data key (key id ${hex(id)}, this key is ${this.keyId})`,
      );
    }
    const nonce = sealed.subarray(5, HEADER);
    const end = sealed.byteLength - TAG;
    const d = createDecipheriv("aes-256-gcm", this.#key, nonce);
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(end));
    try {
      const body = d.update(sealed.subarray(HEADER, end)) as Uint8Array;
      const tail = d.final() as Uint8Array;
      if (tail.byteLength === 0) return new Uint8Array(body.buffer, body.byteOffset, body.length);
      const out = new Uint8Array(body.byteLength + tail.byteLength);
      out.set(body);
      out.set(tail, body.byteLength);
      return out;
    } catch {
      throw new DecryptError(
        "authentication failed: the record was altered or moved from another place",
      );
    }
  }
}

/** Associated data naming a place: a label and numbers (each as float64, big-endian). */
export function placeAad(label: string, ...numbers: number[]): Uint8Array {
  const text = new TextEncoder().encode(label);
  const out = new Uint8Array(text.byteLength + 8 * numbers.length);
  out.set(text);
  const view = new DataView(out.buffer);
  numbers.forEach((n, i) => view.setFloat64(text.byteLength + 8 * i, n));
  return out;
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function hexBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}
