/**
 * Object ids as SwarmKit makes them: 25 base-36 characters from 128 random bits. This is an
 * impure source: proposers call it and stamp the id into events; the fold never does.
 *
 * @module
 */

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

/** A new random object id: 25 lowercase base-36 characters. */
export function newId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  for (let i = 0; i < 25; i++) {
    out = ALPHABET[Number(n % 36n)] + out;
    n /= 36n;
  }
  return out;
}
