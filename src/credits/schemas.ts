import * as v from "valibot";
import { ACCOUNT_ID_PATTERN, KEY_ID_PATTERN, MAX_KEY_LENGTH, REQUIRED_SCOPE_PATTERN, SCOPE_PATTERN } from "./keys";
import { idempotencyKey, integer, text } from "../platform/schemas";
import { rulesSchema } from "../rate-limits/schemas";

/**
 * Bounds of the ledger. Amounts stay below 2^50 so that any sum of a few of them (a balance,
 * a grant plus an overdraft) is still a safe integer.
 */
export const LEDGER_BOUNDS = {
  maxAmount: 2 ** 50,
  /** The most an account may ever be granted in total, so every total and balance stays a safe integer. */
  maxGranted: 2 ** 52,
  maxTtlMs: 30 * 24 * 3_600_000,
  maxGraceMs: 30 * 24 * 3_600_000,
  maxPriority: 1_000_000,
  maxTime: 8_640_000_000_000_000 / 1_000, // year 275,760 / 1000: far future, still a safe integer
  maxPageSize: 500,
  maxMetaEntries: 16,
  maxScopes: 32,
  maxPrices: 256,
  maxUnits: 1_000_000_000_000,
  maxPricePerMillion: 1_000_000_000_000,
} as const;

const amount = integer(1, LEDGER_BOUNDS.maxAmount);
const time = integer(0, Number.MAX_SAFE_INTEGER);
export const accountId = v.pipe(v.string(), v.regex(ACCOUNT_ID_PATTERN, "must be 1-64 of [A-Za-z0-9-], starting with a letter or digit"));
const keyId = v.pipe(v.string(), v.regex(KEY_ID_PATTERN, "must be a key id (k + 16 hex digits)"));
const reason = text(1, 256);
const ledgerId = v.pipe(v.string(), v.regex(/^[a-z]_[0-9a-f]{20}$/, "must be an id returned by the ledger"));
const meta = v.pipe(
  v.record(text(1, 64), text(0, 256)),
  v.check((m) => Object.keys(m).length <= LEDGER_BOUNDS.maxMetaEntries, `must have at most ${LEDGER_BOUNDS.maxMetaEntries} entries`),
);
const ref = { accountId };

export const createAccountSchema = v.strictObject({
  accountId: v.optional(accountId),
  name: text(1, 128),
  overdraftLimit: v.optional(integer(0, LEDGER_BOUNDS.maxAmount)),
});
export const accountRefSchema = v.strictObject(ref);
export const balanceSchema = v.strictObject({ ...ref, at: v.optional(time) });

export const grantSchema = v.strictObject({
  ...ref,
  amount,
  expiresAt: v.optional(time),
  priority: v.optional(integer(0, LEDGER_BOUNDS.maxPriority)),
  reason,
  idempotencyKey,
  meta: v.optional(meta),
});

export const debitSchema = v.strictObject({
  ...ref,
  amount,
  reason,
  idempotencyKey,
  keyId: v.optional(keyId),
  meta: v.optional(meta),
});

export const reserveSchema = v.strictObject({
  ...ref,
  amount,
  ttlMs: integer(1, LEDGER_BOUNDS.maxTtlMs),
  idempotencyKey,
  keyId: v.optional(keyId),
  reason: v.optional(reason),
  meta: v.optional(meta),
});

/** A commit's fields but the account (`commitMany` takes them per item). */
const captureEntries = {
  holdId: ledgerId,
  amount: v.optional(integer(0, LEDGER_BOUNDS.maxAmount)),
  // Declared below, with the price book's schemas; a function so the order of declarations does not matter.
  usage: v.optional(v.lazy(() => usageSchema)),
  capAtHold: v.optional(v.boolean()),
  idempotencyKey,
  reason: v.optional(reason),
  meta: v.optional(meta),
};
const amountOrUsage = (c: { amount?: number; usage?: unknown }) => (c.amount === undefined) !== (c.usage === undefined);
const AMOUNT_OR_USAGE = "give amount or usage, exactly one";

export const commitSchema = v.pipe(
  v.strictObject({ ...ref, ...captureEntries }),
  v.check((c) => amountOrUsage(c), AMOUNT_OR_USAGE),
);

/** Most commits one `commitMany` carries. */
export const COMMIT_BATCH_MAX = 100;

export const commitManySchema = v.strictObject({
  ...ref,
  commits: v.pipe(
    v.array(
      v.pipe(
        v.strictObject(captureEntries),
        v.check((c) => amountOrUsage(c), AMOUNT_OR_USAGE),
      ),
    ),
    v.minLength(1, "must hold at least one commit"),
    v.maxLength(COMMIT_BATCH_MAX, `must hold at most ${COMMIT_BATCH_MAX} commits`),
  ),
});

export const voidSchema = v.strictObject({
  ...ref,
  holdId: ledgerId,
  idempotencyKey: v.optional(idempotencyKey),
  reason: v.optional(reason),
});

export const holdRefSchema = v.strictObject({ ...ref, holdId: ledgerId });

export const refundSchema = v.strictObject({
  ...ref,
  entryId: ledgerId,
  amount: v.optional(amount),
  reason,
  idempotencyKey,
});

export const entriesSchema = v.strictObject({
  ...ref,
  cursor: v.optional(v.pipe(v.string(), v.regex(/^[1-9][0-9]{0,15}$/, "must be a cursor returned by entries"))),
  limit: v.optional(integer(1, LEDGER_BOUNDS.maxPageSize)),
  since: v.optional(time),
  until: v.optional(time),
});

export const scopeSchema = v.pipe(v.string(), v.regex(SCOPE_PATTERN, "must be resource.action, resource.* or *"));
export const spendCapSchema = v.pipe(
  v.strictObject({ perDay: v.optional(amount), perMonth: v.optional(amount) }),
  v.check((cap) => cap.perDay !== undefined || cap.perMonth !== undefined, "must set perDay or perMonth"),
);

export const createKeySchema = v.strictObject({
  ...ref,
  name: text(1, 128),
  scopes: v.pipe(v.array(scopeSchema), v.maxLength(LEDGER_BOUNDS.maxScopes, `must have at most ${LEDGER_BOUNDS.maxScopes} scopes`)),
  expiresAt: v.optional(time),
  rules: v.optional(rulesSchema),
  spendCap: v.optional(spendCapSchema),
});

/** A key of any content up to a bound: a malformed key is an answer (`MALFORMED`), not an error. */
export const verifyKeySchema = v.strictObject({
  key: v.pipe(v.string(), v.maxLength(1_024, "must be at most 1024 characters")),
  scope: v.optional(v.pipe(v.string(), v.regex(REQUIRED_SCOPE_PATTERN, "must be a concrete resource.action"))),
});

/** The gateway's call into an account (`admitRequest`); the key is bounded like `verifyKey`'s. */
export const admitRequestSchema = v.pipe(
  v.strictObject({
    key: v.pipe(v.string(), v.maxLength(1_024, "must be at most 1024 characters")),
    scope: v.optional(v.pipe(v.string(), v.regex(REQUIRED_SCOPE_PATTERN, "must be a concrete resource.action"))),
    amount: v.optional(integer(0, LEDGER_BOUNDS.maxAmount)),
    usage: v.optional(v.lazy(() => usageSchema)),
    mode: v.picklist(["hold", "debit"]),
    ttlMs: integer(1, LEDGER_BOUNDS.maxTtlMs),
    idempotencyKey: v.optional(idempotencyKey),
    reason: v.optional(reason),
    meta: v.optional(meta),
  }),
  v.check((r) => (r.amount === undefined) !== (r.usage === undefined), "give amount or usage, exactly one"),
  v.check((r) => r.usage === undefined || r.mode === "hold", "usage is held (mode hold): its cost is known only after the call"),
);

export const releaseAdmissionSchema = v.pipe(
  v.strictObject({ ...ref, keyId, holdId: v.optional(ledgerId), entryId: v.optional(ledgerId), idempotencyKey }),
  v.check((r) => r.holdId === undefined || r.entryId === undefined, "give holdId or entryId, not both"),
);

export const keyRefSchema = v.strictObject({ ...ref, keyId });
export const rollKeySchema = v.strictObject({ ...ref, keyId, graceMs: integer(0, LEDGER_BOUNDS.maxGraceMs) });

const name = v.pipe(v.string(), v.regex(/^(\*|[A-Za-z0-9][A-Za-z0-9._:/-]{0,127})$/, "must be * or a name of [A-Za-z0-9._:/-]"));
const perMillion = v.optional(integer(0, LEDGER_BOUNDS.maxPricePerMillion));
export const priceSchema = v.pipe(
  v.strictObject({
    operation: name,
    model: name,
    request: perMillion,
    inputTokens: perMillion,
    outputTokens: perMillion,
    cachedTokens: perMillion,
    cacheWriteTokens: perMillion,
  }),
  v.check((p) => p.operation !== "*" || p.model === "*", "a catch-all operation needs model *"),
);
export const pricesSchema = v.pipe(
  v.array(priceSchema),
  v.maxLength(LEDGER_BOUNDS.maxPrices, `must have at most ${LEDGER_BOUNDS.maxPrices} prices`),
  v.check((ps) => new Set(ps.map((p) => `${p.operation}\u0000${p.model}`)).size === ps.length, "operation and model pairs must be unique"),
);
export const setPricesSchema = v.strictObject({ accountId: v.optional(accountId), prices: pricesSchema });

const units = v.optional(integer(0, LEDGER_BOUNDS.maxUnits));
export const usageSchema = v.strictObject({
  operation: v.pipe(
    name,
    v.check((n) => n !== "*", "must name an operation"),
  ),
  model: v.optional(
    v.pipe(
      name,
      v.check((n) => n !== "*", "must name a model"),
    ),
  ),
  requests: units,
  inputTokens: units,
  outputTokens: units,
  cachedTokens: units,
  cacheWriteTokens: units,
  maxOutputTokens: units,
});

export const quoteSchema = v.strictObject({ ...ref, usage: usageSchema, keyId: v.optional(keyId) });
export const chargeSchema = v.strictObject({
  ...ref,
  keyId: v.optional(keyId),
  usage: usageSchema,
  idempotencyKey,
  reason: v.optional(reason),
  meta: v.optional(meta),
});

export const usageRangeSchema = v.union([
  v.picklist(["1h", "24h", "7d", "30d"]),
  v.pipe(
    v.strictObject({ from: time, to: time }),
    v.check((r) => r.from < r.to, "from must be before to"),
    v.check((r) => r.to - r.from <= 400 * 86_400_000, "must span at most 400 days"),
  ),
]);
export const usageQuerySchema = v.strictObject({
  ...ref,
  range: usageRangeSchema,
  groupBy: v.picklist(["day", "key", "model", "operation"]),
});

export const auditReportsSchema = v.strictObject({
  ...ref,
  limit: v.optional(integer(1, 100)),
  divergent: v.optional(v.boolean()),
});

/** The default price book, from the `CREDIT_PRICES` variable. */
export const priceBookConfigSchema = pricesSchema;

export { MAX_KEY_LENGTH };
