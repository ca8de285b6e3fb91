/**
 * Error codes every tollgate method may throw, and how a caller reads them.
 *
 * Expected outcomes (a denied request, insufficient credits) are values, never errors.
 * A thrown error means a contract violation or a fault. Its code travels twice: as an
 * own `code` property and as a `[CODE]` prefix of the message, so it survives Workers
 * RPC, capnweb, and logging pipelines that keep only the message. Callers test the
 * code with {@link errorCodeOf}; `instanceof` does not survive a trip across RPC.
 */
export const ERROR_CODES = [
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "CONFLICT",
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "UNIMPLEMENTED",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** One flattened validation problem: where (dot path, `""` for the root) and what. */
export interface ErrorDetail {
  path: string;
  message: string;
}

/** The shape of a tollgate error after it has crossed any RPC boundary. */
export interface ServiceErrorLike {
  name: string;
  message: string;
  code: ErrorCode;
  details?: ErrorDetail[];
}

/** A tollgate error as a value, for one item of a batch that answers each item apart. `message` has no `[CODE]` prefix. */
export interface ErrorValue {
  code: ErrorCode;
  message: string;
  details?: ErrorDetail[];
}

const KNOWN = new Set<string>(ERROR_CODES);
// An error passed on by one more RPC hop (such as the assets router in front of a Worker with
// static assets, in local development) arrives as "ServiceError: [CODE] …".
const PREFIX = /^(?:[A-Za-z]*Error: )?\[([A-Z_]+)\]/;

/**
 * The tollgate error code carried by `error`, or `undefined` when it is not a tollgate
 * error (a network failure, say). Reads the own `code` property first and falls back to
 * the message prefix, which is all that some transports keep.
 */
export function errorCodeOf(error: unknown): ErrorCode | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && KNOWN.has(code)) return code as ErrorCode;
  const message = (error as { message?: unknown }).message;
  if (typeof message !== "string") return undefined;
  const match = PREFIX.exec(message);
  return match && KNOWN.has(match[1]!) ? (match[1] as ErrorCode) : undefined;
}

/** True when `error` is a tollgate error with the given code. */
export function hasErrorCode(error: unknown, code: ErrorCode): boolean {
  return errorCodeOf(error) === code;
}
