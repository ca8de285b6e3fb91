import { WorkerEntrypoint } from "cloudflare:workers";
import type { Account, Balance, CreateAccountInput, CreditsApi } from "../../rpc/credits";
import type { Env } from "../env";
import { CreditsService } from "../services/credits-service";

/** `Credits`: accounts, credits and API keys for sibling Workers (arrives with the ledger issue). */
export class Credits extends WorkerEntrypoint<Env> implements CreditsApi {
  readonly #service = new CreditsService();

  createAccount(input: CreateAccountInput): Promise<Account> {
    return this.#service.createAccount(input);
  }

  balance(input: { accountId: string }): Promise<Balance> {
    return this.#service.balance(input);
  }
}
