import assert from "node:assert/strict";
import * as tls from "node:tls";
import type { AddressInfo } from "node:net";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  CA_ROLE,
  certificateDigest,
  CertificateError,
  createNodeCSR,
  createRootCA,
  CSRError,
  DEFAULT_NODE_CERT_EXPIRY_MS,
  issueNodeCertificate,
  JoinTokenError,
  joinTokenMatches,
  MANAGER_OU,
  newJoinToken,
  type NodeRole,
  parseJoinToken,
  renewalTime,
  ROOT_CA_EXPIRY_MS,
  type RootCA,
  tokenMatchesCA,
  verifyNodeCertificate,
  WORKER_OU,
} from "./ca.ts";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
/** A fixed clock, on a whole second, so certificate times round-trip exactly. */
const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const CLUSTER = "7w1n0c3kxb5q1ylh4lpm1z2f8";
const TOKEN_RE = /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/;

function pemToDer(pem: string): Uint8Array<ArrayBuffer> {
  const body = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

function derToPem(der: Uint8Array, label: string): string {
  const b64 = btoa(String.fromCharCode(...der));
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(sum, (b) => b.toString(16).padStart(2, "0")).join("");
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

async function issue(
  root: RootCA,
  nodeId: string,
  role: NodeRole,
  extra: { now?: number; expiryMs?: number; clusterId?: string } = {},
) {
  const csr = await createNodeCSR({ nodeId });
  const cert = await issueNodeCertificate({
    rootCA: root,
    csrPem: csr.csrPem,
    nodeId,
    role,
    clusterId: extra.clusterId ?? CLUSTER,
    now: extra.now ?? NOW,
    expiryMs: extra.expiryMs,
  });
  return { ...cert, keyPem: csr.keyPem };
}

Deno.test("createRootCA: self-signed P-256 swarm-ca, 20 years, backdated 1 h", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const cert = new x509.X509Certificate(root.certPem);
  assert.deepEqual(cert.subjectName.getField("CN"), [CA_ROLE]);
  assert.deepEqual(cert.subjectName.getField("O"), [CLUSTER]);
  assert.equal(cert.issuer, cert.subject);
  assert.equal(await cert.isSelfSigned(), true);
  assert.equal(cert.notBefore.getTime(), NOW - HOUR);
  assert.equal(cert.notAfter.getTime(), NOW + ROOT_CA_EXPIRY_MS);
  assert.equal(ROOT_CA_EXPIRY_MS, 630_720_000_000);
  const algorithm = cert.publicKey.algorithm as EcKeyAlgorithm;
  assert.equal(algorithm.name, "ECDSA");
  assert.equal(algorithm.namedCurve, "P-256");
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  assert.equal(bc?.ca, true);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  assert.equal(ku!.usages & x509.KeyUsageFlags.keyCertSign, x509.KeyUsageFlags.keyCertSign);

  // The key is PKCS#8 PEM and is the certificate's key.
  assert.match(root.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const key = await crypto.subtle.importKey(
    "pkcs8",
    pemToDer(root.keyPem),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign"],
  );
  const data = new TextEncoder().encode("shoal");
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, data);
  const pub = await cert.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
  assert.equal(
    await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, data),
    true,
  );
});

Deno.test("root CA digest is the sha256 of the DER certificate, stable across PEM wrapping", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const der = pemToDer(root.certPem);
  assert.match(root.digest, /^[0-9a-f]{64}$/);
  assert.equal(root.digest, await sha256Hex(der));
  assert.equal(await certificateDigest(root.certPem), root.digest);
  // Same certificate, different PEM bytes (CRLF, no trailing newline): same digest.
  const rewrapped = root.certPem.replaceAll("\n", "\r\n").trimEnd();
  assert.notEqual(rewrapped, root.certPem);
  assert.equal(await certificateDigest(rewrapped), root.digest);
  // A different root has a different digest.
  const other = await createRootCA({ clusterId: CLUSTER, now: NOW });
  assert.notEqual(other.digest, root.digest);
});

Deno.test("newJoinToken: Docker's SWMTKN-1 format, digest and secret in base 36", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const token = newJoinToken(root);
  assert.match(token, TOKEN_RE);
  assert.notEqual(newJoinToken(root), token);
  const digestPart = token.split("-")[2];
  assert.equal(BigInt(`0x${root.digest}`).toString(36).padStart(50, "0"), digestPart);

  // The secret is the 128 injected bits, zero-padded to 25 characters.
  const zeros = newJoinToken(root, (n) => new Uint8Array(n));
  assert.equal(zeros.split("-")[3], "0".repeat(25));
  const ones = newJoinToken(root, (n) => new Uint8Array(n).fill(0xff));
  assert.equal(ones.split("-")[3], ((1n << 128n) - 1n).toString(36));
  assert.equal(ones.split("-")[3].length, 25);
  const one = newJoinToken(root, (n) => Uint8Array.from({ length: n }, (_, i) => i === 15 ? 1 : 0));
  assert.equal(one.split("-")[3], "0".repeat(24) + "1");

  // A digest with leading zero bits is zero-padded to 50 characters.
  const small = newJoinToken({ digest: "00".repeat(31) + "23" });
  assert.match(small, TOKEN_RE);
  assert.equal(small.split("-")[2], "0".repeat(49) + "z");

  assert.throws(() => newJoinToken({ digest: "abc" }), TypeError);
  assert.throws(() => newJoinToken(root, () => new Uint8Array(8)), RangeError);
});

Deno.test("parseJoinToken round-trips a token", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const token = newJoinToken(root);
  const parsed = parseJoinToken(token);
  assert.deepEqual(parsed, { version: 1, caDigest: root.digest, secret: token.split("-")[3] });
});

Deno.test("parseJoinToken names what is wrong", () => {
  const digest = "1".repeat(50);
  const secret = "a".repeat(25);
  const cases: Array<[string, RegExp]> = [
    ["", /must start with "SWMTKN-"/],
    ["SWMKEY-1-abc", /must start with "SWMTKN-"/],
    [`swmtkn-1-${digest}-${secret}`, /must start with "SWMTKN-"/],
    ["SWMTKN", /want 4 parts/],
    [`SWMTKN-1-${digest}`, /want 4 parts/],
    [`SWMTKN-1-${digest}-${secret}-x`, /want 4 parts/],
    [`SWMTKN-2-${digest}-${secret}`, /unsupported version "2"/],
    [`SWMTKN--${digest}-${secret}`, /unsupported version/],
    [`SWMTKN-1-${digest.slice(1)}-${secret}`, /CA digest part must be 50 base-36/],
    [`SWMTKN-1-${digest.toUpperCase().replace(/1/g, "A")}-${secret}`, /CA digest part/],
    [`SWMTKN-1-${"z".repeat(50)}-${secret}`, /exceeds 256 bits/],
    [`SWMTKN-1-${digest}-${secret}a`, /secret part must be 25 base-36/],
    [`SWMTKN-1-${digest}-${"a".repeat(24)}_`, /secret part must be 25 base-36/],
    [`SWMTKN-1-${digest}-${"z".repeat(25)}`, /secret part exceeds 128 bits/],
    [` SWMTKN-1-${digest}-${secret}`, /must start with/],
  ];
  for (const [token, message] of cases) {
    assert.throws(() => parseJoinToken(token), (error: unknown) => {
      assert.ok(error instanceof JoinTokenError, `${token}: ${error}`);
      assert.match(error.message, /^invalid join token: /);
      assert.match(error.message, message, token);
      return true;
    });
  }
  // The largest 256-bit digest is accepted.
  const max = ((1n << 256n) - 1n).toString(36);
  assert.equal(max.length, 50);
  assert.equal(parseJoinToken(`SWMTKN-1-${max}-${secret}`).caDigest, "f".repeat(64));
});

Deno.test("tokenMatchesCA detects a token for another CA", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const other = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const token = newJoinToken(root);
  assert.equal(await tokenMatchesCA(token, root), true);
  assert.equal(
    await tokenMatchesCA(token, { certPem: root.certPem.replaceAll("\n", "\r\n") }),
    true,
  );
  assert.equal(await tokenMatchesCA(token, other), false);
  assert.equal(await tokenMatchesCA(newJoinToken(other), root), false);
  await assert.rejects(tokenMatchesCA("SWMTKN-1-nope", root), JoinTokenError);
});

Deno.test("joinTokenMatches compares the CA digest and the secret", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const other = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const fixed = (n: number) => new Uint8Array(n).fill(7);
  const expected = newJoinToken(root, fixed);
  assert.equal(joinTokenMatches(expected, expected), true);
  assert.equal(joinTokenMatches(newJoinToken(root, fixed), expected), true);
  assert.equal(joinTokenMatches(newJoinToken(root), expected), false, "rotated secret");
  assert.equal(joinTokenMatches(newJoinToken(other, fixed), expected), false, "other CA");
  const lastCharFlipped = expected.slice(0, -1) + (expected.endsWith("0") ? "1" : "0");
  assert.equal(joinTokenMatches(lastCharFlipped, expected), false);
  assert.equal(joinTokenMatches("garbage", expected), false);
  assert.equal(joinTokenMatches("", expected), false);
  assert.throws(() => joinTokenMatches(expected, "garbage"), JoinTokenError);
});

Deno.test("issueNodeCertificate: CN/OU/O, SANs, usages and validity as SwarmKit", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  for (const role of ["worker", "manager"] as const) {
    const nodeId = `${role}0000000000000000000001`.slice(0, 25);
    const issued = await issue(root, nodeId, role);
    const cert = new x509.X509Certificate(issued.certPem);
    const ou = role === "manager" ? MANAGER_OU : WORKER_OU;
    assert.deepEqual(cert.subjectName.getField("CN"), [nodeId]);
    assert.deepEqual(cert.subjectName.getField("OU"), [ou]);
    assert.deepEqual(cert.subjectName.getField("O"), [CLUSTER]);
    assert.equal(cert.issuer, new x509.X509Certificate(root.certPem).subject);
    assert.equal(cert.notBefore.getTime(), NOW - HOUR);
    assert.equal(cert.notAfter.getTime(), NOW + 90 * DAY);
    assert.equal(DEFAULT_NODE_CERT_EXPIRY_MS, 90 * DAY);
    assert.equal(issued.notBefore, NOW - HOUR);
    assert.equal(issued.notAfter, NOW + 90 * DAY);

    const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!;
    const dns = san.names.items.map((n) => `${n.type}:${n.value}`);
    assert.deepEqual(
      dns,
      role === "manager"
        ? [`dns:${MANAGER_OU}`, `dns:${nodeId}`, `dns:${CA_ROLE}`]
        : [`dns:${WORKER_OU}`, `dns:${nodeId}`],
    );
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    assert.equal(
      ku.usages,
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    );
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)!;
    assert.deepEqual([...eku.usages], [
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    assert.equal(cert.getExtension(x509.BasicConstraintsExtension)?.ca, false);

    // The certificate carries the CSR's key, and verifies against the root.
    const csrKey = await crypto.subtle.importKey(
      "pkcs8",
      pemToDer(issued.keyPem),
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign"],
    );
    const jwk = await crypto.subtle.exportKey("jwk", csrKey);
    const certJwk = await crypto.subtle.exportKey(
      "jwk",
      await cert.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]),
    );
    assert.deepEqual([certJwk.x, certJwk.y], [jwk.x, jwk.y]);
    assert.deepEqual(
      await verifyNodeCertificate({ rootCA: root, certPem: issued.certPem, now: NOW }),
      { nodeId, role, clusterId: CLUSTER, notBefore: NOW - HOUR, notAfter: NOW + 90 * DAY },
    );
  }
});

Deno.test("issueNodeCertificate: custom expiry, 1 h minimum, bad input", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const short = await issue(root, "n1", "worker", { expiryMs: HOUR });
  assert.equal(short.notAfter, NOW + HOUR);
  await assert.rejects(
    issue(root, "n1", "worker", { expiryMs: HOUR - 1 }),
    (error: unknown) => error instanceof RangeError && /at least 1 h/.test(error.message),
  );
  await assert.rejects(issue(root, "n1", "worker", { expiryMs: 0 }), RangeError);
  await assert.rejects(issue(root, "n1", "worker", { expiryMs: Number.NaN }), RangeError);
  // Never outlives the root.
  const shortRoot = await createRootCA({ clusterId: CLUSTER, now: NOW, expiryMs: 2 * DAY });
  const capped = await issue(shortRoot, "n1", "worker");
  assert.equal(capped.notAfter, NOW + 2 * DAY);

  const csr = await createNodeCSR();
  const base = { rootCA: root, csrPem: csr.csrPem, nodeId: "n1", clusterId: CLUSTER, now: NOW };
  await assert.rejects(issueNodeCertificate({ ...base, role: "admin" as NodeRole }), TypeError);
  await assert.rejects(issueNodeCertificate({ ...base, role: "worker", nodeId: "" }), TypeError);
  await assert.rejects(
    issueNodeCertificate({ ...base, role: "worker", csrPem: "not a csr" }),
    CSRError,
  );
  // A root whose key is not its certificate's key is refused.
  const other = await createRootCA({ clusterId: CLUSTER, now: NOW });
  await assert.rejects(
    issueNodeCertificate({ ...base, role: "worker", rootCA: { ...root, keyPem: other.keyPem } }),
    /root CA key does not match/,
  );
});

Deno.test("issueNodeCertificate rejects a tampered CSR", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const victim = await createNodeCSR({ nodeId: "victim" });
  const attacker = await createNodeCSR({ nodeId: "victim" });
  const der = pemToDer(victim.csrPem);
  const victimSpki = new Uint8Array(
    new x509.Pkcs10CertificateRequest(victim.csrPem).publicKey.rawData,
  );
  const attackerSpki = new Uint8Array(
    new x509.Pkcs10CertificateRequest(attacker.csrPem).publicKey.rawData,
  );
  assert.equal(victimSpki.length, attackerSpki.length);
  const at = indexOfBytes(der, victimSpki);
  assert.ok(at > 0);
  // Swap in the attacker's public key, keeping the victim's signature.
  const swapped = der.slice();
  swapped.set(attackerSpki, at);
  // And, separately, change one byte of the subject.
  const renamed = der.slice();
  const cnAt = indexOfBytes(der, new TextEncoder().encode("victim"));
  assert.ok(cnAt > 0);
  renamed[cnAt] = "V".charCodeAt(0);

  const ok = { rootCA: root, nodeId: "n1", role: "worker" as const, clusterId: CLUSTER, now: NOW };
  // The untampered CSR is accepted (so the rejections below are about the tampering).
  await issueNodeCertificate({ ...ok, csrPem: victim.csrPem });
  for (const tampered of [swapped, renamed]) {
    await assert.rejects(
      issueNodeCertificate({ ...ok, csrPem: derToPem(tampered, "CERTIFICATE REQUEST") }),
      (error: unknown) =>
        error instanceof CSRError && /^invalid certificate request: /.test(error.message),
    );
  }
});

Deno.test("verifyNodeCertificate rejects a certificate from another CA", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  // Same cluster id, so the issuer name is identical and only the signature differs.
  const other = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const foreign = await issue(other, "n1", "manager");
  await assert.rejects(
    verifyNodeCertificate({ rootCA: root, certPem: foreign.certPem, now: NOW }),
    (error: unknown) =>
      error instanceof CertificateError && error.code === "untrusted" &&
      /^invalid node certificate: not signed by this cluster's root CA/.test(error.message),
  );
  // Another cluster's CA: different issuer name, also untrusted.
  const elsewhere = await createRootCA({ clusterId: "othercluster", now: NOW });
  const far = await issue(elsewhere, "n1", "worker", { clusterId: "othercluster" });
  await assert.rejects(
    verifyNodeCertificate({ rootCA: root, certPem: far.certPem, now: NOW }),
    (error: unknown) => error instanceof CertificateError && error.code === "untrusted",
  );
  // The root itself is not a node certificate.
  await assert.rejects(
    verifyNodeCertificate({ rootCA: root, certPem: root.certPem, now: NOW }),
    (error: unknown) => error instanceof CertificateError && error.code === "wrong-role",
  );
  await assert.rejects(
    verifyNodeCertificate({
      rootCA: root,
      certPem: "-----BEGIN CERTIFICATE-----\nAAAA\n",
      now: NOW,
    }),
    (error: unknown) => error instanceof CertificateError && error.code === "malformed",
  );
});

Deno.test("verifyNodeCertificate: expired and not yet valid", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const issued = await issue(root, "n1", "worker", { expiryMs: 2 * HOUR });
  const at = (now: number) => verifyNodeCertificate({ rootCA: root, certPem: issued.certPem, now });
  assert.equal((await at(issued.notAfter)).nodeId, "n1");
  assert.equal((await at(issued.notBefore)).nodeId, "n1");
  await assert.rejects(
    at(issued.notAfter + 1),
    (error: unknown) =>
      error instanceof CertificateError && error.code === "expired" &&
      error.message === "invalid node certificate: expired at 2026-01-15T14:00:00.000Z",
  );
  await assert.rejects(
    at(issued.notBefore - 1),
    (error: unknown) =>
      error instanceof CertificateError && error.code === "not-yet-valid" &&
      /not valid before 2026-01-15T11:00:00.000Z/.test(error.message),
  );
});

Deno.test("verifyNodeCertificate: wrong OU and wrong cluster", async () => {
  const root = await createRootCA({ clusterId: CLUSTER, now: NOW });
  const caCert = new x509.X509Certificate(root.certPem);
  const caKey = await crypto.subtle.importKey(
    "pkcs8",
    pemToDer(root.keyPem),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign"],
  );
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const make = async (subject: string) =>
    (await x509.X509CertificateGenerator.create({
      subject,
      issuer: caCert.subject,
      notBefore: new Date(NOW - HOUR),
      notAfter: new Date(NOW + HOUR),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    })).toString("pem");
  const check = (certPem: string) => verifyNodeCertificate({ rootCA: root, certPem, now: NOW });

  await assert.rejects(
    check(await make(`O=${CLUSTER}, OU=swarm-admin, CN=n1`)),
    (error: unknown) =>
      error instanceof CertificateError && error.code === "wrong-role" &&
      /OU must be "swarm-manager" or "swarm-worker", got \["swarm-admin"\]/.test(error.message),
  );
  await assert.rejects(
    check(await make(`O=${CLUSTER}, CN=n1`)),
    (error: unknown) => error instanceof CertificateError && error.code === "wrong-role",
  );
  await assert.rejects(
    check(await make(`O=${CLUSTER}, OU=swarm-worker, OU=swarm-manager, CN=n1`)),
    (error: unknown) => error instanceof CertificateError && error.code === "wrong-role",
  );
  await assert.rejects(
    check(await make(`O=elsewhere, OU=swarm-manager, CN=n1`)),
    (error: unknown) => error instanceof CertificateError && error.code === "wrong-cluster",
  );
  await assert.rejects(
    check(await make(`O=${CLUSTER}, OU=swarm-manager`)),
    (error: unknown) => error instanceof CertificateError && error.code === "malformed",
  );
  // The same construction with good fields passes, so the failures above are about the fields.
  assert.deepEqual(
    (await check(await make(`O=${CLUSTER}, OU=swarm-manager, CN=n1`))).role,
    "manager",
  );
});

Deno.test("renewalTime lies between 50 % and 80 % of the validity", () => {
  const notBefore = NOW - HOUR;
  const notAfter = NOW + 90 * DAY;
  const validity = notAfter - notBefore;
  assert.equal(renewalTime(notBefore, notAfter, 0), notBefore + validity / 2);
  for (const random of [1 - Number.EPSILON, 1 - 2 ** -53]) {
    const top = renewalTime(notBefore, notAfter, random);
    assert.ok(top < notBefore + validity * 0.8, `${random}`);
    assert.equal(top, notBefore + validity * 0.8 - 1);
  }
  assert.equal(renewalTime(0, 1000, 0.5), 650);
  assert.equal(renewalTime(0, 1, 0.9), 0, "no span: the lower bound");
  for (let i = 0; i < 1000; i++) {
    const t = renewalTime(notBefore, notAfter, i / 1000);
    assert.ok(t >= notBefore + 0.5 * validity && t < notBefore + 0.8 * validity, `${i}`);
    assert.ok(Number.isInteger(t));
  }
  assert.throws(() => renewalTime(notBefore, notAfter, 1), RangeError);
  assert.throws(() => renewalTime(notBefore, notAfter, -0.1), RangeError);
  assert.throws(() => renewalTime(notBefore, notAfter, Number.NaN), RangeError);
  assert.throws(() => renewalTime(notAfter, notBefore, 0.5), RangeError);
});

/** Rejects after `ms` unless `promise` settles first; always clears its timer. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("node certificates work for mutual TLS with node:tls", async () => {
  const now = Date.now();
  const root = await createRootCA({ clusterId: CLUSTER, now });
  const other = await createRootCA({ clusterId: CLUSTER, now });
  const managerId = "m0000000000000000000000001";
  const manager = await issue(root, managerId, "manager", { now });
  const worker = await issue(root, "w0000000000000000000000001", "worker", { now });
  const rogue = await issue(other, "r0000000000000000000000001", "worker", { now });

  type Peer = { subject: Record<string, string>; authorized: boolean; line: string };
  const accepted: Peer[] = [];
  const rejected: Error[] = [];
  let onRejected = () => {};
  const server = tls.createServer({
    key: manager.keyPem,
    cert: manager.certPem,
    ca: [root.certPem],
    requestCert: true,
    rejectUnauthorized: true,
  }, (socket) => {
    const peer = socket.getPeerCertificate();
    socket.setEncoding("utf8");
    let buffer = "";
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\n");
      if (end < 0) return;
      const line = buffer.slice(0, end);
      accepted.push({
        subject: { ...(peer.subject as unknown as Record<string, string>) },
        authorized: socket.authorized,
        line,
      });
      socket.end(`hello ${peer.subject.CN}\n`);
    });
    socket.on("error", () => {});
  });
  server.on("tlsClientError", (error: Error) => {
    rejected.push(error);
    onRejected();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  /** Connects with `identity`, sends a line, and returns what came back before the close. */
  const talk = (identity: { keyPem: string; certPem: string }, servername = managerId) =>
    new Promise<{ secure: boolean; reply: string; error?: Error; serverCN?: string }>(
      (resolve) => {
        const result: { secure: boolean; reply: string; error?: Error; serverCN?: string } = {
          secure: false,
          reply: "",
        };
        const socket = tls.connect({
          host: "127.0.0.1",
          port,
          ca: [root.certPem],
          key: identity.keyPem,
          cert: identity.certPem,
          // The manager's node id is one of its certificate's DNS names.
          servername,
        }, () => {
          result.secure = socket.authorized;
          result.serverCN = String(socket.getPeerCertificate().subject.CN);
          socket.write("ping\n");
        });
        socket.setEncoding("utf8");
        socket.on("data", (chunk: string) => (result.reply += chunk));
        socket.on("error", (error: Error) => (result.error = error));
        socket.on("close", () => resolve(result));
      },
    );

  try {
    const good = await within(10_000, "worker handshake", talk(worker));
    assert.equal(good.error, undefined);
    assert.equal(good.secure, true);
    assert.equal(good.serverCN, managerId);
    assert.equal(good.reply, "hello w0000000000000000000000001\n");
    assert.equal(accepted.length, 1);
    assert.deepEqual(accepted[0], {
      subject: { O: CLUSTER, OU: WORKER_OU, CN: "w0000000000000000000000001" },
      authorized: true,
      line: "ping",
    });

    // A client whose certificate comes from another CA is refused by the server. (With TLS 1.3
    // the client may see its own handshake finish before the server's refusal arrives.)
    const refused = new Promise<void>((resolve) => (onRejected = resolve));
    const bad = await within(10_000, "rogue handshake", talk(rogue));
    await within(10_000, "server refusal", refused);
    assert.equal(bad.reply, "");
    assert.equal(accepted.length, 1, "the server never accepted the rogue client");
    assert.equal(rejected.length, 1);

    // The client checks the server's name against its certificate's DNS names.
    const misnamed = await within(10_000, "misnamed handshake", talk(worker, "swarm-worker"));
    assert.equal(misnamed.secure, false);
    assert.equal(misnamed.reply, "");
    assert.ok(misnamed.error, "the client refused a server certificate without that name");
    // SwarmKit's clients dial managers by the role name, which every manager certificate has.
    const byRole = await within(10_000, "role-named handshake", talk(worker, MANAGER_OU));
    assert.equal(byRole.reply, "hello w0000000000000000000000001\n");
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
