/**
 * Placement constraints, shared by the scheduler (where may a task go) and the global
 * orchestrator (which nodes get a task): one parser, so both always agree.
 *
 * @module
 */
export * from "./scheduler/constraints.ts";
