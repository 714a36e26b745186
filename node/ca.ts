/**
 * Shoal's certificate authority, on SwarmKit's model (`ca/certificates.go`, `ca/config.go`).
 *
 * - One self-signed ECDSA P-256 root per cluster (CN `swarm-ca`, 20 years, backdated 1 h). Its
 *   key lives in the replicated cluster state, like SwarmKit's `Cluster.RootCA`.
 * - Nodes make their own key and a CSR; a manager signs the CSR's public key into a node
 *   certificate whose subject says who the node is: CN = node id, OU = role (`swarm-manager` or
 *   `swarm-worker`), O = cluster id. Mutual TLS then authenticates and authorizes by that subject.
 * - Join tokens pin the root: `SWMTKN-1-<sha256 of the root cert, base 36>-<secret, base 36>`.
 *   A joining node checks the CA it is shown against the token before trusting it.
 *
 * Pure library code: no I/O but WebCrypto. Time enters as `now` (integer milliseconds) and the
 * token secret's randomness can be injected. Outputs are PEM strings, which `node:tls` takes as
 * they are (`key`, `cert`, `ca`).
 *
 * Differences from SwarmKit, on purpose:
 * - The root digest is the sha256 of the certificate's DER bytes. SwarmKit hashes the PEM bundle
 *   as stored, so re-encoding the PEM (line endings, a trailing newline) changes its digest.
 * - The root carries O = cluster id, so a node certificate can be checked against the cluster
 *   of the CA that signed it (SwarmKit's root has only CN `swarm-ca`).
 * - An expiry below the 1 h minimum is a `RangeError`; SwarmKit silently uses the default.
 * - The issued chain is the node certificate alone; SwarmKit appends the root. Every peer has the
 *   root already, and `node:tls` is given it as `ca`.
 *
 * @module
 */

import "reflect-metadata"; // tsyringe (under @peculiar/x509) needs Reflect.getMetadata
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

/** Milliseconds in one hour. */
const HOUR_MS = 60 * 60 * 1000;

/** Root CA validity: 20 years of 365 days (SwarmKit's `RootCAExpiration`, "630720000s"). */
export const ROOT_CA_EXPIRY_MS: number = 630_720_000 * 1000;
/** Default node certificate validity: 90 days (SwarmKit's `DefaultNodeCertExpiration`). */
export const DEFAULT_NODE_CERT_EXPIRY_MS: number = 2160 * HOUR_MS;
/** Shortest node certificate validity accepted (SwarmKit's `MinNodeCertExpiration`). */
export const MIN_NODE_CERT_EXPIRY_MS: number = HOUR_MS;
/** How far every certificate's `notBefore` is set back, against clock skew (`CertBackdate`). */
export const CERT_BACKDATE_MS: number = HOUR_MS;
/** Earliest renewal point, as a fraction of validity (`CertLowerRotationRange`). */
export const RENEWAL_LOWER_FRACTION = 0.5;
/** Latest renewal point, as a fraction of validity (`CertUpperRotationRange`). */
export const RENEWAL_UPPER_FRACTION = 0.8;

/** Common name of the root CA, and a DNS name of every manager (SwarmKit's `CARole`). */
export const CA_ROLE = "swarm-ca";
/** Organizational unit (and a DNS name) of manager certificates (SwarmKit's `ManagerRole`). */
export const MANAGER_OU = "swarm-manager";
/** Organizational unit (and a DNS name) of worker certificates (SwarmKit's `WorkerRole`). */
export const WORKER_OU = "swarm-worker";

/** A node's role, as it is written in the cluster state. */
export type NodeRole = "worker" | "manager";

/** The public half of a root CA: what every node holds and what a join token pins. */
export interface RootCACert {
  /** The self-signed root certificate, PEM. */
  readonly certPem: string;
}

/** A root CA that can sign: the certificate, its private key, and the certificate's digest. */
export interface RootCA extends RootCACert {
  /** The root's private key, PKCS#8 PEM ("PRIVATE KEY"). */
  readonly keyPem: string;
  /** Lowercase hex sha256 of the certificate's DER bytes (see {@link certificateDigest}). */
  readonly digest: string;
}

/** Options of {@link createRootCA}. */
export interface CreateRootCAOptions {
  /** The cluster id, written as the root's O. */
  readonly clusterId: string;
  /** Current time, integer milliseconds since the epoch. */
  readonly now: number;
  /** Validity from `now`; defaults to {@link ROOT_CA_EXPIRY_MS}. */
  readonly expiryMs?: number;
}

/** A fresh key and the certificate signing request for it, both PEM. */
export interface NodeCSR {
  /** PKCS#10 certificate request, PEM ("CERTIFICATE REQUEST"). */
  readonly csrPem: string;
  /** The new private key, PKCS#8 PEM ("PRIVATE KEY"). Never leaves the node. */
  readonly keyPem: string;
}

/** Options of {@link issueNodeCertificate}. */
export interface IssueNodeCertificateOptions {
  /** The signing root (certificate and key). */
  readonly rootCA: Pick<RootCA, "certPem" | "keyPem">;
  /** The node's CSR, PEM. Only its public key is used; its subject is ignored. */
  readonly csrPem: string;
  /** The node id, written as the CN and a DNS name. */
  readonly nodeId: string;
  /** The role the certificate grants, written as the OU. */
  readonly role: NodeRole;
  /** The cluster id, written as the O. */
  readonly clusterId: string;
  /** Current time, integer milliseconds since the epoch. */
  readonly now: number;
  /** Validity from `now`; defaults to {@link DEFAULT_NODE_CERT_EXPIRY_MS}, at least 1 h. */
  readonly expiryMs?: number;
  /**
   * More names for the certificate's SANs: DNS names and IP addresses (a manager's API over TLS
   * is dialled by address: `api_tls.ts`).
   */
  readonly extraNames?: { readonly dns?: readonly string[]; readonly ips?: readonly string[] };
}

/** A node certificate as issued. */
export interface IssuedCertificate {
  /** The node certificate alone (no chain), PEM. */
  readonly certPem: string;
  /** Its `notBefore`, milliseconds (backdated by {@link CERT_BACKDATE_MS}, whole seconds). */
  readonly notBefore: number;
  /** Its `notAfter`, milliseconds (whole seconds, never past the root's own `notAfter`). */
  readonly notAfter: number;
}

/** Options of {@link verifyNodeCertificate}. */
export interface VerifyNodeCertificateOptions {
  /** The trusted root. */
  readonly rootCA: RootCACert;
  /** The certificate to check, PEM (the first certificate in it is checked). */
  readonly certPem: string;
  /** Current time, integer milliseconds since the epoch. */
  readonly now: number;
}

/** Who a verified node certificate says its holder is. */
export interface NodeIdentity {
  /** The node id (CN). */
  readonly nodeId: string;
  /** The role (from the OU). */
  readonly role: NodeRole;
  /** The cluster id (O). */
  readonly clusterId: string;
  /** The certificate's `notBefore`, milliseconds. */
  readonly notBefore: number;
  /** The certificate's `notAfter`, milliseconds. */
  readonly notAfter: number;
}

/** Why {@link verifyNodeCertificate} refused a certificate. */
export type CertificateErrorCode =
  | "malformed"
  | "untrusted"
  | "expired"
  | "not-yet-valid"
  | "wrong-role"
  | "wrong-cluster";

/** A certificate failed a check; `code` says which, the message says why in words. */
export class CertificateError extends Error {
  /** Which check failed. */
  readonly code: CertificateErrorCode;

  /** Creates the error; the message is prefixed with "invalid node certificate: ". */
  constructor(code: CertificateErrorCode, message: string) {
    super(`invalid node certificate: ${message}`);
    this.name = "CertificateError";
    this.code = code;
  }
}

/** A CSR could not be parsed, or its signature does not verify. */
export class CSRError extends Error {
  /** Creates the error; the message is prefixed with "invalid certificate request: ". */
  constructor(message: string, options?: ErrorOptions) {
    super(`invalid certificate request: ${message}`, options);
    this.name = "CSRError";
  }
}

/** A join token is not of the form `SWMTKN-1-<50 base-36 chars>-<25 base-36 chars>`. */
export class JoinTokenError extends Error {
  /** Creates the error; the message is prefixed with "invalid join token: ". */
  constructor(message: string) {
    super(`invalid join token: ${message}`);
    this.name = "JoinTokenError";
  }
}

const KEY_ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING_ALGORITHM: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
/** Refuse CSRs larger than this before parsing them (a P-256 CSR is about 400 characters). */
const MAX_CSR_PEM_LENGTH = 16 * 1024;

/**
 * Creates a cluster's root CA: a new ECDSA P-256 key and a self-signed certificate with
 * CN `swarm-ca` and O = the cluster id, valid from `now - 1 h` for 20 years (by default).
 *
 * @example
 * ```ts
 * const root = await createRootCA({ clusterId: "c1", now: Date.now() });
 * root.digest; // 64 hex characters
 * ```
 */
export async function createRootCA(options: CreateRootCAOptions): Promise<RootCA> {
  const { clusterId, now, expiryMs = ROOT_CA_EXPIRY_MS } = options;
  requireName("clusterId", clusterId);
  requireTime("now", now);
  if (!Number.isFinite(expiryMs) || expiryMs < MIN_NODE_CERT_EXPIRY_MS) {
    throw new RangeError(`root CA expiry must be at least 1 h, got ${expiryMs} ms`);
  }
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ O: [clusterId] }, { CN: [CA_ROLE] }],
    notBefore: new Date(now - CERT_BACKDATE_MS),
    notAfter: new Date(now + expiryMs),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certPem: cert.toString("pem"),
    keyPem: await exportKeyPem(keys.privateKey),
    digest: await digestOf(cert),
  };
}

/**
 * The digest that join tokens pin: lowercase hex sha256 of the first certificate's DER bytes in
 * `certPem`. Independent of how the PEM is wrapped.
 */
export async function certificateDigest(certPem: string): Promise<string> {
  return await digestOf(parseCertificate(certPem, "root CA"));
}

/**
 * Makes a new join token for `rootCA`: `SWMTKN-1-<digest>-<secret>`, where `<digest>` is the
 * root's sha256 as a base-36 number zero-padded to 50 characters and `<secret>` is 128 random
 * bits in base 36, zero-padded to 25 characters (Docker's format).
 *
 * @param randomBytes Source of the 16 secret bytes; defaults to `crypto.getRandomValues`.
 *
 * @example
 * ```ts
 * const token = newJoinToken(root); // "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-…"
 * ```
 */
export function newJoinToken(
  rootCA: Pick<RootCA, "digest">,
  randomBytes: (length: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n)),
): string {
  if (!/^[0-9a-f]{64}$/.test(rootCA.digest)) {
    throw new TypeError(`root CA digest must be 64 lowercase hex characters`);
  }
  const secret = randomBytes(SECRET_BYTES);
  if (secret.length !== SECRET_BYTES) {
    throw new RangeError(`randomBytes(${SECRET_BYTES}) returned ${secret.length} bytes`);
  }
  const digestPart = BigInt(`0x${rootCA.digest}`).toString(36).padStart(DIGEST_CHARS, "0");
  const secretPart = bytesToBigInt(secret).toString(36).padStart(SECRET_CHARS, "0");
  return `${TOKEN_PREFIX}-${TOKEN_VERSION}-${digestPart}-${secretPart}`;
}

/** A join token, taken apart by {@link parseJoinToken}. */
export interface ParsedJoinToken {
  /** The format version (always 1). */
  readonly version: 1;
  /** The pinned root digest, as lowercase hex (compare with {@link RootCA.digest}). */
  readonly caDigest: string;
  /** The secret part, 25 base-36 characters as written in the token. */
  readonly secret: string;
}

const TOKEN_PREFIX = "SWMTKN";
const TOKEN_VERSION = "1";
const DIGEST_CHARS = 50;
const SECRET_CHARS = 25;
const SECRET_BYTES = 16;
const BASE36 = /^[0-9a-z]+$/;

/**
 * Takes a join token apart. Throws a {@link JoinTokenError} ("invalid join token: …") naming
 * what is wrong. Only version 1 is accepted (Docker's `SWMTKN-2-` marks FIPS clusters, which
 * Shoal does not have).
 */
export function parseJoinToken(token: string): ParsedJoinToken {
  if (typeof token !== "string") throw new JoinTokenError("not a string");
  const parts = token.split("-");
  if (parts[0] !== TOKEN_PREFIX) {
    throw new JoinTokenError(`must start with "${TOKEN_PREFIX}-"`);
  }
  if (parts.length !== 4) {
    throw new JoinTokenError(`want 4 parts separated by "-", got ${parts.length}`);
  }
  const [, version, digestPart, secret] = parts;
  if (version !== TOKEN_VERSION) {
    throw new JoinTokenError(`unsupported version "${version.slice(0, 10)}" (want 1)`);
  }
  if (digestPart.length !== DIGEST_CHARS || !BASE36.test(digestPart)) {
    throw new JoinTokenError(`CA digest part must be ${DIGEST_CHARS} base-36 characters`);
  }
  if (secret.length !== SECRET_CHARS || !BASE36.test(secret)) {
    throw new JoinTokenError(`secret part must be ${SECRET_CHARS} base-36 characters`);
  }
  const digest = parseBase36(digestPart);
  if (digest >= 1n << 256n) throw new JoinTokenError("CA digest part exceeds 256 bits");
  if (parseBase36(secret) >= 1n << 128n) {
    throw new JoinTokenError("secret part exceeds 128 bits");
  }
  return { version: 1, caDigest: digest.toString(16).padStart(64, "0"), secret };
}

/**
 * Whether `token` pins the root CA `rootCA`: the digest part of the token equals the sha256 of
 * the certificate, computed here (a joining node calls this on the CA a manager showed it before
 * trusting that CA). Throws a {@link JoinTokenError} if the token is malformed.
 */
export async function tokenMatchesCA(token: string, rootCA: RootCACert): Promise<boolean> {
  const { caDigest } = parseJoinToken(token);
  return caDigest === await certificateDigest(rootCA.certPem);
}

/**
 * Whether the token a node presented is the cluster's current token `expected` (the full token
 * string kept in the cluster state). Both must parse; the CA digests must be equal and the
 * secrets are compared in constant time. A malformed presented token is `false`, not an error.
 */
export function joinTokenMatches(presented: string, expected: string): boolean {
  const want = parseJoinToken(expected);
  let got: ParsedJoinToken;
  try {
    got = parseJoinToken(presented);
  } catch {
    return false;
  }
  const secretsEqual = constantTimeEqual(got.secret, want.secret);
  return got.caDigest === want.caDigest && secretsEqual;
}

/**
 * Makes a new ECDSA P-256 key and a CSR for it, signed by it. The subject is CN = `nodeId` when
 * given (managers ignore it and write their own subject), else empty, as in SwarmKit.
 */
export async function createNodeCSR(options: { readonly nodeId?: string } = {}): Promise<NodeCSR> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: options.nodeId === undefined ? [] : [{ CN: [options.nodeId] }],
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
  });
  return { csrPem: csr.toString("pem"), keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * Signs a node certificate for the public key in `csrPem`, after checking the CSR's signature
 * (a CSR whose key or subject was changed after signing is refused with a {@link CSRError}).
 *
 * The certificate has subject O = cluster id, OU = `swarm-manager` or `swarm-worker`, CN = node
 * id; DNS names = the OU and the node id, plus `swarm-ca` for managers (SwarmKit's
 * `PrepareCSR`); key usage digitalSignature + keyEncipherment; extended key usage serverAuth +
 * clientAuth; validity from `now - 1 h` to `now + expiryMs` (90 days by default), cut at the
 * root's own `notAfter`. An `expiryMs` under 1 h is a `RangeError`.
 */
export async function issueNodeCertificate(
  options: IssueNodeCertificateOptions,
): Promise<IssuedCertificate> {
  const { rootCA, csrPem, nodeId, role, clusterId, now } = options;
  const expiryMs = options.expiryMs ?? DEFAULT_NODE_CERT_EXPIRY_MS;
  requireName("nodeId", nodeId);
  requireName("clusterId", clusterId);
  requireTime("now", now);
  const ou = roleToOU(role);
  if (!Number.isFinite(expiryMs) || expiryMs < MIN_NODE_CERT_EXPIRY_MS) {
    throw new RangeError(
      `node certificate expiry must be at least 1 h (${MIN_NODE_CERT_EXPIRY_MS} ms), got ${expiryMs} ms`,
    );
  }

  const csr = await parseAndVerifyCSR(csrPem);
  const caCert = parseCertificate(rootCA.certPem, "root CA");
  const caKey = await importPrivateKey(rootCA.keyPem);
  const notAfter = Math.min(now + expiryMs, caCert.notAfter.getTime());
  if (notAfter <= now) {
    throw new RangeError(`the root CA expired at ${caCert.notAfter.toISOString()}`);
  }

  const caSki = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
  const dnsNames = role === "manager" ? [ou, nodeId, CA_ROLE] : [ou, nodeId];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ O: [clusterId] }, { OU: [ou] }, { CN: [nodeId] }],
    issuer: caCert.subjectName,
    notBefore: new Date(now - CERT_BACKDATE_MS),
    notAfter: new Date(notAfter),
    publicKey: csr.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([
        ...[...dnsNames, ...(options.extraNames?.dns ?? [])].map((value) => ({
          type: "dns" as const,
          value,
        })),
        ...(options.extraNames?.ips ?? []).map((value) => ({ type: "ip" as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
      ...(caSki ? [new x509.AuthorityKeyIdentifierExtension(caSki.keyId)] : []),
    ],
  });
  // A root whose key is not its certificate's would issue certificates nobody accepts.
  if (!await cert.verify({ publicKey: caCert.publicKey, signatureOnly: true })) {
    throw new TypeError("root CA key does not match the root CA certificate");
  }
  return {
    certPem: cert.toString("pem"),
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
  };
}

/**
 * Checks a node certificate against the root and the clock, and says whose it is. Throws a
 * {@link CertificateError} whose `code` and message name the failed check: `malformed`,
 * `untrusted` (not signed by this root), `expired`, `not-yet-valid`, `wrong-role` (the OU is not
 * `swarm-manager` or `swarm-worker`) or `wrong-cluster` (O differs from the root's O).
 */
export async function verifyNodeCertificate(
  options: VerifyNodeCertificateOptions,
): Promise<NodeIdentity> {
  const { rootCA, certPem, now } = options;
  requireTime("now", now);
  const roots = parseCertificates(rootCA.certPem, "root CA");
  let cert: x509.X509Certificate;
  let intermediates: x509.X509Certificate[];
  try {
    [cert, ...intermediates] = parseCertificates(certPem, "node");
  } catch (error) {
    throw new CertificateError("malformed", (error as Error).message);
  }

  // Signed by a trusted root, or (during a root rotation) by an intermediate of the chain that
  // a trusted root signed: the new root cross-signed by the old one.
  let caCert: x509.X509Certificate | undefined;
  for (const root of roots) {
    if (await signedBy(cert, root)) {
      caCert = root;
      break;
    }
  }
  for (const mid of intermediates) {
    if (caCert !== undefined) break;
    if (!isCA(mid) || now < mid.notBefore.getTime() || now > mid.notAfter.getTime()) continue;
    for (const root of roots) {
      if (await signedBy(mid, root) && await signedBy(cert, mid)) {
        caCert = root;
        break;
      }
    }
  }
  if (caCert === undefined) {
    throw new CertificateError(
      "untrusted",
      `not signed by this cluster's root CA (issuer "${cert.issuer}", serial ${cert.serialNumber})`,
    );
  }

  const notBefore = cert.notBefore.getTime();
  const notAfter = cert.notAfter.getTime();
  if (now > notAfter) {
    throw new CertificateError("expired", `expired at ${cert.notAfter.toISOString()}`);
  }
  if (now < notBefore) {
    throw new CertificateError(
      "not-yet-valid",
      `not valid before ${cert.notBefore.toISOString()}`,
    );
  }

  const ous = cert.subjectName.getField("OU");
  const role = ous.length === 1 ? ouToRole(ous[0]) : undefined;
  if (role === undefined) {
    throw new CertificateError(
      "wrong-role",
      `OU must be "${MANAGER_OU}" or "${WORKER_OU}", got ${JSON.stringify(ous)}`,
    );
  }
  const [nodeId, ...moreCNs] = cert.subjectName.getField("CN");
  if (!nodeId || moreCNs.length > 0) {
    throw new CertificateError("malformed", "subject must have exactly one CN (the node id)");
  }
  const [clusterId, ...moreOs] = cert.subjectName.getField("O");
  if (!clusterId || moreOs.length > 0) {
    throw new CertificateError("malformed", "subject must have exactly one O (the cluster id)");
  }
  const caClusters = caCert.subjectName.getField("O");
  if (caClusters.length > 0 && !caClusters.includes(clusterId)) {
    throw new CertificateError(
      "wrong-cluster",
      `issued for cluster "${clusterId}", the root CA is cluster "${caClusters[0]}"`,
    );
  }
  return { nodeId, role, clusterId, notBefore, notAfter };
}

/**
 * When to renew a certificate valid from `notBefore` to `notAfter` (milliseconds): a point
 * between 50 % and 80 % of the validity, chosen by `random` in [0, 1), so that nodes issued
 * together do not all renew at once (SwarmKit's `calculateRandomExpiry`). Returns milliseconds;
 * a time already past means "renew now".
 */
export function renewalTime(notBefore: number, notAfter: number, random: number): number {
  requireTime("notBefore", notBefore);
  requireTime("notAfter", notAfter);
  if (!(notAfter > notBefore)) {
    throw new RangeError(`notAfter (${notAfter}) must be after notBefore (${notBefore})`);
  }
  if (!(random >= 0 && random < 1)) {
    throw new RangeError(`random must be in [0, 1), got ${random}`);
  }
  const validity = notAfter - notBefore;
  const earliest = Math.floor(validity * RENEWAL_LOWER_FRACTION);
  const span = Math.floor(validity * RENEWAL_UPPER_FRACTION) - earliest;
  // As SwarmKit's rand.Intn(span): an integer in [0, span), kept below span despite rounding.
  const offset = span < 1 ? 0 : Math.min(Math.floor(span * random), span - 1);
  return notBefore + earliest + offset;
}

/**
 * The validity of the first certificate in `certPem`, in milliseconds, without checking anything
 * else (to schedule a renewal, see {@link renewalTime}).
 */
export function certificateValidity(certPem: string): { notBefore: number; notAfter: number } {
  const cert = parseCertificate(certPem, "node");
  return { notBefore: cert.notBefore.getTime(), notAfter: cert.notAfter.getTime() };
}

/** The OU written for `role`. */
export function roleToOU(role: NodeRole): string {
  if (role === "manager") return MANAGER_OU;
  if (role === "worker") return WORKER_OU;
  throw new TypeError(`role must be "manager" or "worker", got ${JSON.stringify(role)}`);
}

/** The role an OU grants, or `undefined` if it is neither `swarm-manager` nor `swarm-worker`. */
export function ouToRole(ou: string): NodeRole | undefined {
  if (ou === MANAGER_OU) return "manager";
  if (ou === WORKER_OU) return "worker";
  return undefined;
}

// ---------------------------------------------------------------------------------------------

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"]);
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(pkcs8, "PRIVATE KEY");
}

async function importPrivateKey(keyPem: string): Promise<CryptoKey> {
  let der: ArrayBuffer;
  try {
    der = x509.PemConverter.decodeFirst(keyPem);
  } catch (error) {
    throw new TypeError(`root CA key is not PEM: ${(error as Error).message}`);
  }
  return await crypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, false, ["sign"]);
}

/** Whether `cert` names `issuer` as its issuer and carries a valid signature of its key. */
async function signedBy(
  cert: x509.X509Certificate,
  issuer: x509.X509Certificate,
): Promise<boolean> {
  if (cert.issuer !== issuer.subject) return false;
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

function isCA(cert: x509.X509Certificate): boolean {
  return cert.getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

/** Every certificate of a PEM bundle, in order; at least one. */
function parseCertificates(pem: string, what: string): x509.X509Certificate[] {
  let ders: ArrayBuffer[];
  try {
    ders = x509.PemConverter.decodeWithHeaders(pem)
      .filter((block) => block.type === "CERTIFICATE")
      .map((block) => block.rawData);
    if (ders.length === 0) throw new Error("no CERTIFICATE block");
    return ders.map((der) => new x509.X509Certificate(der));
  } catch (error) {
    throw new TypeError(
      `${what} certificate is not a PEM certificate: ${(error as Error).message}`,
    );
  }
}

function parseCertificate(pem: string, what: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(x509.PemConverter.decodeFirst(pem));
  } catch (error) {
    throw new TypeError(
      `${what} certificate is not a PEM certificate: ${(error as Error).message}`,
    );
  }
}

async function parseAndVerifyCSR(csrPem: string): Promise<x509.Pkcs10CertificateRequest> {
  if (typeof csrPem !== "string" || csrPem.length > MAX_CSR_PEM_LENGTH) {
    throw new CSRError(`must be a PEM string of at most ${MAX_CSR_PEM_LENGTH} characters`);
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(x509.PemConverter.decodeFirst(csrPem));
  } catch (error) {
    throw new CSRError(`cannot parse: ${(error as Error).message}`, { cause: error });
  }
  let valid: boolean;
  try {
    valid = await csr.verify();
  } catch (error) {
    throw new CSRError(`cannot check its signature: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!valid) throw new CSRError("signature does not match its contents");
  return csr;
}

async function digestOf(cert: x509.X509Certificate): Promise<string> {
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData));
  return Array.from(sum, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A positive 128-bit serial number, as hex (RFC 5280: positive, at most 20 octets). */
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function bytesToBigInt(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function parseBase36(text: string): bigint {
  let n = 0n;
  for (const ch of text) n = n * 36n + BigInt(parseInt(ch, 36));
  return n;
}

/** Compares two strings in time that depends only on their lengths. */
function constantTimeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return diff === 0;
}

function requireName(field: string, value: string): void {
  if (typeof value !== "string" || value.length === 0 || value.length > 64) {
    throw new TypeError(`${field} must be a non-empty string of at most 64 characters`);
  }
}

function requireTime(field: string, value: number): void {
  if (!Number.isSafeInteger(value)) {
    throw new TypeError(`${field} must be an integer number of milliseconds, got ${value}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Root rotation (SwarmKit's `ca/reconciler.go` and `controlapi/ca_rotation.go`)

/** A root CA as the swarm keeps it, with the rotation under way if any (`RootCA` in the log). */
export interface RotatingRootCA extends RootCA {
  /** The new root and its cross-signed copy, while a rotation is under way. */
  readonly rotation?: {
    readonly certPem: string;
    readonly keyPem: string;
    readonly digest: string;
    readonly crossSignedPem: string;
  };
  /** Rotations asked for so far (Docker's `CAConfig.ForceRotate`). */
  readonly lastForcedRotation?: number;
}

/** Options of {@link crossSignRootCA}. */
export interface CrossSignOptions {
  /** The current root, which signs. */
  readonly signer: Pick<RootCA, "certPem" | "keyPem">;
  /** The new root's self-signed certificate, PEM. */
  readonly newRootPem: string;
}

/**
 * The new root cross-signed by the current one: an intermediate CA certificate with the new
 * root's subject, public key, validity and key identifier, issued by the current root (SwarmKit's
 * `CrossSignCACertificate`). A certificate the new root signed, presented with this one, chains
 * to the current root, so a node that trusts only the current root still accepts it.
 */
export async function crossSignRootCA(options: CrossSignOptions): Promise<string> {
  const signerCert = parseCertificate(options.signer.certPem, "root CA");
  const signerKey = await importPrivateKey(options.signer.keyPem);
  const newRoot = parseCertificate(options.newRootPem, "new root CA");
  const publicKey = await newRoot.publicKey.export(KEY_ALGORITHM, ["verify"]);
  const signerSki = signerCert.getExtension(x509.SubjectKeyIdentifierExtension);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: newRoot.subjectName,
    issuer: signerCert.subjectName,
    notBefore: newRoot.notBefore,
    notAfter: newRoot.notAfter,
    publicKey,
    signingKey: signerKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      ...(signerSki ? [new x509.AuthorityKeyIdentifierExtension(signerSki.keyId)] : []),
    ],
  });
  if (!await cert.verify({ publicKey: signerCert.publicKey, signatureOnly: true })) {
    throw new TypeError("root CA key does not match the root CA certificate");
  }
  return cert.toString("pem");
}

/**
 * Starts a root rotation: a new root (same cluster, 20 years) and its copy cross-signed by the
 * current root, returned as the current root CA with `rotation` set and `lastForcedRotation`
 * counted up. A rotation already under way is replaced (as SwarmKit's: the newest wins).
 */
export async function startRootRotation(
  current: RotatingRootCA,
  options: { readonly clusterId: string; readonly now: number },
): Promise<RotatingRootCA> {
  const next = await createRootCA({ clusterId: options.clusterId, now: options.now });
  const crossSignedPem = await crossSignRootCA({ signer: current, newRootPem: next.certPem });
  return {
    certPem: current.certPem,
    keyPem: current.keyPem,
    digest: current.digest,
    rotation: { certPem: next.certPem, keyPem: next.keyPem, digest: next.digest, crossSignedPem },
    lastForcedRotation: (current.lastForcedRotation ?? 0) + 1,
  };
}

/** The root CA once its rotation is over: the new root alone. */
export function finishRootRotation(current: RotatingRootCA): RotatingRootCA {
  const r = current.rotation;
  if (r === undefined) throw new TypeError("no root rotation is under way");
  return {
    certPem: r.certPem,
    keyPem: r.keyPem,
    digest: r.digest,
    ...(current.lastForcedRotation !== undefined
      ? { lastForcedRotation: current.lastForcedRotation }
      : {}),
  };
}

/**
 * The roots a node must trust: the current root, and during a rotation the new one too (PEM,
 * one after the other; `node:tls` takes the bundle as `ca`).
 */
export function trustBundle(ca: RotatingRootCA): string {
  if (ca.rotation === undefined) return ca.certPem;
  return withNewline(ca.certPem) + withNewline(ca.rotation.certPem);
}

/**
 * What signs node certificates now: the new root during a rotation, with the cross-signed
 * intermediate to append to what it issues; else the root itself.
 */
export function signingCA(
  ca: RotatingRootCA,
): { readonly certPem: string; readonly keyPem: string; readonly chainPem: string } {
  if (ca.rotation) {
    return {
      certPem: ca.rotation.certPem,
      keyPem: ca.rotation.keyPem,
      chainPem: withNewline(ca.rotation.crossSignedPem),
    };
  }
  return { certPem: ca.certPem, keyPem: ca.keyPem, chainPem: "" };
}

/** The digest of the root that signs node certificates now (the new root during a rotation). */
export function desiredIssuerDigest(ca: RotatingRootCA): string {
  return ca.rotation?.digest ?? ca.digest;
}

/**
 * Issues a node certificate with the swarm's signing root (see {@link signingCA}): during a
 * rotation the new root signs, and the cross-signed intermediate follows the certificate in
 * `certPem`, so that nodes still trusting only the old root accept it.
 */
export async function issueWithSwarmCA(
  ca: RotatingRootCA,
  options: Omit<IssueNodeCertificateOptions, "rootCA">,
): Promise<IssuedCertificate> {
  const signer = signingCA(ca);
  const issued = await issueNodeCertificate({ ...options, rootCA: signer });
  return { ...issued, certPem: withNewline(issued.certPem) + signer.chainPem };
}

/** Docker's `TLSInfo` of a node: the roots it trusts and the root that signed its certificate. */
export interface NodeTlsInfo {
  /** The trusted roots, PEM. */
  readonly trustRoot: string;
  /** The DER subject of the root that signed the node's certificate, base64. */
  readonly certIssuerSubject: string;
  /** The DER public key (SubjectPublicKeyInfo) of that root, base64. */
  readonly certIssuerPublicKey: string;
}

/**
 * The TLS info of a node holding `certPem` and trusting `trustPem`: which of the trusted roots
 * (or of the chain's intermediates) signed the certificate. Throws a {@link CertificateError}
 * ("untrusted") when none did.
 */
export async function nodeTlsInfo(certPem: string, trustPem: string): Promise<NodeTlsInfo> {
  const [leaf, ...chain] = parseCertificates(certPem, "node");
  for (const issuer of [...parseCertificates(trustPem, "root CA"), ...chain]) {
    if (await signedBy(leaf, issuer)) {
      return {
        trustRoot: trustPem,
        certIssuerSubject: toBase64(issuer.subjectName.toArrayBuffer()),
        certIssuerPublicKey: toBase64(issuer.publicKey.rawData),
      };
    }
  }
  throw new CertificateError("untrusted", "not signed by any root this node trusts");
}

/** The public key (SubjectPublicKeyInfo DER, base64) of the first certificate of `pem`. */
export function certificatePublicKey(pem: string): string {
  return toBase64(parseCertificate(pem, "root CA").publicKey.rawData);
}

function withNewline(pem: string): string {
  return pem.endsWith("\n") ? pem : pem + "\n";
}

function toBase64(buf: ArrayBuffer): string {
  let s = "";
  for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
  return btoa(s);
}
