import assert from "node:assert/strict";
import { AtRestCipher, DecryptError, placeAad, SEALED_OVERHEAD } from "./at_rest_cipher.ts";

const dek = new Uint8Array(32).map((_, i) => i);
const utf8 = new TextEncoder();

Deno.test("AtRestCipher: seal then open gives the plaintext back, and hides it", () => {
  const c = new AtRestCipher(dek);
  const plain = utf8.encode("ServiceCreated web nginx:latest");
  const aad = placeAad("entry", 7, 2);
  const sealed = c.seal(plain, aad);
  assert.equal(sealed.byteLength, plain.byteLength + SEALED_OVERHEAD);
  assert.ok(!new TextDecoder("latin1").decode(sealed).includes("web nginx"));
  assert.deepEqual(c.open(sealed, aad), plain);
  // Random nonces: the same plaintext seals differently each time.
  assert.notDeepEqual(c.seal(plain, aad), sealed);
  assert.deepEqual(c.open(new Uint8Array(c.seal(new Uint8Array(), aad)), aad), new Uint8Array());
});

Deno.test("AtRestCipher: records are standard AES-256-GCM that WebCrypto opens", async () => {
  const c = new AtRestCipher(dek);
  const plain = utf8.encode("secret data");
  const aad = placeAad("snapshot", 10);
  const sealed = c.seal(plain, aad);
  const key = await crypto.subtle.importKey("raw", dek, "AES-GCM", false, ["decrypt"]);
  const opened = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: sealed.slice(5, 17), additionalData: new Uint8Array(aad) },
    key,
    sealed.slice(17),
  );
  assert.deepEqual(new Uint8Array(opened), plain);
});

Deno.test("AtRestCipher: another place, another key, altered bytes or plaintext do not open", () => {
  const c = new AtRestCipher(dek);
  const sealed = c.seal(utf8.encode("hello"), placeAad("entry", 1, 1));
  assert.throws(() => c.open(sealed, placeAad("entry", 2, 1)), /authentication failed/);
  const flipped = sealed.slice();
  flipped[20] ^= 1;
  assert.throws(() => c.open(flipped, placeAad("entry", 1, 1)), DecryptError);
  const other = new AtRestCipher(new Uint8Array(32).fill(9));
  assert.throws(
    () => other.open(sealed, placeAad("entry", 1, 1)),
    new RegExp(`another data key \\(key id ${c.keyId}, this key is ${other.keyId}\\)`),
  );
  assert.throws(
    () => c.open(utf8.encode("plain msgpack bytes here......!!"), new Uint8Array()),
    /not encrypted/,
  );
  assert.throws(() => new AtRestCipher(new Uint8Array(16)), /32 bytes; got 16/);
});
