/**
 * One-line text for messages, entries and states, and a few lines for a Ready, in the format
 * of etcd-io/raft's `Describe*` (so its transcripts can be ported), for test transcripts and
 * the simulator's `--trace`:
 *
 * ```text
 * 1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal "foo"]
 * ```
 *
 * @module
 */
import { decodeConfChange } from "./confchange.ts";
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  Message,
  ReadState,
  Ready,
  Role,
  Snapshot,
  SoftState,
} from "./types.ts";

/** Turns an entry's or a context's bytes into text. */
export type DataFormatter = (data: Uint8Array) => string;

const printable = /^[\x20-\x7e]*$/;
const decoder = new TextDecoder();

/**
 * The default {@linkcode DataFormatter}: printable ASCII as a quoted string, anything else as
 * hex (the first 32 bytes, then the length).
 */
export function formatData(data: Uint8Array): string {
  const text = decoder.decode(data);
  if (printable.test(text)) return JSON.stringify(text);
  let hex = "";
  for (const b of data.subarray(0, 32)) hex += b.toString(16).padStart(2, "0");
  return data.byteLength > 32 ? `0x${hex}…(${data.byteLength} bytes)` : `0x${hex}`;
}

const ROLE_NAMES: Record<Role, string> = {
  follower: "StateFollower",
  preCandidate: "StatePreCandidate",
  candidate: "StateCandidate",
  leader: "StateLeader",
};

/** `addNode 4`, with the context if any. */
export function describeConfChange(cc: ConfChange, f: DataFormatter = formatData): string {
  const context = cc.context && cc.context.byteLength > 0 ? ` ${f(cc.context)}` : "";
  return `${cc.type} ${cc.nodeId}${context}`;
}

/** `1/3 EntryNormal "foo"` or `2/7 EntryConfChange addNode 4`. */
export function describeEntry(e: Entry, f: DataFormatter = formatData): string {
  if (e.type === "confChange") {
    let text: string;
    try {
      text = describeConfChange(decodeConfChange(e.data), f);
    } catch {
      text = `<undecodable ${f(e.data)}>`;
    }
    return `${e.term}/${e.index} EntryConfChange ${text}`;
  }
  return `${e.term}/${e.index} EntryNormal ${f(e.data)}`;
}

/** Entries, one per line. */
export function describeEntries(entries: readonly Entry[], f: DataFormatter = formatData): string {
  return entries.map((e) => describeEntry(e, f) + "\n").join("");
}

/** `Voters:[1 2 3] Learners:[4]`. */
export function describeConfState(cs: ConfState): string {
  return `Voters:[${cs.voters.join(" ")}] Learners:[${cs.learners.join(" ")}]`;
}

/** `Index:5 Term:2 ConfState:Voters:[1 2 3] Learners:[]`. */
export function describeSnapshot(s: Snapshot): string {
  const m = s.metadata;
  return `Index:${m.index} Term:${m.term} ConfState:${describeConfState(m.confState)}`;
}

/** `Term:2 Vote:1 Commit:5`. */
export function describeHardState(hs: HardState): string {
  return `Term:${hs.term} Vote:${hs.vote} Commit:${hs.commit}`;
}

/** `Lead:1 State:StateLeader`. */
export function describeSoftState(ss: SoftState): string {
  return `Lead:${ss.lead} State:${ROLE_NAMES[ss.role]}`;
}

/** `Index:5 Context:"req-1"`. */
export function describeReadState(rs: ReadState, f: DataFormatter = formatData): string {
  return `Index:${rs.index} Context:${f(rs.context)}`;
}

/** One line: `1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal "foo"]`. */
export function describeMessage(m: Message, f: DataFormatter = formatData): string {
  const index = "index" in m ? m.index : 0;
  const logTerm = "logTerm" in m ? m.logTerm : 0;
  let s = `${m.from}->${m.to} ${m.type} Term:${m.term} Log:${logTerm}/${index}`;
  if ("reject" in m && m.reject) {
    s += ` Rejected (Hint: ${"rejectHint" in m ? m.rejectHint : 0})`;
  }
  if ("commit" in m && m.commit !== 0) s += ` Commit:${m.commit}`;
  if ("entries" in m && m.entries.length > 0) {
    s += ` Entries:[${m.entries.map((e) => describeEntry(e, f)).join(", ")}]`;
  }
  if ("transfer" in m && m.transfer) s += " Transfer";
  if ("context" in m && m.context !== undefined) s += ` Context:${f(m.context)}`;
  if ("snapshot" in m) s += ` Snapshot: ${describeSnapshot(m.snapshot)}`;
  return s;
}

/**
 * A Ready, one line per part (etcd's layout), or `<empty Ready>`:
 *
 * ```text
 * Ready MustSync=true:
 * Lead:1 State:StateLeader
 * HardState Term:1 Vote:1 Commit:0
 * Entries:
 * 1/1 EntryNormal ""
 * Messages:
 * 1->2 MsgApp Term:1 Log:0/0 Entries:[1/1 EntryNormal ""]
 * ```
 */
export function describeReady(rd: Ready, f: DataFormatter = formatData): string {
  let s = "";
  if (rd.softState) s += describeSoftState(rd.softState) + "\n";
  if (rd.hardState) s += `HardState ${describeHardState(rd.hardState)}\n`;
  if (rd.readStates.length > 0) {
    s += `ReadStates ${rd.readStates.map((rs) => describeReadState(rs, f)).join(", ")}\n`;
  }
  if (rd.entries.length > 0) s += "Entries:\n" + describeEntries(rd.entries, f);
  if (rd.snapshot) s += `Snapshot ${describeSnapshot(rd.snapshot)}\n`;
  if (rd.committedEntries.length > 0) {
    s += "CommittedEntries:\n" + describeEntries(rd.committedEntries, f);
  }
  if (rd.messages.length > 0) {
    s += "Messages:\n" + rd.messages.map((m) => describeMessage(m, f) + "\n").join("");
  }
  return s === "" ? "<empty Ready>" : `Ready MustSync=${rd.mustSync}:\n${s.trimEnd()}`;
}
