import { WorkerEntrypoint } from "cloudflare:workers";
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
import type { CreditsAuditService, CreditsService } from "../credits/service";
import type { GatewayService } from "../gateway/service";
import type { AdaptiveService } from "../operations/adaptive/service";
import type { AlertsService } from "../operations/alerts/service";
import type { ProtectionService } from "../operations/protection/service";
import type { PathStatsService } from "../path-stats/service";
import type { Env } from "../platform/env";
import type { RateLimitsService } from "../rate-limits/service";
import { AdminApiTarget } from "./admin-api";

/**
 * `Admin`: every capability, for an operator's own Worker. Binding it grants full control,
 * so bind it only where that is intended. Each call is answered by the one admin surface,
 * `AdminApiTarget` (src/admin/admin-api.ts), which capnweb hands out as `AdminApi`.
 */
export class Admin extends WorkerEntrypoint<Env> implements AdminApi {
  readonly #api = new AdminApiTarget(this.env, (promise) => this.ctx.waitUntil(promise));

  whoami(): Principal {
    return this.#api.whoami();
  }

  rateLimits(): RateLimitsService {
    return this.#api.rateLimits();
  }

  credits(): CreditsService {
    return this.#api.credits();
  }

  creditsAudit(): CreditsAuditService {
    return this.#api.creditsAudit();
  }

  backup(input: BackupInput): Promise<BackupManifest> {
    return this.#api.backup(input);
  }

  restore(input: RestoreInput): Promise<RestoreReport> {
    return this.#api.restore(input);
  }

  importFromKv(input: ImportFromKvInput): Promise<ImportFromKvReport> {
    return this.#api.importFromKv(input);
  }

  scheduleBackups(input: BackupScheduleInput): Promise<BackupSchedule> {
    return this.#api.scheduleBackups(input);
  }

  backupSchedule(): Promise<BackupSchedule> {
    return this.#api.backupSchedule();
  }

  listBackups(): Promise<{ backups: BackupSummary[] }> {
    return this.#api.listBackups();
  }

  protection(): ProtectionService {
    return this.#api.protection();
  }

  retention(input?: RetentionInput): Promise<RetentionSettings> {
    return this.#api.retention(input);
  }

  alerts(): AlertsService {
    return this.#api.alerts();
  }

  pathStats(): PathStatsService {
    return this.#api.pathStats();
  }

  adaptive(): AdaptiveService {
    return this.#api.adaptive();
  }

  gateway(): GatewayService {
    return this.#api.gateway();
  }

  metrics(input: MetricsInput): Promise<MetricsReport> {
    return this.#api.metrics(input);
  }

  costReport(input: MetricsInput): Promise<CostReport> {
    return this.#api.costReport(input);
  }
}
