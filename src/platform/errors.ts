import { type ErrorCode, type ErrorDetail, type ErrorValue, errorCodeOf } from "../../rpc/errors";

export { type ErrorCode, type ErrorDetail, type ErrorValue, errorCodeOf, hasErrorCode } from "../../rpc/errors";

/**
 * The one error type tollgate throws on purpose. `code` is an own property and the message
 * starts with `[CODE]`, so both survive Workers RPC (enhanced error serialization) and
 * capnweb. Never test it with `instanceof` once it has crossed RPC: use `errorCodeOf`.
 */
export class ServiceError extends Error {
  readonly code: ErrorCode;
  readonly details?: ErrorDetail[];

  constructor(code: ErrorCode, message: string, details?: ErrorDetail[]) {
    super(`[${code}] ${message}`);
    this.name = "ServiceError";
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

export const invalidArgument = (message: string, details?: ErrorDetail[]) => new ServiceError("INVALID_ARGUMENT", message, details);

export const notFound = (message: string) => new ServiceError("NOT_FOUND", message);

export const conflict = (message: string) => new ServiceError("CONFLICT", message);

/** The `[CODE] ` a tollgate error's message starts with. */
const CODE_PREFIX = /^\[[A-Z_]+\]\s*/;

/**
 * The error an outside caller may see: tollgate errors keep their code, message and
 * details; anything else becomes a bare `[INTERNAL]` so no internal detail leaks.
 * The result never carries a stack.
 */
export function toPublicError(error: unknown): ServiceError {
  const { code, message, details } = toErrorValue(error);
  return withoutStack(new ServiceError(code, message, details));
}

/** What an outside caller may see of `error` (as `toPublicError` keeps it), as a value: one item's error in a batch. */
export function toErrorValue(error: unknown): ErrorValue {
  const code = errorCodeOf(error);
  if (code === undefined || code === "INTERNAL") return { code: "INTERNAL", message: "internal error" };
  const source = error as { message: string; details?: ErrorDetail[] };
  const message = source.message.replace(CODE_PREFIX, "");
  return { code, message, ...(source.details === undefined ? {} : { details: source.details }) };
}

/** The error an `ErrorValue` stood for, to throw where the item's caller waits. */
export function fromErrorValue(value: ErrorValue): ServiceError {
  return new ServiceError(value.code, value.message, value.details);
}

function withoutStack(error: ServiceError): ServiceError {
  Object.defineProperty(error, "stack", { value: "", enumerable: false, writable: true });
  return error;
}
