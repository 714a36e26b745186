/**
 * A node's key file on disk: plain PEM, or sealed by the data key while autolock is on
 * (real files in a temp dir, the real at-rest cipher).
 */
import assert from "node:assert/strict";
import { AtRestCipher, DEK_BYTES } from "../events/at_rest_cipher.ts";
import {
  credentialPaths,
  isSealedKey,
  readCredentials,
  resealCredentials,
  SealedKeyError,
  writeCredentials,
} from "./identity.ts";

const CREDS = {
  key:
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
  cert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
  ca: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
};

function keys(autolock: boolean) {
  return {
    cipher: new AtRestCipher(crypto.getRandomValues(new Uint8Array(DEK_BYTES))),
    autolock,
  };
}

Deno.test("with autolock the key file is sealed, and opens only with the data key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-identity-" });
  try {
    const k = keys(true);
    await writeCredentials(dir, CREDS, k);
    const text = await Deno.readTextFile(credentialPaths(dir).key);
    assert.match(text, /^-----BEGIN SHOAL SEALED PRIVATE KEY-----\n/);
    assert.ok(!text.includes("MIGHAgEAMBMG"), "no byte of the key in clear");
    assert.equal((await Deno.stat(credentialPaths(dir).key)).mode! & 0o777, 0o600);
    assert.equal(isSealedKey(await Deno.readTextFile(credentialPaths(dir).key)), true);
    assert.deepEqual(await readCredentials(dir, k), CREDS);
    await assert.rejects(readCredentials(dir), SealedKeyError, "sealed by autolock");
    await assert.rejects(readCredentials(dir, keys(true)), SealedKeyError, "does not open");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resealing follows autolock: plain when off, sealed when on, the same key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-identity-" });
  try {
    const k = keys(false);
    await writeCredentials(dir, CREDS, k);
    assert.equal(isSealedKey(await Deno.readTextFile(credentialPaths(dir).key)), false);
    assert.equal(await Deno.readTextFile(credentialPaths(dir).key), CREDS.key);
    assert.equal(await resealCredentials(dir, k), false, "already as it should be");
    const on = { ...k, autolock: true };
    assert.equal(await resealCredentials(dir, on), true);
    assert.equal(isSealedKey(await Deno.readTextFile(credentialPaths(dir).key)), true);
    assert.deepEqual(await readCredentials(dir, on), CREDS);
    assert.equal(await resealCredentials(dir, k), true);
    assert.equal(await Deno.readTextFile(credentialPaths(dir).key), CREDS.key);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
