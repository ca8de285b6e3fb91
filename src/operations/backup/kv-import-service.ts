import type { ImportFromKvInput, ImportFromKvReport } from "../../../rpc/backup";
import type { Rule } from "../../../rpc/rate-limits";
import { LEGACY_PREFIX, parseLegacyCounter } from "./legacy-kv";
import type { Env } from "../../platform/env";
import { ServiceError } from "../../platform/errors";
import { importFromKvInputSchema } from "./schemas";
import { parseInput } from "../../platform/schemas";
import { RateLimitsService } from "../../rate-limits/service";

/** Longest idempotency key the limiter accepts; `kv:` plus the legacy key must fit. */
const MAX_IDEMPOTENCY_KEY = 128;

/**
 * Migrates the legacy KV limiter's live counters into rate-limit objects. Each counter is
 * charged to its subject's current fixed window with the idempotency key `kv:<legacy key>`,
 * so a repeated or resumed import never counts twice. Windows already over are skipped: a
 * fixed window forgets them anyway.
 */
export class KvImportService {
  readonly #env: Env;

  constructor(env: Env) {
    this.#env = env;
  }

  async importFromKv(input: ImportFromKvInput): Promise<ImportFromKvReport> {
    // Validated here: the input is not forwarded; it shapes a check on each legacy counter's limiter.
    const parsed = parseInput(importFromKvInputSchema, input, "importFromKv input");
    const { limit, ruleName = "minute", subjectPrefix = "", cursor, batch = 500 } = parsed;
    const kv = this.#env.LEGACY_KV;
    if (kv === undefined) throw new ServiceError("INTERNAL", "no LEGACY_KV namespace is bound (see docs/operations.md)");
    const page = await kv.list({ prefix: LEGACY_PREFIX, cursor, limit: batch });
    const limits = new RateLimitsService(this.#env);
    const rules: Rule[] = [{ name: ruleName, algorithm: "fixed_window", limit, periodMs: 60_000 }];
    const report: ImportFromKvReport = { scanned: page.keys.length, imported: [], skipped: [] };
    for (const { name: key } of page.keys) {
      const idempotencyKey = `kv:${key}`;
      if (idempotencyKey.length > MAX_IDEMPOTENCY_KEY) {
        report.skipped.push({ key, reason: "key too long" });
        continue;
      }
      const counter = parseLegacyCounter(key, await kv.get(key), Date.now());
      if (!counter.ok) {
        report.skipped.push({ key, reason: counter.reason });
        continue;
      }
      const subject = `${subjectPrefix}${counter.keyId}`;
      const count = Math.min(counter.count, limit);
      const decision = await limits.check({ subject, rules, cost: count, idempotencyKey });
      if (decision.allowed) report.imported.push({ key, subject, count });
      else report.skipped.push({ key, reason: "window already full in tollgate" });
    }
    if (!page.list_complete) report.cursor = page.cursor;
    return report;
  }
}
