import assert from "node:assert/strict";
import { bytes } from "./_network_test_helper.ts";
import {
  applyToConfState,
  checkConfChange,
  decodeConfChange,
  encodeConfChange,
} from "./confchange.ts";
import type { ConfChange } from "./types.ts";

Deno.test("conf change: encoding round-trips", () => {
  const changes: ConfChange[] = [
    { type: "addNode", nodeId: 1 },
    { type: "addLearner", nodeId: 2 ** 40 + 3 },
    { type: "removeNode", nodeId: 7, context: bytes("10.0.0.7:4242") },
  ];
  for (const cc of changes) assert.deepEqual(decodeConfChange(encodeConfChange(cc)), cc);
  assert.throws(() => decodeConfChange(new Uint8Array([1, 2])), SyntaxError);
  assert.throws(() => decodeConfChange(new Uint8Array(10)), SyntaxError, "version 0");
});

Deno.test("conf change: single-server transitions of a configuration", () => {
  const cs = { voters: [1, 2, 3], learners: [4] };
  assert.deepEqual(applyToConfState(cs, { type: "addNode", nodeId: 4 }), {
    voters: [1, 2, 3, 4],
    learners: [],
  });
  assert.deepEqual(applyToConfState(cs, { type: "addLearner", nodeId: 5 }), {
    voters: [1, 2, 3],
    learners: [4, 5],
  });
  assert.deepEqual(applyToConfState(cs, { type: "addLearner", nodeId: 3 }), {
    voters: [1, 2],
    learners: [3, 4],
  });
  assert.deepEqual(applyToConfState(cs, { type: "removeNode", nodeId: 4 }), {
    voters: [1, 2, 3],
    learners: [],
  });
  assert.deepEqual(applyToConfState(cs, { type: "addNode", nodeId: 1 }), cs);
});

Deno.test("conf change: the leader refuses changes that leave no voters", () => {
  assert.equal(
    checkConfChange({ voters: [1, 2], learners: [] }, { type: "removeNode", nodeId: 2 }),
    undefined,
  );
  assert.match(
    checkConfChange({ voters: [1], learners: [] }, { type: "removeNode", nodeId: 1 })!,
    /no voters/,
  );
  assert.match(
    checkConfChange({ voters: [1], learners: [] }, { type: "addNode", nodeId: 0 })!,
    /positive/,
  );
});
