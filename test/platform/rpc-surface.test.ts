import { env } from "cloudflare:workers";
import { DurableObject, RpcTarget, WorkerEntrypoint } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AdaptiveApi } from "../../rpc/adaptive";
import type { AccountApi, AdminApi, TollgateRpc } from "../../rpc/admin";
import type { AlertsApi } from "../../rpc/alerts";
import type { CreditsApi, CreditsAuditApi } from "../../rpc/credits";
import type { GatewayApi } from "../../rpc/gateway";
import type { PathStatsApi } from "../../rpc/path-stats";
import type { ProtectionApi } from "../../rpc/protection";
import type { RateLimitsApi } from "../../rpc/rate-limits";
import { Admin } from "../../src/admin/entrypoint";
import { AdminApiTarget } from "../../src/admin/admin-api";
import { CreditLedgerDO } from "../../src/credits/ledger-do";
import { Credits } from "../../src/credits/entrypoint";
import { CreditsAuditService, CreditsService } from "../../src/credits/service";
import { AccountApiTarget } from "../../src/gateway/account-api";
import { Gateway } from "../../src/gateway/entrypoint";
import { TollgateRpcRoot } from "../../src/gateway/rpc-root";
import { GatewayService } from "../../src/gateway/service";
import { AdaptiveLimitsDO } from "../../src/operations/adaptive/adaptive-limits-do";
import { AdaptiveService } from "../../src/operations/adaptive/service";
import { AlertsDO } from "../../src/operations/alerts/alerts-do";
import { AlertsService } from "../../src/operations/alerts/service";
import { MaintenanceDO } from "../../src/operations/backup/maintenance-do";
import { MetricsDO } from "../../src/operations/metrics/metrics-do";
import { ProtectionDO } from "../../src/operations/protection/protection-do";
import { ProtectionService } from "../../src/operations/protection/service";
import { AggregatorDO } from "../../src/path-stats/aggregator-do";
import { PathCollectorDO } from "../../src/path-stats/collector-do";
import { PathStats } from "../../src/path-stats/entrypoint";
import { PathStatsService } from "../../src/path-stats/service";
import { RateLimits } from "../../src/rate-limits/entrypoint";
import { RateLimiterDO } from "../../src/rate-limits/limiter-do";
import { RateLimitsService } from "../../src/rate-limits/service";
import { AGGREGATOR_NAME } from "../../src/platform/names";
import { digestObject } from "../fixtures/digest";

/**
 * Workers RPC dispatches to any method on a class's prototype chain, whatever TypeScript calls
 * it, so a sibling Worker bound to a namespace or handed an RpcTarget can call every one of
 * them. This file pins each class's reachable surface to its contract: a new helper method
 * must be `#private` (or live in a plain class the object holds privately), or this fails.
 */

/** `true` only when `Names` lists exactly the methods of `Api`: the lists below cannot drift from rpc/. */
type Exactly<Api, Names extends string> = [Exclude<keyof Api, Names>] extends [never]
  ? [Exclude<Names, keyof Api>] extends [never]
    ? true
    : false
  : false;

const RATE_LIMITS_API = [
  "check",
  "checkMany",
  "peek",
  "reset",
  "refund",
  "acquire",
  "release",
  "heartbeat",
  "setOverride",
  "clearOverride",
  "block",
  "unblock",
] as const;
const CREDITS_API = [
  "createAccount",
  "account",
  "balance",
  "grant",
  "debit",
  "reserve",
  "commit",
  "void",
  "refund",
  "hold",
  "entries",
  "createKey",
  "verifyKey",
  "revokeKey",
  "rollKey",
  "listKeys",
  "setPrices",
  "prices",
  "quote",
  "charge",
  "usage",
] as const;
const CREDITS_AUDIT_API = ["verifyChain", "audit", "auditReports"] as const;
const PATH_STATS_API = [
  "record",
  "recordMany",
  "clientStats",
  "globalStats",
  "timeSeries",
  "topPaths",
  "topClients",
  "pathDetail",
  "export",
] as const;
const GATEWAY_API = ["authorize", "settle"] as const;
const ADAPTIVE_API = ["setPolicy", "deletePolicy", "policies", "state", "history"] as const;
const PROTECTION_API = ["allowList", "allow", "unallow", "denyList", "deny", "undeny", "policy", "setPolicy", "flagged"] as const;
const ALERTS_API = ["setRule", "deleteRule", "rules", "mute", "unmute", "list", "acknowledge"] as const;
const ADMIN_API = [
  "whoami",
  "credits",
  "creditsAudit",
  "rateLimits",
  "pathStats",
  "gateway",
  "adaptive",
  "protection",
  "alerts",
  "backup",
  "restore",
  "listBackups",
  "scheduleBackups",
  "backupSchedule",
  "importFromKv",
  "retention",
  "metrics",
  "costReport",
] as const;
const ACCOUNT_API = ["whoami", "account", "balance", "entries", "usage", "keys"] as const;
const ROOT_API = ["authenticate"] as const;

// Compile-time: each list is exactly its interface (a missing or extra name fails `npm run typecheck`).
const exact: [
  Exactly<RateLimitsApi, (typeof RATE_LIMITS_API)[number]>,
  Exactly<CreditsApi, (typeof CREDITS_API)[number]>,
  Exactly<CreditsAuditApi, (typeof CREDITS_AUDIT_API)[number]>,
  Exactly<PathStatsApi, (typeof PATH_STATS_API)[number]>,
  Exactly<GatewayApi, (typeof GATEWAY_API)[number]>,
  Exactly<AdaptiveApi, (typeof ADAPTIVE_API)[number]>,
  Exactly<ProtectionApi, (typeof PROTECTION_API)[number]>,
  Exactly<AlertsApi, (typeof ALERTS_API)[number]>,
  Exactly<AdminApi, (typeof ADMIN_API)[number]>,
  Exactly<AccountApi, (typeof ACCOUNT_API)[number]>,
  Exactly<TollgateRpc, (typeof ROOT_API)[number]>,
] = [true, true, true, true, true, true, true, true, true, true, true];

/** What every tollgate object answers besides its own methods: the platform alarm, and backup and restore (Admin's). */
const OBJECT_BASE = ["alarm", "exportTables", "importTables", "holdsData"] as const;

/** The methods other parts of tollgate call on each object's stub: its contract. */
const OBJECT_CONTRACTS: [Class, readonly string[]][] = [
  [
    RateLimiterDO,
    [
      ...OBJECT_BASE,
      "check",
      "checkCounts",
      "peek",
      "reset",
      "refund",
      "block",
      "unblock",
      "setOverride",
      "clearOverride",
      "acquire",
      "release",
      "heartbeat",
    ],
  ],
  [
    CreditLedgerDO,
    [
      ...OBJECT_BASE,
      "createAccount",
      "account",
      "balance",
      "grant",
      "debit",
      "reserve",
      "commit",
      "commitMany",
      "void",
      "hold",
      "refund",
      "entries",
      "createKey",
      "verifyKey",
      "revokeKey",
      "rollKey",
      "listKeys",
      "keySpend",
      "admitRequest",
      "releaseAdmission",
      "setPrices",
      "prices",
      "quote",
      "charge",
      "usage",
      "verifyChain",
      "audit",
      "auditReports",
    ],
  ],
  [PathCollectorDO, [...OBJECT_BASE, "ingest", "clientStats", "prune"]],
  [AggregatorDO, [...OBJECT_BASE, "push", "pushMany", "globalStats", "timeSeries", "topPaths", "topClients", "pathDetail", "exportPage"]],
  [AlertsDO, [...OBJECT_BASE, "setRule", "deleteRule", "rules", "mute", "unmute", "list", "acknowledge"]],
  [AdaptiveLimitsDO, [...OBJECT_BASE, "setPolicy", "deletePolicy", "policies", "state", "history", "adjustments"]],
  [
    ProtectionDO,
    [
      ...OBJECT_BASE,
      "snapshot",
      "allowList",
      "allow",
      "unallow",
      "denyList",
      "deny",
      "undeny",
      "policy",
      "setPolicy",
      "reportFlag",
      "flagged",
    ],
  ],
  [MetricsDO, [...OBJECT_BASE, "push", "query"]],
  [MaintenanceDO, [...OBJECT_BASE, "setBackupSchedule", "backupSchedule"]],
];

const TARGET_CONTRACTS: [Class, readonly string[]][] = [
  [RateLimits, RATE_LIMITS_API],
  [RateLimitsService, RATE_LIMITS_API],
  [Credits, CREDITS_API],
  [CreditsService, CREDITS_API],
  [CreditsAuditService, CREDITS_AUDIT_API],
  [PathStats, PATH_STATS_API],
  [PathStatsService, PATH_STATS_API],
  // The default entrypoint also serves HTTP: /rpc (capnweb) and the dashboard.
  [Gateway, [...GATEWAY_API, "fetch"]],
  [GatewayService, GATEWAY_API],
  [AdaptiveService, ADAPTIVE_API],
  [ProtectionService, PROTECTION_API],
  [AlertsService, ALERTS_API],
  [Admin, ADMIN_API],
  [AdminApiTarget, ADMIN_API],
  [AccountApiTarget, ACCOUNT_API],
  [TollgateRpcRoot, ROOT_API],
];

/** A class, as the lists name it (constructed by the runtime, never here). */
type Class = abstract new (...args: never[]) => unknown;

const PLATFORM_PROTOTYPES = new Set<object>([DurableObject.prototype, RpcTarget.prototype, WorkerEntrypoint.prototype, Object.prototype]);

/** Every method or accessor reachable on instances of `cls` by string name, below the platform's own classes. */
function reachableNames(cls: Class): string[] {
  const names = new Set<string>();
  for (
    let proto = cls.prototype as object;
    proto !== null && !PLATFORM_PROTOTYPES.has(proto);
    proto = Object.getPrototypeOf(proto) as object
  ) {
    for (const name of Object.getOwnPropertyNames(proto)) if (name !== "constructor") names.add(name);
  }
  return [...names].sort();
}

describe("the RPC surface", () => {
  it("ties every contract list to its rpc/ interface", () => {
    expect(exact.every(Boolean)).toBe(true);
  });

  for (const [cls, contract] of [...OBJECT_CONTRACTS, ...TARGET_CONTRACTS]) {
    it(`${cls.name} exposes only its contract`, () => {
      const extra = reachableNames(cls).filter((name) => !contract.includes(name));
      expect(extra, `${cls.name} methods reachable over RPC but not in its contract`).toEqual([]);
      const missing = contract.filter((name) => !reachableNames(cls).includes(name));
      expect(missing, `${cls.name} contract methods it does not have`).toEqual([]);
    });
  }
});

/** Names that were once reachable helpers, and the base's internals: none may run over RPC. */
const INTERNALS = [
  "saveBlock",
  "append",
  "takeFromGrants",
  "repayDebt",
  "findReplay",
  "saveReplay",
  "taskHandlers",
  "runAlarm",
  "handle",
  "now",
  "sql",
  "scheduler",
  "afterImport",
  "compact",
  "env",
  "ctx",
];

describe("a sibling bound directly to a namespace", () => {
  const cases: [string, () => DurableObjectStub][] = [
    ["RateLimiterDO", () => env.RATE_LIMITER.getByName("surface:limiter")],
    ["CreditLedgerDO", () => env.CREDIT_LEDGER.getByName("surface-ledger")],
    ["AggregatorDO", () => env.AGGREGATOR.getByName(AGGREGATOR_NAME)],
  ];
  for (const [what, stubOf] of cases) {
    it(`can call no internal of ${what}, and trying changes nothing`, async () => {
      const stub = stubOf() as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      const before = await digestObject(stub as unknown as DurableObjectStub);
      for (const name of INTERNALS) {
        const outcome = await Promise.resolve()
          .then(() => stub[name]!({ subject: "x", accountId: "x", kind: "grant", amount: 1_000_000 }))
          .then(
            () => "answered",
            () => "refused",
          );
        expect(outcome, `${what}.${name}`).toBe("refused");
      }
      expect(await digestObject(stub as unknown as DurableObjectStub)).toBe(before);
    });
  }
});
