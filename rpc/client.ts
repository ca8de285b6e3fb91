import { newHttpBatchRpcSession, newWebSocketRpcSession, type RpcStub } from "capnweb";
import type { AccountApi, AdminApi, TollgateRpc } from "./admin";

/**
 * - `"http-batch"`: every call made before the first `await` travels in one HTTP request;
 *   the session ends with that batch. Works anywhere `fetch` does (Node 18+, browsers).
 * - `"websocket"`: one long-lived session for many calls; dispose the stub to close it.
 *   Needs a global `WebSocket` (browsers, Node 22+) or the `webSocket` option.
 */
export type Transport = "http-batch" | "websocket";

export interface ConnectOptions {
  /** The admin token (`TOLLGATE_ADMIN_TOKEN`) for `AdminApi`, or an API key for its own account's `AccountApi`. */
  token: string;
  transport?: Transport;
  /** An already-created WebSocket to use instead of `new WebSocket(url)` (e.g. from the `ws` package). */
  webSocket?: WebSocket;
}

/**
 * Connects to a tollgate `/rpc` endpoint and authenticates in the same round trip:
 * the returned stub is the pipelined result of `authenticate(token)`, so
 * `connect(url, o).rateLimits().check(...)` costs one request.
 *
 * A wrong token rejects the first awaited call with code `UNAUTHENTICATED`.
 */
export function connect<Api extends AdminApi | AccountApi = AdminApi>(url: string | URL, options: ConnectOptions): RpcStub<Api> {
  const transport = options.transport ?? "http-batch";
  const href = url.toString();
  const root =
    transport === "websocket"
      ? newWebSocketRpcSession<TollgateRpc>(options.webSocket ?? toWebSocketUrl(href))
      : newHttpBatchRpcSession<TollgateRpc>(href);
  return root.authenticate(options.token) as unknown as RpcStub<Api>;
}

function toWebSocketUrl(href: string): string {
  return href.replace(/^http(s?):/, "ws$1:");
}
