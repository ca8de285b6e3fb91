import { errorCodeOf } from "../errors";
import { OK } from "./model";

/** What a finished call reports. */
export interface CallOutcome {
  method: string;
  code: string;
  latencyMs: number;
  rowsRead: number;
  rowsWritten: number;
  endMs: number;
}

/** The outcome code of a throw: its ServiceError code, or INTERNAL for anything else. */
export function outcomeCode(error: unknown): string {
  return errorCodeOf(error) ?? "INTERNAL";
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

/**
 * Runs `body` and reports how it ended through `finish`, synchronously for a synchronous method
 * (so a sync RPC method stays sync) and after settling for an async one.
 */
export function metered<T>(body: () => T, start: number, finish: (code: string, start: number) => void): T {
  let result: T;
  try {
    result = body();
  } catch (error) {
    finish(outcomeCode(error), start);
    throw error;
  }
  if (!isThenable(result)) {
    finish(OK, start);
    return result;
  }
  return Promise.resolve(result).then(
    (value) => {
      finish(OK, start);
      return value;
    },
    (error: unknown) => {
      finish(outcomeCode(error), start);
      throw error;
    },
  ) as T;
}
