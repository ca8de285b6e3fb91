import { newWorkersRpcResponse, type RpcSessionOptions } from "capnweb";
import type { Env } from "../env";
import { errorCodeOf, toPublicError } from "../errors";
import { TollgateRpcRoot } from "./rpc-root";

/** Limits on what one capnweb peer may send: a message, its nesting, its big integers. */
export const RPC_LIMITS = { maxMessageSize: 1_048_576, maxDepth: 64, maxBigIntDigits: 64 } as const;

const SESSION_OPTIONS: RpcSessionOptions = {
  limits: RPC_LIMITS,
  // Outside callers get the code and message of tollgate errors and nothing else: no
  // stack, and a bare INTERNAL for anything unexpected (which is logged here instead).
  onSendError(error) {
    if (errorCodeOf(error) === undefined) console.error("rpc: unexpected error", error);
    return toPublicError(error);
  },
};

/** Serves a capnweb session (HTTP batch or WebSocket upgrade) at `/rpc`. */
export async function serveRpc(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  const declaredLength = Number(request.headers.get("content-length") ?? "0");
  if (declaredLength > RPC_LIMITS.maxMessageSize) {
    return Response.json({ error: { code: "RESOURCE_EXHAUSTED", message: "request body too large" } }, { status: 413 });
  }
  return newWorkersRpcResponse(request, new TollgateRpcRoot(env, (promise) => ctx.waitUntil(promise)), SESSION_OPTIONS);
}
