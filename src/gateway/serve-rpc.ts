import { newWorkersRpcResponse, type RpcSessionOptions } from "capnweb";
import type { Env } from "../platform/env";
import { ServiceError, errorCodeOf, toPublicError } from "../platform/errors";
import { TollgateRpcRoot } from "./rpc-root";

/** Limits on what one capnweb peer may send: a message, its nesting, its big integers. */
export const RPC_LIMITS = { maxMessageSize: 1_048_576, maxDepth: 64, maxBigIntDigits: 64 } as const;

/** How capnweb words the errors of RPC_LIMITS (depth, size, big integers). */
const LIMIT_MESSAGE = /exceed(?:s|ed) maximum/i;

const SESSION_OPTIONS: RpcSessionOptions = {
  limits: RPC_LIMITS,
  // Outside callers get the code and message of tollgate errors and nothing else: no
  // stack, and a bare INTERNAL for anything unexpected (which is logged here instead).
  onSendError(error) {
    // capnweb refuses a message past RPC_LIMITS with a bare TypeError; that is the caller's
    // doing, so it earns RESOURCE_EXHAUSTED rather than INTERNAL and an error log.
    if (isLimitError(error)) return new ServiceError("RESOURCE_EXHAUSTED", error.message);
    if (errorCodeOf(error) === undefined) console.error("rpc: unexpected error", error);
    return toPublicError(error);
  },
};

/** Serves a capnweb session (HTTP batch or WebSocket upgrade) at `/rpc`. */
export async function serveRpc(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  const declaredLength = Number(request.headers.get("content-length") ?? "0");
  if (declaredLength > RPC_LIMITS.maxMessageSize) {
    return tooLarge("request body too large");
  }
  try {
    return await newWorkersRpcResponse(request, new TollgateRpcRoot(env, (promise) => ctx.waitUntil(promise)), SESSION_OPTIONS);
  } catch (error) {
    // An HTTP batch past RPC_LIMITS (too deep, a body longer than it declared) fails as a
    // whole; it is refused like an oversized body instead of surfacing as an uncaught 500.
    if (isLimitError(error)) return tooLarge(error.message);
    throw error;
  }
}

function isLimitError(error: unknown): error is TypeError {
  return error instanceof TypeError && LIMIT_MESSAGE.test(error.message);
}

function tooLarge(message: string): Response {
  return Response.json({ error: { code: "RESOURCE_EXHAUSTED", message } }, { status: 413 });
}
