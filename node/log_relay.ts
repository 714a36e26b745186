/**
 * The manager's side of reading a task's output on another node: it asks the node's agent over
 * its session (`logs`), and passes on the `log` frames that come back, acknowledging each once
 * its lines are taken (`logs-ack`), so that an agent never has more than
 * {@linkcode LOG_WINDOW_CHUNKS} frames of one stream waiting in the manager's memory however slow
 * the reader is. A reader that stops early cancels the stream (`logs-cancel`); a session that
 * ends ends its streams with an error.
 *
 * The dispatcher owns one relay: it routes `log` frames to {@linkcode LogRelay.receive} and tells
 * it when a session closes.
 *
 * @module
 */
import type { LogLine } from "../actors/agent/log_capture.ts";
import type { LogChunk, ManagerMessage } from "./agent_protocol.ts";

/** What to read of a task's output on its node. */
export interface RemoteLogRequest {
  readonly taskId: string;
  /** The last `tail` lines only (all when absent). */
  readonly tail?: number;
  /** Lines from this time on (ms since the epoch). */
  readonly since?: number;
  /** Keep passing on new lines until the task's output ends or the read is stopped. */
  readonly follow?: boolean;
}

/**
 * Sends `message` on the open session of `nodeId`; returns that session's id, or undefined when
 * the node has none.
 */
export type SendToNode = (nodeId: string, message: ManagerMessage) => string | undefined;

/** Raised when the node of a task cannot be asked for its output. */
export class NodeLogsUnavailable extends Error {
  /** Why, naming the node. */
  constructor(message: string) {
    super(message);
    this.name = "NodeLogsUnavailable";
  }
}

interface Stream {
  readonly sessionId: string;
  readonly nodeId: string;
  readonly chunks: LogLine[][];
  ended: boolean;
  error: string | undefined;
  wake: (() => void) | undefined;
}

/** Log streams from agents to the manager's readers. */
export class LogRelay {
  readonly #send: SendToNode;
  readonly #streams = new Map<number, Stream>();
  #next = 0;

  /** A relay that reaches nodes through `send`. */
  constructor(send: SendToNode) {
    this.#send = send;
  }

  /** Streams open now (for tests and diagnostics). */
  get openStreams(): number {
    return this.#streams.size;
  }

  /**
   * Reads a task's output from node `nodeId`. Throws {@linkcode NodeLogsUnavailable} when the
   * node has no session, or when it ends (or the agent fails) before the output does.
   */
  async *read(
    nodeId: string,
    request: RemoteLogRequest,
    signal?: AbortSignal,
  ): AsyncGenerator<LogLine> {
    const id = ++this.#next;
    const sessionId = this.#send(nodeId, {
      t: "logs",
      stream: id,
      taskId: request.taskId,
      tail: request.tail,
      since: request.since,
      follow: request.follow ?? false,
    });
    if (sessionId === undefined) {
      throw new NodeLogsUnavailable(
        `node ${nodeId} is not connected: the logs of task ${request.taskId} cannot be read`,
      );
    }
    const stream: Stream = {
      sessionId,
      nodeId,
      chunks: [],
      ended: false,
      error: undefined,
      wake: undefined,
    };
    this.#streams.set(id, stream);
    const onAbort = () => stream.wake?.();
    signal?.addEventListener("abort", onAbort);
    try {
      while (!signal?.aborted) {
        const chunk = stream.chunks.shift();
        if (chunk !== undefined) {
          for (const line of chunk) {
            if (signal?.aborted) return;
            yield line;
          }
          if (!stream.ended) this.#send(nodeId, { t: "logs-ack", stream: id });
        } else if (stream.ended) {
          if (stream.error !== undefined) {
            throw new NodeLogsUnavailable(
              `reading the logs of task ${request.taskId} on node ${nodeId} failed: ${stream.error}`,
            );
          }
          return;
        } else {
          await new Promise<void>((resolve) => stream.wake = resolve);
          stream.wake = undefined;
        }
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      this.#streams.delete(id);
      if (!stream.ended) this.#send(nodeId, { t: "logs-cancel", stream: id });
    }
  }

  /** A `log` frame from the agent of session `sessionId`. Frames of unknown streams are dropped. */
  receive(sessionId: string, chunk: LogChunk): void {
    const stream = this.#streams.get(chunk.stream);
    if (stream === undefined || stream.sessionId !== sessionId || stream.ended) return;
    if (chunk.lines.length > 0) stream.chunks.push(chunk.lines);
    if (chunk.end) {
      stream.ended = true;
      stream.error = chunk.error;
    }
    stream.wake?.();
  }

  /** Session `sessionId` closed: its streams end with an error. */
  sessionClosed(sessionId: string, why: string): void {
    for (const stream of this.#streams.values()) {
      if (stream.sessionId !== sessionId || stream.ended) continue;
      stream.ended = true;
      stream.error = `the node's session ended (${why})`;
      stream.wake?.();
    }
  }
}
