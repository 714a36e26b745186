/**
 * Placement constraints, as Docker writes them: `node.id`, `node.hostname`, `node.role`,
 * `node.platform.os`, `node.platform.arch`, `node.labels.KEY`, `engine.labels.KEY`, compared with
 * `==` or `!=`. Shared by the scheduler (where may a task go) and the global orchestrator (which
 * nodes get a task). Pure.
 *
 * @module
 */
import type { NodeRecord } from "../state.ts";

/** A parsed constraint. */
export interface Constraint {
  key: string;
  op: "==" | "!=";
  value: string;
}

/** Parses `key==value` or `key!=value`; throws a RangeError naming what is wrong. */
export function parseConstraint(text: string): Constraint {
  const m = /^\s*([A-Za-z0-9_.-]+)\s*(==|!=)\s*(.*?)\s*$/.exec(text);
  if (!m || m[3] === "") {
    throw new RangeError(
      `invalid constraint "${text}": expected KEY==VALUE or KEY!=VALUE, e.g. node.role==manager`,
    );
  }
  const key = m[1];
  if (
    !["node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch"].includes(
      key,
    ) && !/^(node|engine)\.labels\.[^.].*$/.test(key)
  ) {
    throw new RangeError(
      `invalid constraint "${text}": unknown key "${key}" (use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.KEY or engine.labels.KEY)`,
    );
  }
  return { key, op: m[2] as "==" | "!=", value: m[3] };
}

/** The node's value for a constraint key (undefined when it has none, e.g. a missing label). */
export function nodeValue(node: NodeRecord, key: string): string | undefined {
  switch (key) {
    case "node.id":
      return node.id;
    case "node.hostname":
      return node.description.hostname;
    case "node.role":
      return node.role;
    case "node.platform.os":
      return node.description.platform.os;
    case "node.platform.arch":
      return node.description.platform.architecture;
  }
  if (key.startsWith("node.labels.")) return node.spec.labels[key.slice(12)];
  if (key.startsWith("engine.labels.")) return node.description.engine.labels[key.slice(14)];
  return undefined;
}

/** Whether a node meets one constraint (values compare case-insensitively, as Docker's). */
export function nodeMeets(node: NodeRecord, c: Constraint): boolean {
  const v = nodeValue(node, c.key);
  const equal = v !== undefined && v.toLowerCase() === c.value.toLowerCase();
  return c.op === "==" ? equal : !equal;
}

/** Whether a node meets every constraint (unparseable ones never match). */
export function nodeMatchesConstraints(node: NodeRecord, constraints: readonly string[]): boolean {
  for (const text of constraints) {
    let c: Constraint;
    try {
      c = parseConstraint(text);
    } catch {
      return false;
    }
    if (!nodeMeets(node, c)) return false;
  }
  return true;
}
