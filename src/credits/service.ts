import { RpcTarget } from "cloudflare:workers";
import type * as v from "valibot";
import type {
  Account,
  AccountRef,
  AuditReport,
  Balance,
  BalanceInput,
  ChainReport,
  ChargeInput,
  ChargeResult,
  CommitInput,
  CommitResult,
  CreateAccountInput,
  CreatedKey,
  CreateKeyInput,
  CreditsApi,
  CreditsAuditApi,
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
import { routeName } from "../platform/routing";
import { parseInput } from "../platform/schemas";
import { parseKey } from "./keys";
import * as s from "./schemas";
import { toHex } from "./sha256";

/**
 * The credits API: routes each call to the account's CreditLedgerDO
 * (`CREDIT_LEDGER.getByName(accountId)`), which validates it, so each call is one object round
 * trip. Served by the `Credits` entrypoint and by capnweb's `AdminApi.credits()`.
 */
export class CreditsService extends RpcTarget implements CreditsApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  /** Creates an account; without `accountId` one is generated (`acc-` and 16 hex digits). */
  async createAccount(input: CreateAccountInput): Promise<Account> {
    if (isRecord(input) && input.accountId === undefined) {
      // The account's object is named by its id, so the id is chosen here; the object validates the rest.
      const accountId = `acc-${toHex(crypto.getRandomValues(new Uint8Array(8)))}`;
      return this.#ledger(accountId).createAccount({ ...input, accountId });
    }
    return this.#route(input, s.createAccountSchema, "createAccount input").createAccount(input);
  }

  async account(input: AccountRef): Promise<Account> {
    return this.#route(input, s.accountRefSchema, "account input").account(input);
  }

  async balance(input: BalanceInput): Promise<Balance> {
    return this.#route(input, s.balanceSchema, "balance input").balance(input);
  }

  async grant(input: GrantInput): Promise<Entry> {
    return this.#route(input, s.grantSchema, "grant input").grant(input);
  }

  async debit(input: DebitInput): Promise<DebitResult> {
    return this.#route(input, s.debitSchema, "debit input").debit(input);
  }

  async reserve(input: ReserveInput): Promise<ReserveResult> {
    return this.#route(input, s.reserveSchema, "reserve input").reserve(input);
  }

  async commit(input: CommitInput): Promise<CommitResult> {
    return this.#route(input, s.commitSchema, "commit input").commit(input);
  }

  async void(input: VoidInput): Promise<VoidResult> {
    return this.#route(input, s.voidSchema, "void input").void(input);
  }

  async hold(input: { accountId: string; holdId: string }): Promise<Hold> {
    return this.#route(input, s.holdRefSchema, "hold input").hold(input);
  }

  async refund(input: CreditRefundInput): Promise<CreditRefundResult> {
    return this.#route(input, s.refundSchema, "refund input").refund(input);
  }

  async entries(input: EntriesInput): Promise<EntriesPage> {
    return this.#route(input, s.entriesSchema, "entries input").entries(input);
  }

  async createKey(input: CreateKeyInput): Promise<CreatedKey> {
    return this.#route(input, s.createKeySchema, "createKey input").createKey(input);
  }

  /**
   * A malformed key, or one whose checksum does not match, is answered here without
   * touching any object; a well-formed key goes straight to the account it names.
   */
  async verifyKey(input: VerifyKeyInput): Promise<VerifyKeyResult> {
    // Validated here too: a malformed key is answered without an object, and only a valid input may be answered.
    const parsed = parseInput(s.verifyKeySchema, input, "verifyKey input");
    const key = parseKey(parsed.key);
    if (key === undefined) return { valid: false, code: "MALFORMED" };
    return this.#ledger(key.accountId).verifyKey(input);
  }

  async revokeKey(input: KeyRef): Promise<KeyInfo> {
    return this.#route(input, s.keyRefSchema, "revokeKey input").revokeKey(input);
  }

  async rollKey(input: RollKeyInput): Promise<RolledKey> {
    return this.#route(input, s.rollKeySchema, "rollKey input").rollKey(input);
  }

  async listKeys(input: AccountRef): Promise<{ keys: KeyInfo[] }> {
    return this.#route(input, s.accountRefSchema, "listKeys input").listKeys(input);
  }

  async setPrices(input: SetPricesInput): Promise<PriceBook> {
    const missing = "accountId is required: the default price book comes from CREDIT_PRICES";
    return this.#route(input, s.setPricesSchema, "setPrices input", missing).setPrices(input);
  }

  async prices(input: AccountRef): Promise<PriceBook> {
    return this.#route(input, s.accountRefSchema, "prices input").prices(input);
  }

  async quote(input: QuoteInput): Promise<Quote> {
    return this.#route(input, s.quoteSchema, "quote input").quote(input);
  }

  async charge(input: ChargeInput): Promise<ChargeResult> {
    return this.#route(input, s.chargeSchema, "charge input").charge(input);
  }

  async usage(input: UsageInput): Promise<UsageReport> {
    return this.#route(input, s.usageQuerySchema, "usage input").usage(input);
  }

  #ledger(accountId: string) {
    return this.#env.CREDIT_LEDGER.getByName(accountId);
  }

  /** The account's ledger; an input without a usable `accountId` is refused here, since no object can be chosen. */
  #route(input: unknown, schema: v.GenericSchema, what: string, missing?: string) {
    return this.#ledger(routeName(input, "accountId", s.accountId, { schema, what, missing }));
  }
}

/** Admin-only ledger operations: hash-chain verification and the self-audit's reports. */
export class CreditsAuditService extends RpcTarget implements CreditsAuditApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  async verifyChain(input: AccountRef): Promise<ChainReport> {
    return this.#route(input, s.accountRefSchema, "verifyChain input").verifyChain(input);
  }

  async audit(input: AccountRef): Promise<AuditReport> {
    return this.#route(input, s.accountRefSchema, "audit input").audit(input);
  }

  async auditReports(input: { accountId: string; limit?: number; divergent?: boolean }): Promise<{ reports: AuditReport[] }> {
    return this.#route(input, s.auditReportsSchema, "auditReports input").auditReports(input);
  }

  /** The account's ledger; an input without a usable `accountId` is refused here, since no object can be chosen. */
  #route(input: unknown, schema: v.GenericSchema, what: string) {
    return this.#env.CREDIT_LEDGER.getByName(routeName(input, "accountId", s.accountId, { schema, what }));
  }
}

function isRecord(input: unknown): input is Record<string, unknown> {
  return typeof input === "object" && input !== null && !Array.isArray(input);
}
