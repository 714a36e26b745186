/**
 * Single-server membership changes: their encoding in `confChange` entries and their effect on
 * a configuration, as pure functions.
 *
 * @module
 */
import type { ConfChange, ConfState, NodeId } from "./types.ts";

const TYPES = ["addNode", "addLearner", "removeNode"] as const;
const VERSION = 1;

/**
 * The bytes of a `confChange` entry: a version byte, the change type, the node id (float64,
 * exact for any safe integer) and the context.
 */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const context = cc.context ?? new Uint8Array();
  const out = new Uint8Array(10 + context.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, VERSION);
  view.setUint8(1, TYPES.indexOf(cc.type));
  view.setFloat64(2, cc.nodeId);
  out.set(context, 10);
  return out;
}

/** Reads the bytes of a `confChange` entry; throws a SyntaxError on bytes it cannot read. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.byteLength < 10 || data[0] !== VERSION) {
    throw new SyntaxError(`Cannot decode a conf change from ${data.byteLength} bytes`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const type = TYPES[view.getUint8(1)];
  const nodeId = view.getFloat64(2);
  if (type === undefined || !Number.isSafeInteger(nodeId) || nodeId <= 0) {
    throw new SyntaxError("Cannot decode a conf change: bad type or node id");
  }
  const cc: ConfChange = data.byteLength > 10
    ? { type, nodeId, context: data.slice(10) }
    : { type, nodeId };
  return cc;
}

/** The configuration after `cc`. Changes that change nothing return an equal configuration. */
export function applyToConfState(cs: ConfState, cc: ConfChange): ConfState {
  const voters = new Set<NodeId>(cs.voters);
  const learners = new Set<NodeId>(cs.learners);
  switch (cc.type) {
    case "addNode":
      learners.delete(cc.nodeId);
      voters.add(cc.nodeId);
      break;
    case "addLearner":
      voters.delete(cc.nodeId);
      learners.add(cc.nodeId);
      break;
    case "removeNode":
      voters.delete(cc.nodeId);
      learners.delete(cc.nodeId);
      break;
  }
  const sorted = (s: Set<NodeId>) => [...s].sort((a, b) => a - b);
  return { voters: sorted(voters), learners: sorted(learners) };
}

/**
 * Why the leader must refuse to propose `cc` against configuration `cs`, or undefined when it
 * may. A committed change is always applied; this check keeps nonsense out of the log.
 */
export function checkConfChange(cs: ConfState, cc: ConfChange): string | undefined {
  if (!Number.isSafeInteger(cc.nodeId) || cc.nodeId <= 0) {
    return `node id ${cc.nodeId} is not a positive integer`;
  }
  if (applyToConfState(cs, cc).voters.length === 0) {
    return `${cc.type} ${cc.nodeId} would leave no voters`;
  }
  return undefined;
}
