import assert from "node:assert/strict";
import { bytes } from "./_network_test_helper.ts";
import { encodeConfChange } from "./confchange.ts";
import {
  describeEntry,
  describeMessage,
  describeReady,
  describeSnapshot,
  formatData,
} from "./describe.ts";
import type { Entry } from "./types.ts";

const foo: Entry = { term: 1, index: 3, type: "normal", data: bytes("foo") };

Deno.test("describeMessage: etcd's one-line format", () => {
  assert.equal(
    describeMessage({
      type: "MsgApp",
      from: 1,
      to: 2,
      term: 1,
      index: 2,
      logTerm: 1,
      entries: [foo],
      commit: 2,
    }),
    '1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal "foo"]',
  );
  assert.equal(
    describeMessage({
      type: "MsgAppResp",
      from: 2,
      to: 1,
      term: 3,
      index: 7,
      reject: true,
      rejectHint: 4,
      logTerm: 2,
    }),
    "2->1 MsgAppResp Term:3 Log:2/7 Rejected (Hint: 4)",
  );
  assert.equal(
    describeMessage({
      type: "MsgVote",
      from: 3,
      to: 1,
      term: 5,
      index: 9,
      logTerm: 4,
      transfer: true,
    }),
    "3->1 MsgVote Term:5 Log:4/9 Transfer",
  );
  assert.equal(
    describeMessage({
      type: "MsgHeartbeat",
      from: 1,
      to: 2,
      term: 2,
      commit: 0,
      context: bytes("r"),
    }),
    '1->2 MsgHeartbeat Term:2 Log:0/0 Context:"r"',
  );
  assert.equal(
    describeMessage({
      type: "MsgSnap",
      from: 1,
      to: 3,
      term: 2,
      snapshot: {
        metadata: { index: 11, term: 2, confState: { voters: [1, 2, 3], learners: [4] } },
        data: new Uint8Array(),
      },
    }),
    "1->3 MsgSnap Term:2 Log:0/0 Snapshot: Index:11 Term:2 ConfState:Voters:[1 2 3] Learners:[4]",
  );
});

Deno.test("describeEntry: conf changes decoded, binary data in hex", () => {
  const cc: Entry = {
    term: 2,
    index: 7,
    type: "confChange",
    data: encodeConfChange({ type: "addLearner", nodeId: 4 }),
  };
  assert.equal(describeEntry(cc), "2/7 EntryConfChange addLearner 4");
  assert.equal(formatData(new Uint8Array([0, 255])), "0x00ff");
  assert.match(formatData(new Uint8Array(40)), /^0x0{64}…\(40 bytes\)$/);
  assert.equal(describeEntry(foo, (d) => `<${d.byteLength}>`), "1/3 EntryNormal <3>");
});

Deno.test("describeReady: one line per part, or empty", () => {
  assert.equal(
    describeReady({
      entries: [],
      committedEntries: [],
      messages: [],
      readStates: [],
      mustSync: false,
    }),
    "<empty Ready>",
  );
  const snap = {
    metadata: { index: 5, term: 2, confState: { voters: [1], learners: [] } },
    data: new Uint8Array(),
  };
  assert.equal(describeSnapshot(snap), "Index:5 Term:2 ConfState:Voters:[1] Learners:[]");
  assert.equal(
    describeReady({
      softState: { lead: 0, role: "preCandidate" },
      entries: [],
      snapshot: snap,
      committedEntries: [foo],
      messages: [{ type: "MsgPreVote", from: 1, to: 2, term: 3, index: 5, logTerm: 2 }],
      readStates: [{ index: 3, context: bytes("a") }],
      mustSync: true,
    }),
    [
      "Ready MustSync=true:",
      "Lead:0 State:StatePreCandidate",
      'ReadStates Index:3 Context:"a"',
      "Snapshot Index:5 Term:2 ConfState:Voters:[1] Learners:[]",
      "CommittedEntries:",
      '1/3 EntryNormal "foo"',
      "Messages:",
      "1->2 MsgPreVote Term:3 Log:2/5",
    ].join("\n"),
  );
});
