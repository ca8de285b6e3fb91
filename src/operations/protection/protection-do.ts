import { FLAG_RETENTION_MS, MAX_FLAGS } from "../../platform/retention";
import type { AllowEntry, AnomalyPolicy, DenyEntry, Flag, PolicyInfo } from "../../../rpc/protection";
import { configuredPolicy } from "./config";
import type { Env } from "../../platform/env";
import { invalidArgument, ServiceError } from "../../platform/errors";
import { DAY_MS, resolveRange } from "../../platform/buckets";
import { mergePolicy } from "./policy";
import {
  allowInputSchema,
  cidrInputSchema,
  denyInputSchema,
  flaggedInputSchema,
  PROTECTION_BOUNDS,
  reportFlagSchema,
  setPolicyInputSchema,
} from "./schemas";
import type { Migration } from "../../platform/migrations";
import { all, maybeOne, run } from "../../platform/sql";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../../platform/tollgate-object";

/** Flags older than this are pruned by alarm, and at most `MAX_FLAGS` are kept. */
export { FLAG_RETENTION_MS, MAX_FLAGS };

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "allow list, deny list, policy override, flags",
    up(sql) {
      sql.exec("CREATE TABLE allow_list (cidr TEXT PRIMARY KEY, note TEXT, added_at_ms INTEGER NOT NULL) WITHOUT ROWID");
      sql.exec(
        "CREATE TABLE deny_list (cidr TEXT PRIMARY KEY, until_ms INTEGER, reason TEXT NOT NULL, added_at_ms INTEGER NOT NULL) WITHOUT ROWID",
      );
      sql.exec(
        "CREATE TABLE policy_override (id INTEGER PRIMARY KEY CHECK (id = 1), policy TEXT NOT NULL, updated_at_ms INTEGER NOT NULL)",
      );
      // `client` is the collector's stored id (privacy mode applied): never a raw address.
      sql.exec(`CREATE TABLE flags (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        client TEXT NOT NULL,
        rule TEXT NOT NULL,
        blocked INTEGER NOT NULL,
        allow_listed INTEGER NOT NULL,
        blocked_until_ms INTEGER,
        evidence TEXT NOT NULL
      )`);
      sql.exec("CREATE INDEX flags_by_at ON flags (at_ms)");
    },
  },
];

/** What the gateway and the collectors cache: the effective policy and both lists, expired denials left out. */
export interface ProtectionSnapshot {
  policy: AnomalyPolicy;
  allow: string[];
  deny: { cidr: string; until?: number }[];
}

type FlagRow = {
  id: number;
  at_ms: number;
  client: string;
  rule: string;
  blocked: number;
  allow_listed: number;
  blocked_until_ms: number | null;
  evidence: string;
};

/**
 * Deployment-wide protection state, one instance (`PROTECTION_NAME`): the allow list (never
 * blocked), the deny list (refused at `Gateway.authorize`; entries may expire, and an alarm
 * removes them), the run-time policy override, and the log of flags the collectors report.
 * Read on hot paths only through short-lived caches (docs/protection.md).
 */
export class ProtectionDO extends TollgateObject {
  static readonly #spec: ObjectSpec<ProtectionDO> = {
    component: "protection",
    migrations: MIGRATIONS,
    tasks: (self) => ({
      "expire-denials": (_payload, nowMs) => self.#expireDenials(nowMs),
      "prune-flags": (_payload, nowMs) => self.#pruneFlags(nowMs),
    }),
  };

  constructor(ctx: DurableObjectState, env: Env, hooks?: ObjectHooks) {
    super(ctx, env, ProtectionDO.#spec, hooks);
  }

  /** Everything a cache needs, in one call. */
  snapshot(): ProtectionSnapshot {
    return this.handle("snapshot", () => {
      const nowMs = this.now();
      return {
        policy: this.#policyInfo().effective,
        allow: all<{ cidr: string }>(this.sql, "SELECT cidr FROM allow_list ORDER BY cidr").map((row) => row.cidr),
        deny: all<{ cidr: string; until_ms: number | null }>(
          this.sql,
          "SELECT cidr, until_ms FROM deny_list WHERE until_ms IS NULL OR until_ms > ? ORDER BY cidr",
          nowMs,
        ).map((row) => (row.until_ms === null ? { cidr: row.cidr } : { cidr: row.cidr, until: row.until_ms })),
      };
    });
  }

  allowList(): { entries: AllowEntry[] } {
    return this.handle("allowList", () => {
      const rows = all<{ cidr: string; note: string | null; added_at_ms: number }>(
        this.sql,
        "SELECT cidr, note, added_at_ms FROM allow_list ORDER BY cidr",
      );
      return {
        entries: rows.map((row) => ({ cidr: row.cidr, ...(row.note === null ? {} : { note: row.note }), addedAt: row.added_at_ms })),
      };
    });
  }

  allow(input: unknown): AllowEntry {
    return this.handle("allow", allowInputSchema, input, (parsed) => {
      this.#assertRoom("allow_list", parsed.cidr);
      const addedAt = this.now();
      run(
        this.sql,
        "INSERT INTO allow_list (cidr, note, added_at_ms) VALUES (?, ?, ?) ON CONFLICT (cidr) DO UPDATE SET note = excluded.note",
        parsed.cidr,
        parsed.note ?? null,
        addedAt,
      );
      return this.allowList().entries.find((entry) => entry.cidr === parsed.cidr)!;
    });
  }

  unallow(input: unknown): { removed: boolean } {
    return this.handle("unallow", cidrInputSchema, input, (parsed) => {
      return { removed: run(this.sql, "DELETE FROM allow_list WHERE cidr = ?", parsed.cidr) > 0 };
    });
  }

  denyList(): { entries: DenyEntry[] } {
    return this.handle("denyList", () => {
      const rows = all<{ cidr: string; until_ms: number | null; reason: string; added_at_ms: number }>(
        this.sql,
        "SELECT cidr, until_ms, reason, added_at_ms FROM deny_list WHERE until_ms IS NULL OR until_ms > ? ORDER BY cidr",
        this.now(),
      );
      return {
        entries: rows.map((row) => ({
          cidr: row.cidr,
          ...(row.until_ms === null ? {} : { until: row.until_ms }),
          reason: row.reason,
          addedAt: row.added_at_ms,
        })),
      };
    });
  }

  deny(input: unknown): Promise<DenyEntry> {
    return this.handle("deny", denyInputSchema, input, async (parsed) => {
      const nowMs = this.now();
      if (parsed.untilMs !== undefined) {
        if (parsed.untilMs <= nowMs)
          throw invalidArgument("untilMs must be in the future", [{ path: "untilMs", message: "must be in the future" }]);
        if (parsed.untilMs > nowMs + PROTECTION_BOUNDS.maxPeriodMs)
          throw invalidArgument("untilMs must be at most 366 days ahead", [{ path: "untilMs", message: "too far ahead" }]);
      }
      this.#assertRoom("deny_list", parsed.cidr);
      run(
        this.sql,
        `INSERT INTO deny_list (cidr, until_ms, reason, added_at_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (cidr) DO UPDATE SET until_ms = excluded.until_ms, reason = excluded.reason, added_at_ms = excluded.added_at_ms`,
        parsed.cidr,
        parsed.untilMs ?? null,
        parsed.reason,
        nowMs,
      );
      if (parsed.untilMs !== undefined) await this.scheduler.schedule("expire-denials", parsed.untilMs, null, "expire-denials", "earliest");
      return {
        cidr: parsed.cidr,
        ...(parsed.untilMs === undefined ? {} : { until: parsed.untilMs }),
        reason: parsed.reason,
        addedAt: nowMs,
      };
    });
  }

  undeny(input: unknown): { removed: boolean } {
    return this.handle("undeny", cidrInputSchema, input, (parsed) => {
      return { removed: run(this.sql, "DELETE FROM deny_list WHERE cidr = ?", parsed.cidr) > 0 };
    });
  }

  policy(): PolicyInfo {
    return this.handle("policy", () => {
      return this.#policyInfo();
    });
  }

  /** Replaces the run-time override; `{ policy: {} }` clears it (ANOMALY_POLICY and the defaults apply). */
  setPolicy(input: unknown): PolicyInfo {
    return this.handle("setPolicy", setPolicyInputSchema, input, (parsed) => {
      const override = Object.fromEntries(Object.entries(parsed.policy).filter(([, value]) => value !== undefined));
      if (Object.keys(override).length === 0) run(this.sql, "DELETE FROM policy_override");
      else {
        run(
          this.sql,
          "INSERT INTO policy_override (id, policy, updated_at_ms) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET policy = excluded.policy, updated_at_ms = excluded.updated_at_ms",
          JSON.stringify(override),
          this.now(),
        );
      }
      return this.#policyInfo();
    });
  }

  /** Records a flag a collector raised (rare: one per client and episode). */
  reportFlag(input: unknown): Promise<{ flagId: number }> {
    return this.handle("reportFlag", reportFlagSchema, input, async (parsed) => {
      run(
        this.sql,
        "INSERT INTO flags (at_ms, client, rule, blocked, allow_listed, blocked_until_ms, evidence) VALUES (?, ?, ?, ?, ?, ?, ?)",
        parsed.at,
        parsed.client,
        parsed.rule,
        parsed.blocked ? 1 : 0,
        parsed.allowListed ? 1 : 0,
        parsed.blockedUntil ?? null,
        JSON.stringify(parsed.evidence),
      );
      const flagId = maybeOne<{ id: number }>(this.sql, "SELECT last_insert_rowid() AS id")!.id;
      await this.scheduler.schedule("prune-flags", this.now() + DAY_MS, null, "prune-flags", "earliest");
      return { flagId };
    });
  }

  /** Flags, newest first, optionally of one client and within a range. */
  flagged(input?: unknown): { flags: Flag[] } {
    return this.handle("flagged", flaggedInputSchema, input, (parsed) => {
      const range = parsed.range === undefined ? { from: 0, to: Number.MAX_SAFE_INTEGER } : resolveRange(parsed.range, this.now());
      const rows = all<FlagRow>(
        this.sql,
        `SELECT * FROM flags WHERE at_ms >= ? AND at_ms < ? ${parsed.client === undefined ? "" : "AND client = ?"} ORDER BY at_ms DESC, id DESC LIMIT ?`,
        range.from,
        range.to,
        ...(parsed.client === undefined ? [] : [parsed.client]),
        parsed.limit ?? 100,
      );
      return {
        flags: rows.map((row) => ({
          flagId: row.id,
          at: row.at_ms,
          client: row.client,
          rule: row.rule as Flag["rule"],
          blocked: row.blocked === 1,
          allowListed: row.allow_listed === 1,
          ...(row.blocked_until_ms === null ? {} : { blockedUntil: row.blocked_until_ms }),
          evidence: JSON.parse(row.evidence) as Flag["evidence"],
        })),
      };
    });
  }

  /** Removes denials whose time has come, then waits for the next one. Idempotent. */
  async #expireDenials(nowMs: number): Promise<void> {
    run(this.sql, "DELETE FROM deny_list WHERE until_ms IS NOT NULL AND until_ms <= ?", nowMs);
    const next = maybeOne<{ next: number | null }>(this.sql, "SELECT MIN(until_ms) AS next FROM deny_list")?.next;
    // "replace": this run's own row is deleted on completion unless rescheduled here.
    if (next != null) await this.scheduler.schedule("expire-denials", next, null, "expire-denials", "replace");
  }

  /** Forgets flags past the retention, and all but the newest `MAX_FLAGS`. Idempotent. */
  async #pruneFlags(nowMs: number): Promise<void> {
    run(this.sql, "DELETE FROM flags WHERE at_ms < ?", nowMs - FLAG_RETENTION_MS);
    run(this.sql, "DELETE FROM flags WHERE id NOT IN (SELECT id FROM flags ORDER BY at_ms DESC, id DESC LIMIT ?)", MAX_FLAGS);
    const any = maybeOne<{ n: number }>(this.sql, "SELECT COUNT(*) AS n FROM flags")!.n;
    if (any > 0) await this.scheduler.schedule("prune-flags", nowMs + DAY_MS, null, "prune-flags", "replace");
  }

  #policyInfo(): PolicyInfo {
    const row = maybeOne<{ policy: string; updated_at_ms: number }>(
      this.sql,
      "SELECT policy, updated_at_ms FROM policy_override WHERE id = 1",
    );
    const override = row === undefined ? {} : (JSON.parse(row.policy) as Partial<AnomalyPolicy>);
    return { effective: mergePolicy(configuredPolicy(this.env), override), override, updatedAt: row?.updated_at_ms ?? null };
  }

  #assertRoom(table: "allow_list" | "deny_list", cidr: string): void {
    const exists = maybeOne(this.sql, `SELECT 1 AS x FROM ${table} WHERE cidr = ?`, cidr) !== undefined;
    const size = maybeOne<{ n: number }>(this.sql, `SELECT COUNT(*) AS n FROM ${table}`)!.n;
    if (!exists && size >= PROTECTION_BOUNDS.maxEntries) {
      throw new ServiceError(
        "RESOURCE_EXHAUSTED",
        `the ${table === "allow_list" ? "allow" : "deny"} list holds at most ${PROTECTION_BOUNDS.maxEntries} entries`,
      );
    }
  }
}
