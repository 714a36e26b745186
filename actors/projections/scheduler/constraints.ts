/**
 * Placement constraints, as SwarmKit's `manager/constraint` package reads them: `key==value` or
 * `key!=value`, all of them ANDed. Keys (case-insensitive): `node.id`, `node.hostname`,
 * `node.ip` (an address or a CIDR subnet, matched against the node's address), `node.role`,
 * `node.platform.os`, `node.platform.arch`, `node.labels.<label>` and `engine.labels.<label>`
 * (the label name itself is case-sensitive). Values compare case-insensitively; a label the node
 * lacks reads as "" (so `!=` matches it and `==` does not).
 *
 * One difference from SwarmKit, on purpose: SwarmKit parses an unknown key and then matches no
 * node with it, so a typo reads "scheduling constraints not satisfied on N nodes". Here an
 * unknown key is a parse error with a message that names the keys that exist.
 *
 * @module
 */
import type { NodeRecord } from "../../state.ts";

/** The node property a constraint reads. */
export type ConstraintKind =
  | "id"
  | "hostname"
  | "ip"
  | "role"
  | "os"
  | "arch"
  | "nodeLabel"
  | "engineLabel";

/** One parsed constraint. */
export interface Constraint {
  /** The constraint as written, trimmed. */
  readonly text: string;
  /** The key as written (`node.labels.zone`). */
  readonly key: string;
  readonly kind: ConstraintKind;
  /** The label name, for `nodeLabel` and `engineLabel`. */
  readonly label: string;
  readonly op: "==" | "!=";
  /** The value, as written. */
  readonly value: string;
  /** The value lower-cased, for case-insensitive comparison. */
  readonly folded: string;
}

/** A constraint that cannot be read; the message says why, naming the constraint. */
export class ConstraintError extends Error {
  /** The constraint as written. */
  readonly constraint: string;
  constructor(constraint: string, why: string) {
    super(`invalid constraint "${constraint}": ${why}`);
    this.name = "ConstraintError";
    this.constraint = constraint;
  }
}

/** The prefix of node-label keys. */
export const NODE_LABEL_PREFIX = "node.labels.";
/** The prefix of engine-label keys. */
export const ENGINE_LABEL_PREFIX = "engine.labels.";

// SwarmKit's patterns (manager/constraint/constraint.go).
const KEY_PATTERN = /^[a-z_][a-z0-9\-_.]+$/i;
const VALUE_PATTERN = /^[a-z0-9:\-_\s.*()?+[\]\\^$|/]+$/i;
const OPERATORS = ["==", "!="] as const;
const KNOWN_KEYS =
  "node.id, node.hostname, node.ip, node.role, node.platform.os, node.platform.arch, " +
  "node.labels.<label> or engine.labels.<label>";

const FIXED_KEYS: ReadonlyMap<string, ConstraintKind> = new Map([
  ["node.id", "id"],
  ["node.hostname", "hostname"],
  ["node.ip", "ip"],
  ["node.role", "role"],
  ["node.platform.os", "os"],
  ["node.platform.arch", "arch"],
]);

/** Parses one constraint; throws {@linkcode ConstraintError} with a message a person can act on. */
export function parseConstraint(text: string): Constraint {
  const op = OPERATORS.find((o) => text.includes(o));
  if (op === undefined) {
    throw new ConstraintError(text, `expected one operator from ${OPERATORS.join(", ")}`);
  }
  const at = text.indexOf(op);
  const key = text.slice(0, at).trim();
  const value = text.slice(at + op.length).trim();
  if (!KEY_PATTERN.test(key)) {
    throw new ConstraintError(
      text,
      key === "" ? "the key is missing" : `key '${key}' is invalid`,
    );
  }
  if (!VALUE_PATTERN.test(value)) {
    throw new ConstraintError(
      text,
      value === "" ? "the value is missing" : `value '${value}' is invalid`,
    );
  }
  const lower = key.toLowerCase();
  let kind = FIXED_KEYS.get(lower);
  let label = "";
  if (kind === undefined) {
    if (lower.startsWith(NODE_LABEL_PREFIX) && key.length > NODE_LABEL_PREFIX.length) {
      kind = "nodeLabel";
      label = key.slice(NODE_LABEL_PREFIX.length);
    } else if (lower.startsWith(ENGINE_LABEL_PREFIX) && key.length > ENGINE_LABEL_PREFIX.length) {
      kind = "engineLabel";
      label = key.slice(ENGINE_LABEL_PREFIX.length);
    } else {
      throw new ConstraintError(text, `unknown key '${key}' (use ${KNOWN_KEYS})`);
    }
  }
  if (kind === "ip" && parseAddressOrSubnet(value) === undefined) {
    throw new ConstraintError(text, `'${value}' is not an IP address or a CIDR subnet`);
  }
  return { text: text.trim(), key, kind, label, op, value, folded: value.toLowerCase() };
}

/** Parses a list of constraints; throws {@linkcode ConstraintError} at the first bad one. */
export function parseConstraints(texts: readonly string[]): Constraint[] {
  return texts.map(parseConstraint);
}

/** The value of the node property a constraint reads ("" when the node lacks it). */
export function constraintSubject(c: Constraint, node: NodeRecord): string {
  switch (c.kind) {
    case "id":
      return node.id;
    case "hostname":
      return node.description.hostname;
    case "ip":
      return node.status.addr;
    case "role":
      return node.role;
    case "os":
      return node.description.platform.os;
    case "arch":
      return node.description.platform.architecture;
    case "nodeLabel":
      return node.spec.labels[c.label] ?? "";
    case "engineLabel":
      return node.description.engine.labels[c.label] ?? "";
  }
}

/** Whether a node satisfies one constraint. */
export function constraintMatches(c: Constraint, node: NodeRecord): boolean {
  if (c.kind === "ip") return ipMatches(c, node.status.addr);
  const equal = constraintSubject(c, node).toLowerCase() === c.folded;
  return c.op === "==" ? equal : !equal;
}

/** The first constraint a node does not satisfy, if any. */
export function firstUnmet(
  constraints: readonly Constraint[],
  node: NodeRecord,
): Constraint | undefined {
  for (const c of constraints) if (!constraintMatches(c, node)) return c;
  return undefined;
}

/**
 * Whether a node satisfies every constraint written in `texts`. A list that does not parse
 * matches no node.
 */
export function nodeMatchesConstraints(node: NodeRecord, texts: readonly string[]): boolean {
  if (texts.length === 0) return true;
  let parsed: Constraint[];
  try {
    parsed = parseConstraints(texts);
  } catch (err) {
    if (err instanceof ConstraintError) return false;
    throw err;
  }
  return firstUnmet(parsed, node) === undefined;
}

// ---------------------------------------------------------------------------------------------
// node.ip: addresses and subnets, IPv4 and IPv6 (IPv4 is compared as its IPv4-mapped IPv6 form,
// as Go's net package does).

interface Subnet {
  bytes: Uint8Array;
  /** Prefix length in bits over the 16-byte form; 128 for a single address. */
  bits: number;
}

function ipMatches(c: Constraint, addr: string): boolean {
  const want = parseAddressOrSubnet(c.value);
  const have = parseIP(stripPort(addr));
  // SwarmKit: a node without a readable address is "not equal" / "not within".
  const within = want !== undefined && have !== undefined && inSubnet(have, want);
  return c.op === "==" ? within : !within;
}

/** Drops a `:port` from `1.2.3.4:2377` or `[::1]:2377`; leaves a bare address alone. */
function stripPort(addr: string): string {
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(addr);
  if (bracket) return bracket[1];
  const v4port = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(addr);
  return v4port ? v4port[1] : addr;
}

function inSubnet(ip: Uint8Array, net: Subnet): boolean {
  for (let bit = 0; bit < net.bits; bit += 8) {
    const take = Math.min(8, net.bits - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((ip[bit >> 3] & mask) !== (net.bytes[bit >> 3] & mask)) return false;
  }
  return true;
}

function parseAddressOrSubnet(text: string): Subnet | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) {
    const bytes = parseIP(text);
    return bytes && { bytes, bits: 128 };
  }
  const bytes = parseIP(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (bytes === undefined || !/^\d{1,3}$/.test(lenText)) return undefined;
  const v4 = !text.slice(0, slash).includes(":");
  const len = Number(lenText);
  if (len > (v4 ? 32 : 128)) return undefined;
  return { bytes, bits: v4 ? 96 + len : len };
}

/** The 16-byte form of an IPv4 or IPv6 address, or `undefined`. */
export function parseIP(text: string): Uint8Array | undefined {
  if (!text.includes(":")) {
    const v4 = parseIPv4(text);
    if (v4 === undefined) return undefined;
    const out = new Uint8Array(16);
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(v4, 12);
    return out;
  }
  let head = text;
  let tail4: number[] | undefined;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    tail4 = parseIPv4(text.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    head = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...left, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...right];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-f]{1,4}$/i.test(all[i])) return undefined;
    const n = parseInt(all[i], 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  if (tail4) out.set(tail4, 12);
  return out;
}

function parseIPv4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    out.push(Number(p));
  }
  return out;
}
