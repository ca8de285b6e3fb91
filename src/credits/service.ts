import { RpcTarget } from "cloudflare:workers";
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
import { invalidArgument } from "../platform/errors";
import { parseKey } from "./keys";
import { toHex } from "./sha256";
import { parseInput } from "../platform/schemas";
import * as s from "./schemas";

/**
 * The credits API: validates at the boundary, then calls the account's CreditLedgerDO
 * (`CREDIT_LEDGER.getByName(accountId)`), so each call is one object round trip. Served by
 * the `Credits` entrypoint and by capnweb's `AdminApi.credits()`.
 */
export class CreditsService extends RpcTarget implements CreditsApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  /** Creates an account; without `accountId` one is generated (`acc-` and 16 hex digits). */
  async createAccount(input: CreateAccountInput): Promise<Account> {
    const parsed = parseInput(s.createAccountSchema, input, "createAccount input");
    const accountId = parsed.accountId ?? `acc-${toHex(crypto.getRandomValues(new Uint8Array(8)))}`;
    return this.#ledger(accountId).createAccount({ ...parsed, accountId });
  }

  async account(input: AccountRef): Promise<Account> {
    return this.#ledger(parseInput(s.accountRefSchema, input, "account input").accountId).account(input);
  }

  async balance(input: BalanceInput): Promise<Balance> {
    return this.#ledger(parseInput(s.balanceSchema, input, "balance input").accountId).balance(input);
  }

  async grant(input: GrantInput): Promise<Entry> {
    return this.#ledger(parseInput(s.grantSchema, input, "grant input").accountId).grant(input);
  }

  async debit(input: DebitInput): Promise<DebitResult> {
    return this.#ledger(parseInput(s.debitSchema, input, "debit input").accountId).debit(input);
  }

  async reserve(input: ReserveInput): Promise<ReserveResult> {
    return this.#ledger(parseInput(s.reserveSchema, input, "reserve input").accountId).reserve(input);
  }

  async commit(input: CommitInput): Promise<CommitResult> {
    return this.#ledger(parseInput(s.commitSchema, input, "commit input").accountId).commit(input);
  }

  async void(input: VoidInput): Promise<VoidResult> {
    return this.#ledger(parseInput(s.voidSchema, input, "void input").accountId).void(input);
  }

  async hold(input: { accountId: string; holdId: string }): Promise<Hold> {
    return this.#ledger(parseInput(s.holdRefSchema, input, "hold input").accountId).hold(input);
  }

  async refund(input: CreditRefundInput): Promise<CreditRefundResult> {
    return this.#ledger(parseInput(s.refundSchema, input, "refund input").accountId).refund(input);
  }

  async entries(input: EntriesInput): Promise<EntriesPage> {
    return this.#ledger(parseInput(s.entriesSchema, input, "entries input").accountId).entries(input);
  }

  async createKey(input: CreateKeyInput): Promise<CreatedKey> {
    return this.#ledger(parseInput(s.createKeySchema, input, "createKey input").accountId).createKey(input);
  }

  /**
   * A malformed key, or one whose checksum does not match, is answered here without
   * touching any object; a well-formed key goes straight to the account it names.
   */
  async verifyKey(input: VerifyKeyInput): Promise<VerifyKeyResult> {
    const parsed = parseInput(s.verifyKeySchema, input, "verifyKey input");
    const key = parseKey(parsed.key);
    if (key === undefined) return { valid: false, code: "MALFORMED" };
    return this.#ledger(key.accountId).verifyKey(parsed);
  }

  async revokeKey(input: KeyRef): Promise<KeyInfo> {
    return this.#ledger(parseInput(s.keyRefSchema, input, "revokeKey input").accountId).revokeKey(input);
  }

  async rollKey(input: RollKeyInput): Promise<RolledKey> {
    return this.#ledger(parseInput(s.rollKeySchema, input, "rollKey input").accountId).rollKey(input);
  }

  async listKeys(input: AccountRef): Promise<{ keys: KeyInfo[] }> {
    return this.#ledger(parseInput(s.accountRefSchema, input, "listKeys input").accountId).listKeys(input);
  }

  async setPrices(input: SetPricesInput): Promise<PriceBook> {
    const parsed = parseInput(s.setPricesSchema, input, "setPrices input");
    if (parsed.accountId === undefined) throw invalidArgument("accountId is required: the default price book comes from CREDIT_PRICES");
    return this.#ledger(parsed.accountId).setPrices(parsed);
  }

  async prices(input: AccountRef): Promise<PriceBook> {
    return this.#ledger(parseInput(s.accountRefSchema, input, "prices input").accountId).prices(input);
  }

  async quote(input: QuoteInput): Promise<Quote> {
    return this.#ledger(parseInput(s.quoteSchema, input, "quote input").accountId).quote(input);
  }

  async charge(input: ChargeInput): Promise<ChargeResult> {
    return this.#ledger(parseInput(s.chargeSchema, input, "charge input").accountId).charge(input);
  }

  async usage(input: UsageInput): Promise<UsageReport> {
    return this.#ledger(parseInput(s.usageQuerySchema, input, "usage input").accountId).usage(input);
  }

  #ledger(accountId: string) {
    return this.#env.CREDIT_LEDGER.getByName(accountId);
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
    return this.#ledger(parseInput(s.accountRefSchema, input, "verifyChain input").accountId).verifyChain(input);
  }

  async audit(input: AccountRef): Promise<AuditReport> {
    return this.#ledger(parseInput(s.accountRefSchema, input, "audit input").accountId).audit(input);
  }

  async auditReports(input: { accountId: string; limit?: number; divergent?: boolean }): Promise<{ reports: AuditReport[] }> {
    return this.#ledger(parseInput(s.auditReportsSchema, input, "auditReports input").accountId).auditReports(input);
  }

  #ledger(accountId: string) {
    return this.#env.CREDIT_LEDGER.getByName(accountId);
  }
}
