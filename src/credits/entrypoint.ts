import { WorkerEntrypoint } from "cloudflare:workers";
import type {
  Account,
  AccountRef,
  Balance,
  BalanceInput,
  ChargeInput,
  ChargeResult,
  CommitInput,
  CommitResult,
  CreateAccountInput,
  CreatedKey,
  CreateKeyInput,
  CreditsApi,
  DebitInput,
  DebitResult,
  EntriesInput,
  EntriesPage,
  Entry,
  GrantInput,
  Hold,
  KeyInfo,
  KeyRef,
  PriceBook,
  Quote,
  QuoteInput,
  CreditRefundInput,
  CreditRefundResult,
  ReserveInput,
  ReserveResult,
  RolledKey,
  RollKeyInput,
  SetPricesInput,
  UsageInput,
  UsageReport,
  VerifyKeyInput,
  VerifyKeyResult,
  VoidInput,
  VoidResult,
} from "../../rpc/credits";
import type { Env } from "../platform/env";
import { CreditsService } from "./service";

/**
 * `Credits`: accounts, grants, debits, holds, refunds, API keys, pricing and usage for
 * sibling Workers. `services = [{ binding = "CREDITS", service = "tollgate", entrypoint = "Credits" }]`
 */
export class Credits extends WorkerEntrypoint<Env> implements CreditsApi {
  readonly #service = new CreditsService(this.env);

  createAccount(input: CreateAccountInput): Promise<Account> {
    return this.#service.createAccount(input);
  }

  account(input: AccountRef): Promise<Account> {
    return this.#service.account(input);
  }

  balance(input: BalanceInput): Promise<Balance> {
    return this.#service.balance(input);
  }

  grant(input: GrantInput): Promise<Entry> {
    return this.#service.grant(input);
  }

  debit(input: DebitInput): Promise<DebitResult> {
    return this.#service.debit(input);
  }

  reserve(input: ReserveInput): Promise<ReserveResult> {
    return this.#service.reserve(input);
  }

  commit(input: CommitInput): Promise<CommitResult> {
    return this.#service.commit(input);
  }

  void(input: VoidInput): Promise<VoidResult> {
    return this.#service.void(input);
  }

  hold(input: { accountId: string; holdId: string }): Promise<Hold> {
    return this.#service.hold(input);
  }

  refund(input: CreditRefundInput): Promise<CreditRefundResult> {
    return this.#service.refund(input);
  }

  entries(input: EntriesInput): Promise<EntriesPage> {
    return this.#service.entries(input);
  }

  createKey(input: CreateKeyInput): Promise<CreatedKey> {
    return this.#service.createKey(input);
  }

  verifyKey(input: VerifyKeyInput): Promise<VerifyKeyResult> {
    return this.#service.verifyKey(input);
  }

  revokeKey(input: KeyRef): Promise<KeyInfo> {
    return this.#service.revokeKey(input);
  }

  rollKey(input: RollKeyInput): Promise<RolledKey> {
    return this.#service.rollKey(input);
  }

  listKeys(input: AccountRef): Promise<{ keys: KeyInfo[] }> {
    return this.#service.listKeys(input);
  }

  setPrices(input: SetPricesInput): Promise<PriceBook> {
    return this.#service.setPrices(input);
  }

  prices(input: AccountRef): Promise<PriceBook> {
    return this.#service.prices(input);
  }

  quote(input: QuoteInput): Promise<Quote> {
    return this.#service.quote(input);
  }

  charge(input: ChargeInput): Promise<ChargeResult> {
    return this.#service.charge(input);
  }

  usage(input: UsageInput): Promise<UsageReport> {
    return this.#service.usage(input);
  }
}
