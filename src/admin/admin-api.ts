import { RpcTarget } from "cloudflare:workers";
import type { AdminApi, Principal } from "../../rpc/admin";
import type {
  BackupInput,
  BackupManifest,
  BackupSchedule,
  BackupScheduleInput,
  BackupSummary,
  ImportFromKvInput,
  ImportFromKvReport,
  RestoreInput,
  RestoreReport,
} from "../../rpc/backup";
import type { CostReport, MetricsInput, MetricsReport } from "../../rpc/metrics";
import type { RetentionInput, RetentionSettings } from "../../rpc/retention";
import { CreditsAuditService, CreditsService } from "../credits/service";
import { GatewayService, type WaitUntil } from "../gateway/service";
import { AdaptiveService } from "../operations/adaptive/service";
import { AlertsService } from "../operations/alerts/service";
import { KvImportService } from "../operations/backup/kv-import-service";
import { BackupService } from "../operations/backup/service";
import { MetricsService } from "../operations/metrics/service";
import { ProtectionService } from "../operations/protection/service";
import { PathStatsService } from "../path-stats/service";
import type { Env } from "../platform/env";
import { MAINTENANCE_NAME } from "../platform/names";
import { RateLimitsService } from "../rate-limits/service";
import { retentionSettings } from "./retention-settings";

/**
 * The one admin surface: every capability. capnweb's `authenticate(adminToken)` hands it out
 * as `AdminApi`, and the `Admin` entrypoint (src/admin/entrypoint.ts) answers each call with it,
 * so the two cannot drift apart. The Worker's `waitUntil` lets the gateway record hits after it answers.
 */
export class AdminApiTarget extends RpcTarget implements AdminApi {
  readonly #env: Env;
  readonly #waitUntil: WaitUntil;

  constructor(env: Env, waitUntil: WaitUntil) {
    super();
    this.#env = env;
    this.#waitUntil = waitUntil;
  }

  whoami(): Principal {
    return { role: "admin" };
  }

  rateLimits(): RateLimitsService {
    return new RateLimitsService(this.#env);
  }

  credits(): CreditsService {
    return new CreditsService(this.#env);
  }

  /** Admin-only: hash-chain verification and the ledger self-audit. */
  creditsAudit(): CreditsAuditService {
    return new CreditsAuditService(this.#env);
  }

  /** Dumps the named ledgers and limiters and all path objects to the R2 bucket `BACKUPS`. */
  backup(input: BackupInput): Promise<BackupManifest> {
    return new BackupService(this.#env).backup(input);
  }

  /** Rebuilds the objects of a backup (each must be empty) and verifies them. */
  restore(input: RestoreInput): Promise<RestoreReport> {
    return new BackupService(this.#env).restore(input);
  }

  /** Imports the legacy KV limiter's live per-minute counters; resumable by cursor, idempotent. */
  importFromKv(input: ImportFromKvInput): Promise<ImportFromKvReport> {
    return new KvImportService(this.#env).importFromKv(input);
  }

  /** Sets (or with `everyMs: null` stops) a backup of the same targets every `everyMs`, run by an alarm. */
  scheduleBackups(input: BackupScheduleInput): Promise<BackupSchedule> {
    return this.#env.MAINTENANCE.getByName(MAINTENANCE_NAME).setBackupSchedule(input);
  }

  /** The backup schedule and its latest runs. */
  backupSchedule(): Promise<BackupSchedule> {
    return this.#env.MAINTENANCE.getByName(MAINTENANCE_NAME).backupSchedule();
  }

  /** Complete backups in the bucket, newest first. */
  listBackups(): Promise<{ backups: BackupSummary[] }> {
    return new BackupService(this.#env).list();
  }

  /** Allow and deny lists, the run-time anomaly policy, and the flag log (docs/protection.md). */
  protection(): ProtectionService {
    return new ProtectionService(this.#env);
  }

  /** The effective retention of every data class (or one): what is kept how long, set where, deleted by what. */
  async retention(input?: RetentionInput): Promise<RetentionSettings> {
    return retentionSettings(this.#env, input);
  }

  /** Alert rules, their alerts, acknowledgement and muting (docs/alerts.md). */
  alerts(): AlertsService {
    return new AlertsService(this.#env);
  }

  pathStats(): PathStatsService {
    return new PathStatsService(this.#env);
  }

  /** Adaptive limits: policies that tighten named rules while a signal is past a threshold. */
  adaptive(): AdaptiveService {
    return new AdaptiveService(this.#env);
  }

  gateway(): GatewayService {
    return new GatewayService(this.#env, this.#waitUntil);
  }

  /** Calls, outcomes, latency and SQLite rows per object class / entrypoint and method (docs/metrics.md). */
  metrics(input: MetricsInput): Promise<MetricsReport> {
    return new MetricsService(this.#env).metrics(input);
  }

  /** The Cloudflare bill estimated from the measured figures, with a monthly projection. */
  costReport(input: MetricsInput): Promise<CostReport> {
    return new MetricsService(this.#env).costReport(input);
  }
}
