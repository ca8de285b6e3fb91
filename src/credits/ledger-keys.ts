import type { CreatedKey, KeyInfo, KeySpend, RolledKey, SpendCap, SpendDenial } from "../../rpc/credits";
import type { Decision, Rule } from "../../rpc/rate-limits";
import { conflict, notFound } from "../platform/errors";
import { dayOf, monthOf } from "./invariants";
import { formatKey, hashSecret, newKeyId, newSecret } from "./keys";
import { evaluateRules, refundRules } from "../rate-limits/algorithms/evaluate-rules";
import type { LimiterState, StateChange } from "../rate-limits/algorithms/rule-state";
import { decodeRuleState, encodeRuleState } from "../rate-limits/algorithms/rule-state-codec";
import { all, maybeOne, run } from "../platform/sql";
import { DeferredRows, TransactionMemo, type WriteBackRowsOptions, WriteBackRows } from "../platform/write-back";
import { type KeyRow, toKeyInfo } from "./ledger-rows";

/** A spend the key's rules and caps admit: the key, and the rule states to store with the spend. */
export interface KeyAdmission {
  key: KeyRow;
  ruleWrites: Map<string, StateChange>;
}

/** Why a key may not spend now, with what a caller needs to retry. */
export interface KeyRefusal {
  code: Exclude<SpendDenial, "INSUFFICIENT_CREDITS">;
  retryAfterMs?: number;
  deniedBy?: string[];
}

/** A family's spend counters: the latest day and month it spent in. */
type SpendRow = {
  day: string;
  day_amount: number;
  month: string;
  month_amount: number;
};

/**
 * The API-key tables of one CreditLedgerDO: `api_keys`, `key_spend_now` (per-family spend of
 * the latest day and month, one row) and `key_rule_states`. Synchronous SQL only, so the object can use it inside the
 * transaction of the spend it guards. A rolled key and its successor share a family, and so
 * their counters.
 */
export class LedgerKeys {
  /**
   * Each capped family's spend row, written once per transaction however many spends it counts
   * (platform/write-back.ts): caps are decisions, so their counters are durable with the spend.
   */
  readonly spendCache: WriteBackRows<SpendRow>;
  /**
   * A family without caps: its counters only answer `keySpend` (no alert reads them: a share
   * needs a cap), so they are kept in memory and written (`uncappedSpend.flush`) a second after
   * the spends. A crash loses at most that second of them (docs/credits.md).
   */
  readonly uncappedSpend: DeferredRows<SpendRow>;
  /** Each family's rule states, by family and rule name, written back the same way. */
  readonly ruleStateCache: WriteBackRows<{ familyId: string; ruleName: string; state: string; expiresAtMs: number }>;

  /** Key rows read inside the open transaction (one query per key and call); a write to `api_keys` forgets them. */
  readonly keyRows = new TransactionMemo<KeyRow | undefined>();

  constructor(private readonly sql: SqlStorage) {
    const spendRows: WriteBackRowsOptions<SpendRow> = {
      load: (familyId) =>
        maybeOne<SpendRow>(sql, "SELECT day, day_amount, month, month_amount FROM key_spend_now WHERE family_id = ?", familyId),
      store: (familyId, row) =>
        run(
          sql,
          `INSERT INTO key_spend_now (family_id, day, day_amount, month, month_amount) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (family_id) DO UPDATE SET day = excluded.day, day_amount = excluded.day_amount,
             month = excluded.month, month_amount = excluded.month_amount`,
          familyId,
          row.day,
          row.day_amount,
          row.month,
          row.month_amount,
        ),
    };
    this.spendCache = new WriteBackRows(spendRows);
    this.uncappedSpend = new DeferredRows(spendRows);
    this.ruleStateCache = new WriteBackRows({
      load: (key) => {
        const [familyId, ruleName] = JSON.parse(key) as [string, string];
        const row = maybeOne<{ state: string; expires_at_ms: number }>(
          sql,
          "SELECT state, expires_at_ms FROM key_rule_states WHERE family_id = ? AND rule_name = ?",
          familyId,
          ruleName,
        );
        return row === undefined ? undefined : { familyId, ruleName, state: row.state, expiresAtMs: row.expires_at_ms };
      },
      store: (_key, row) =>
        run(
          sql,
          `INSERT INTO key_rule_states (family_id, rule_name, state, expires_at_ms) VALUES (?, ?, ?, ?)
           ON CONFLICT (family_id, rule_name) DO UPDATE SET state = excluded.state, expires_at_ms = excluded.expires_at_ms`,
          row.familyId,
          row.ruleName,
          row.state,
          row.expiresAtMs,
        ),
    });
  }

  row(keyId: string): KeyRow | undefined {
    return this.keyRows.get(keyId, () => maybeOne<KeyRow>(this.sql, "SELECT * FROM api_keys WHERE key_id = ?", keyId));
  }

  require(keyId: string): KeyRow {
    const row = this.row(keyId);
    if (row === undefined) throw notFound(`no key "${keyId}" in this account`);
    return row;
  }

  list(): KeyInfo[] {
    return all<KeyRow>(this.sql, "SELECT * FROM api_keys ORDER BY created_at_ms, key_id").map(toKeyInfo);
  }

  /**
   * Whether the key may spend `amount` now: active, within its rate rules (each spend costs
   * one request), within its day and month caps. Nothing is written here; the caller records
   * the spend with `record` only once the funds are there too, so all of it is atomic.
   */
  admit(
    keyId: string | undefined,
    amount: number,
    nowMs: number,
  ): { ok: true; admitted?: KeyAdmission } | { ok: false; refusal: KeyRefusal } {
    if (keyId === undefined) return { ok: true };
    const key = this.require(keyId);
    if ((key.revoked_at_ms !== null && key.revoked_at_ms <= nowMs) || (key.expires_at_ms !== null && key.expires_at_ms <= nowMs)) {
      return { ok: false, refusal: { code: "KEY_INACTIVE" } };
    }
    const rules = JSON.parse(key.rules) as Rule[];
    let ruleWrites = new Map<string, StateChange>();
    if (rules.length > 0) {
      const evaluation = evaluateRules(rules, this.ruleStates(key.family_id), nowMs, 1, true);
      if (!evaluation.decision.allowed) {
        return {
          ok: false,
          refusal: { code: "RATE_LIMITED", retryAfterMs: evaluation.decision.retryAfterMs, deniedBy: evaluation.decision.deniedBy },
        };
      }
      ruleWrites = evaluation.writes;
    }
    const spent = this.#spent(key, nowMs);
    const overDay = key.spend_cap_day !== null && spent.day + amount > key.spend_cap_day;
    const overMonth = key.spend_cap_month !== null && spent.month + amount > key.spend_cap_month;
    if (overDay || overMonth) return { ok: false, refusal: { code: "SPEND_CAP_EXCEEDED" } };
    return { ok: true, admitted: { key, ruleWrites } };
  }

  /** What the key's family has spent in the current UTC day and month, against its caps. */
  spendOf(key: KeyRow, nowMs: number): KeySpend {
    const spent = this.#spent(key, nowMs);
    const period = (name: string, amount: number, cap: number | null) =>
      cap === null ? { period: name, spent: amount } : { period: name, spent: amount, cap };
    return {
      keyId: key.key_id,
      day: period(dayOf(nowMs), spent.day, key.spend_cap_day),
      month: period(monthOf(nowMs), spent.month, key.spend_cap_month),
    };
  }

  /** Records an admitted spend: the key's counters for the day and month, and its rule states. */
  record(admitted: KeyAdmission | undefined, amount: number, day: string, month: string): void {
    if (admitted === undefined) return;
    const familyId = admitted.key.family_id;
    this.addSpend(admitted.key, amount, day, month);
    this.saveRuleStates(familyId, admitted.ruleWrites);
  }

  /**
   * The key's rate rules as they stand now, without charging: with `cost` 0, what remains
   * after the calls so far; with `cost` 1, whether one more call would be admitted. `undefined`
   * for a key without rules.
   */
  limits(key: KeyRow, nowMs: number, cost: number): Decision | undefined {
    const rules = JSON.parse(key.rules) as Rule[];
    if (rules.length === 0) return undefined;
    return evaluateRules(rules, this.ruleStates(key.family_id), nowMs, cost, false).decision;
  }

  /** Gives one request back to each of the key's rules (never beyond what was taken): an admission another check overruled. */
  refundRequest(key: KeyRow, nowMs: number): void {
    const rules = JSON.parse(key.rules) as Rule[];
    if (rules.length === 0) return;
    this.saveRuleStates(key.family_id, refundRules(rules, this.ruleStates(key.family_id), nowMs, 1).writes);
  }

  private saveRuleStates(familyId: string, writes: ReadonlyMap<string, StateChange>): void {
    for (const [ruleName, { state, expiresAtMs }] of writes) {
      const row = { familyId, ruleName, state: encodeRuleState(state), expiresAtMs };
      this.ruleStateCache.set(JSON.stringify([familyId, ruleName]), row);
    }
  }

  /**
   * Adds `amount` (negative to give back) to a family's counters of the given day and month, in
   * one write. The row keeps the latest day and month only, the ones caps read: a later period
   * starts from `amount`, and a change to a period already past (a hold placed before midnight,
   * settled after) changes nothing anyone reads, so it is not written.
   */
  addSpend(key: KeyRow, amount: number, day: string, month: string): void {
    if (amount === 0) return;
    const familyId = key.family_id;
    const row = this.#spendRows(key).get(familyId);
    const next = (period: string, current: string | undefined, spent: number): [string, number] | undefined =>
      current === undefined || period > current ? [period, amount] : period === current ? [period, spent + amount] : undefined;
    const newDay = next(day, row?.day, row?.day_amount ?? 0) ?? [row!.day, row!.day_amount];
    const newMonth = next(month, row?.month, row?.month_amount ?? 0) ?? [row!.month, row!.month_amount];
    if (
      row !== undefined &&
      newDay[1] === row.day_amount &&
      newDay[0] === row.day &&
      newMonth[1] === row.month_amount &&
      newMonth[0] === row.month
    ) {
      return;
    }
    this.#spendRows(key).set(familyId, { day: newDay[0], day_amount: newDay[1], month: newMonth[0], month_amount: newMonth[1] });
  }

  /** Where a family's counters live: a rolled key and its successor share caps, so a family is capped or not. */
  #spendRows(key: KeyRow): WriteBackRows<SpendRow> | DeferredRows<SpendRow> {
    return key.spend_cap_day === null && key.spend_cap_month === null ? this.uncappedSpend : this.spendCache;
  }

  /** What a family has spent in the day and month of `nowMs`. */
  #spent(key: KeyRow, nowMs: number): { day: number; month: number } {
    const row = this.#spendRows(key).get(key.family_id);
    return {
      day: row !== undefined && row.day === dayOf(nowMs) ? row.day_amount : 0,
      month: row !== undefined && row.month === monthOf(nowMs) ? row.month_amount : 0,
    };
  }

  /** Creates a key and returns it, the only time its secret leaves the object. */
  insert(
    accountId: string,
    spec: { name: string; scopes: string[]; rules: Rule[]; spendCap?: SpendCap; expiresAt?: number; familyId?: string },
    nowMs: number,
  ): CreatedKey {
    const keyId = newKeyId(crypto.getRandomValues(new Uint8Array(8)));
    const secret = newSecret(crypto.getRandomValues(new Uint8Array(24)));
    const key = formatKey(accountId, keyId, secret);
    this.keyRows.forget();
    run(
      this.sql,
      `INSERT INTO api_keys (key_id, family_id, name, start, secret_hash, scopes, rules, spend_cap_day, spend_cap_month, created_at_ms, expires_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      keyId,
      spec.familyId ?? keyId,
      spec.name,
      `tg_${accountId}_${keyId}`,
      hashSecret(secret),
      JSON.stringify(spec.scopes),
      JSON.stringify(spec.rules),
      spec.spendCap?.perDay ?? null,
      spec.spendCap?.perMonth ?? null,
      nowMs,
      spec.expiresAt ?? null,
    );
    return { keyId, key, info: toKeyInfo(this.require(keyId)) };
  }

  /** Revokes a key from `nowMs` on; a key already revoked keeps its time. */
  revoke(keyId: string, nowMs: number): KeyInfo {
    this.require(keyId);
    this.keyRows.forget();
    run(this.sql, "UPDATE api_keys SET revoked_at_ms = ? WHERE key_id = ? AND revoked_at_ms IS NULL", nowMs, keyId);
    return toKeyInfo(this.require(keyId));
  }

  /**
   * Replaces a key with a new one of the same name, scopes, rules and caps, in the same family
   * (so the counters go on). The old key works for `graceMs` more. Run it in a transaction.
   */
  roll(accountId: string, keyId: string, graceMs: number, nowMs: number): RolledKey {
    const old = this.require(keyId);
    if (old.revoked_at_ms !== null) throw conflict(`key "${keyId}" is revoked`);
    if (old.rolled_to !== null) throw conflict(`key "${keyId}" was already rolled to "${old.rolled_to}"`);
    const info = toKeyInfo(old);
    const created = this.insert(
      accountId,
      {
        name: info.name,
        scopes: info.scopes,
        rules: info.rules,
        spendCap: info.spendCap,
        expiresAt: info.expiresAt,
        familyId: old.family_id,
      },
      nowMs,
    );
    const graceEnd = nowMs + graceMs;
    if (graceMs === 0) {
      this.keyRows.forget();
      run(this.sql, "UPDATE api_keys SET revoked_at_ms = ?, rolled_to = ? WHERE key_id = ?", nowMs, created.keyId, old.key_id);
    } else {
      this.keyRows.forget();
      run(
        this.sql,
        "UPDATE api_keys SET expires_at_ms = MIN(COALESCE(expires_at_ms, ?), ?), rolled_to = ? WHERE key_id = ?",
        graceEnd,
        graceEnd,
        created.keyId,
        old.key_id,
      );
    }
    return { ...created, previous: toKeyInfo(this.require(old.key_id)) };
  }

  private ruleStates(familyId: string): Map<string, LimiterState> {
    const stored = all<{ rule_name: string; state: string; expires_at_ms: number }>(
      this.sql,
      "SELECT rule_name, state, expires_at_ms FROM key_rule_states WHERE family_id = ?",
      familyId,
    ).map((r) => ({ familyId, ruleName: r.rule_name, state: r.state, expiresAtMs: r.expires_at_ms }));
    const rows = this.ruleStateCache.overlay(
      stored,
      (r) => JSON.stringify([r.familyId, r.ruleName]),
      (r) => r.familyId === familyId,
    );
    return new Map(rows.map((r) => [r.ruleName, decodeRuleState(r.state)]));
  }
}
