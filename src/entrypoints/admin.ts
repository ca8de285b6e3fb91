import { WorkerEntrypoint } from "cloudflare:workers";
import type { Principal } from "../../rpc/admin";
import type { BackupInput, BackupManifest, BackupSchedule, BackupScheduleInput, BackupSummary, ImportFromKvInput, ImportFromKvReport, RestoreInput, RestoreReport } from "../../rpc/backup";
import type { Env } from "../env";
import { MAINTENANCE_NAME } from "../objects/maintenance-do";
import { AlertsService } from "../services/alerts-service";
import { BackupService } from "../services/backup-service";
import { CreditsAuditService, CreditsService } from "../services/credits-service";
import { GatewayService } from "../services/gateway-service";
import { KvImportService } from "../services/kv-import-service";
import { PathStatsService } from "../services/path-stats-service";
import { RateLimitsService } from "../services/rate-limits-service";

/**
 * `Admin`: every capability, for an operator's own Worker. Binding it grants full control,
 * so bind it only where that is intended. The same surface is `AdminApi` over capnweb.
 */
export class Admin extends WorkerEntrypoint<Env> {
  whoami(): Principal {
    return { role: "admin" };
  }

  rateLimits(): RateLimitsService {
    return new RateLimitsService(this.env);
  }

  credits(): CreditsService {
    return new CreditsService(this.env);
  }

  /** Admin-only: hash-chain verification and the ledger self-audit. */
  creditsAudit(): CreditsAuditService {
    return new CreditsAuditService(this.env);
  }

  /** Dumps the named ledgers and limiters and all path objects to the R2 bucket `BACKUPS`. */
  backup(input: BackupInput): Promise<BackupManifest> {
    return new BackupService(this.env).backup(input);
  }

  /** Rebuilds the objects of a backup (each must be empty) and verifies them. */
  restore(input: RestoreInput): Promise<RestoreReport> {
    return new BackupService(this.env).restore(input);
  }

  /** Imports the legacy KV limiter's live per-minute counters; resumable by cursor, idempotent. */
  importFromKv(input: ImportFromKvInput): Promise<ImportFromKvReport> {
    return new KvImportService(this.env).importFromKv(input);
  }

  /** Sets (or with `everyMs: null` stops) a backup of the same targets every `everyMs`, run by an alarm. */
  scheduleBackups(input: BackupScheduleInput): Promise<BackupSchedule> {
    return this.env.MAINTENANCE.getByName(MAINTENANCE_NAME).setBackupSchedule(input);
  }

  /** The backup schedule and its latest runs. */
  backupSchedule(): Promise<BackupSchedule> {
    return this.env.MAINTENANCE.getByName(MAINTENANCE_NAME).backupSchedule();
  }

  /** Complete backups in the bucket, newest first. */
  listBackups(): Promise<{ backups: BackupSummary[] }> {
    return new BackupService(this.env).list();
  }

  /** Alert rules, their alerts, acknowledgement and muting (docs/alerts.md). */
  alerts(): AlertsService {
    return new AlertsService(this.env);
  }

  pathStats(): PathStatsService {
    return new PathStatsService(this.env);
  }

  gateway(): GatewayService {
    return new GatewayService(this.env, (promise) => this.ctx.waitUntil(promise));
  }
}
