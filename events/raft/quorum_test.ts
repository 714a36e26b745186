import assert from "node:assert/strict";
import { committedIndex, majority, voteResult } from "./quorum.ts";

Deno.test("majority: more than half", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4]);
});

Deno.test("committedIndex: the majority-th largest match index of the voters", () => {
  const cases: [voters: number[], match: [number, number][], want: number][] = [
    [[], [], 0],
    [[1], [[1, 5]], 5],
    [[1, 2, 3], [[1, 5], [2, 3], [3, 1]], 3],
    [[1, 2, 3], [[1, 5]], 0], // missing voters count as 0
    [[1, 2, 3, 4], [[1, 9], [2, 8], [3, 1], [4, 1]], 1], // 4 voters need 3
    [[1, 2, 3, 4, 5], [[1, 9], [2, 8], [3, 7], [4, 1], [5, 1]], 7],
    [[1, 2, 3], [[1, 9], [2, 9], [7, 100]], 9], // non-voters are ignored
  ];
  for (const [voters, match, want] of cases) {
    assert.equal(committedIndex(voters, new Map(match)), want, JSON.stringify([voters, match]));
  }
});

Deno.test("voteResult: won, lost or still pending", () => {
  const cases: [voters: number[], votes: [number, boolean][], want: string][] = [
    [[], [], "lost"],
    [[1], [], "pending"],
    [[1], [[1, true]], "won"],
    [[1], [[1, false]], "lost"],
    [[1, 2, 3], [[1, true]], "pending"],
    [[1, 2, 3], [[1, true], [2, true]], "won"],
    [[1, 2, 3], [[1, true], [2, false]], "pending"],
    [[1, 2, 3], [[2, false], [3, false]], "lost"],
    [[1, 2, 3, 4], [[1, true], [2, true]], "pending"],
    [[1, 2, 3, 4], [[1, true], [2, false], [3, false]], "lost"],
    [[1, 2, 3], [[4, true], [5, true], [1, true]], "pending"], // non-voters do not count
  ];
  for (const [voters, votes, want] of cases) {
    assert.equal(voteResult(voters, new Map(votes)), want, JSON.stringify([voters, votes]));
  }
});
