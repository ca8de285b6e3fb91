import { RpcTarget } from "cloudflare:workers";
import * as v from "valibot";
import type { AccountApi, AccountEntriesInput, AccountUsageInput, Principal } from "../../rpc/admin";
import type { Account, Balance, EntriesPage, KeyInfo, UsageReport } from "../../rpc/credits";
import type { Env } from "../platform/env";
import { ServiceError } from "../platform/errors";
import { parseInput } from "../platform/schemas";
import { balanceSchema, entriesSchema, usageQuerySchema } from "../credits/schemas";

/**
 * The capability an API key gets from `authenticate`: read access to its own account, and
 * nothing else. No method takes an account id: the account is fixed when the capability is
 * made, and the schemas (strict, with `accountId` removed) refuse one, so no argument can
 * reach another account. Every call re-verifies the key, so revoking it ends the capability
 * on its next call, even within a long-lived WebSocket session.
 */
export class AccountApiTarget extends RpcTarget implements AccountApi {
  readonly #env: Env;
  readonly #key: string;
  readonly #accountId: string;
  readonly #keyId: string;

  constructor(env: Env, key: string, accountId: string, keyId: string) {
    super();
    this.#env = env;
    this.#key = key;
    this.#accountId = accountId;
    this.#keyId = keyId;
  }

  whoami(): Principal {
    return { role: "account", accountId: this.#accountId, keyId: this.#keyId };
  }

  async account(): Promise<Account> {
    return (await this.#ledger()).account({ accountId: this.#accountId });
  }

  async balance(input: { at?: number } = {}): Promise<Balance> {
    const parsed = parseInput(ownBalanceSchema, input, "balance input");
    return (await this.#ledger()).balance({ ...parsed, accountId: this.#accountId });
  }

  async entries(input: AccountEntriesInput = {}): Promise<EntriesPage> {
    const parsed = parseInput(ownEntriesSchema, input, "entries input");
    return (await this.#ledger()).entries({ ...parsed, accountId: this.#accountId });
  }

  async usage(input: AccountUsageInput): Promise<UsageReport> {
    const parsed = parseInput(ownUsageSchema, input, "usage input");
    return (await this.#ledger()).usage({ ...parsed, accountId: this.#accountId });
  }

  /** The account's keys, without secrets (only hashes are stored anyway). */
  async keys(): Promise<{ keys: KeyInfo[] }> {
    return (await this.#ledger()).listKeys({ accountId: this.#accountId });
  }

  /** The account's ledger, once the key has been verified again. */
  async #ledger() {
    const ledger = this.#env.CREDIT_LEDGER.getByName(this.#accountId);
    const verdict = await ledger.verifyKey({ key: this.#key });
    if (!verdict.valid) throw new ServiceError("UNAUTHENTICATED", "the API key is no longer valid");
    return ledger;
  }
}

// Validated here, not only by the ledger: the ledger takes any `accountId`, and this capability must refuse one.
const ownBalanceSchema = v.omit(balanceSchema, ["accountId"]);
const ownEntriesSchema = v.omit(entriesSchema, ["accountId"]);
const ownUsageSchema = v.omit(usageQuerySchema, ["accountId"]);
