import { RpcTarget } from "cloudflare:workers";
import type { TollgateRpc } from "../../rpc/admin";
import type { Env } from "../platform/env";
import { ServiceError } from "../platform/errors";
import { parseKey } from "../credits/keys";
import { AccountApiTarget } from "./account-api";
import { AdminApiTarget } from "../admin/admin-api";
import { secretsEqual } from "./constant-time";
import type { WaitUntil } from "./service";

/** Longest token accepted; anything longer is refused before it is hashed. */
const MAX_TOKEN_LENGTH = 4_096;

/**
 * The main object of a capnweb session at `/rpc`. Nothing is reachable before
 * `authenticate`, which exchanges a token for a capability: the admin token for `AdminApi`,
 * an API key for its own account's `AccountApi` (the capability *is* the
 * permission: there is no ambient session state to forget to check).
 */
export class TollgateRpcRoot extends RpcTarget implements TollgateRpc {
  readonly #env: Env;
  readonly #waitUntil: WaitUntil;

  constructor(env: Env, waitUntil: WaitUntil) {
    super();
    this.#env = env;
    this.#waitUntil = waitUntil;
  }

  async authenticate(token: string): Promise<AdminApiTarget | AccountApiTarget> {
    if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw unauthenticated();
    }
    const adminToken = this.#env.TOLLGATE_ADMIN_TOKEN;
    if (adminToken !== undefined && adminToken.length > 0 && (await secretsEqual(token, adminToken))) {
      return new AdminApiTarget(this.#env, this.#waitUntil);
    }
    // An API key: checked locally (format, checksum), then by its own account's object.
    const key = parseKey(token);
    if (key !== undefined) {
      const verdict = await this.#env.CREDIT_LEDGER.getByName(key.accountId).verifyKey({ key: token });
      if (verdict.valid) return new AccountApiTarget(this.#env, token, verdict.accountId, verdict.keyId);
    }
    throw unauthenticated();
  }
}

function unauthenticated(): ServiceError {
  return new ServiceError("UNAUTHENTICATED", "the token is not valid");
}
