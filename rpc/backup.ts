/**
 * Backup and restore contract: `Admin.backup()`, `Admin.restore()` over a Workers binding and over capnweb.
 * Types only. See docs/operations.md for the runbook.
 */

/** Which objects a backup covers. Durable Objects cannot be listed, so accounts and subjects are named. */
export interface BackupInput {
  to: "r2";
  /** Credit ledgers to include, by account id. */
  accounts?: string[];
  /** Rate-limiter objects to include, by subject. */
  subjects?: string[];
  /** Include the path-statistics collectors and aggregator. Default true. */
  paths?: boolean;
  /**
   * Include every control object (`ControlBinding`: deployment-wide state that belongs to no
   * account or subject). Default true.
   */
  control?: boolean;
  /**
   * The protection object alone, overriding `control` for it (kept from before `control`
   * existed): `protection: true` includes it even with `control: false`, `false` leaves it out.
   */
  protection?: boolean;
}

/** Objects backed up by name (accounts, subjects) or as the path-statistics set. */
export type DataBinding = "CREDIT_LEDGER" | "RATE_LIMITER" | "PATH_COLLECTOR" | "AGGREGATOR";
/**
 * The control objects, one instance each (or a fixed set): protection lists and policy,
 * adaptive policies, the backup schedule. Registered in src/operations/backup/control-objects.ts.
 */
export type ControlBinding = "PROTECTION" | "ADAPTIVE_LIMITS" | "MAINTENANCE" | "ALERTS";

/** One object in a backup: where it came from and how many rows each table held. */
export interface BackedUpObject {
  binding: DataBinding | ControlBinding;
  name: string;
  /** The R2 key of its dump. */
  key: string;
  rows: Record<string, number>;
}

export interface BackupManifest {
  backupId: string;
  createdAt: number;
  objects: BackedUpObject[];
}

export interface RestoreInput {
  backupId: string;
  /** Default true. `false` restores only the data objects and leaves the control objects as they are. */
  control?: boolean;
}

/** What a restore did and what its verification found; `ok` only when every check passed. */
export interface RestoreReport {
  backupId: string;
  ok: boolean;
  objects: number;
  rows: number;
  /** Row counts that differ from the manifest, ledgers whose chain or totals fail the audit. */
  problems: string[];
}

export interface BackupSummary {
  backupId: string;
  createdAt: number;
  objects: number;
}

/** Backup methods of `Admin` (and `AdminApi` over capnweb). */
export interface BackupApi {
  backup(input: BackupInput): Promise<BackupManifest>;
  restore(input: RestoreInput): Promise<RestoreReport>;
  /** Complete backups in the bucket, newest first. */
  listBackups(): Promise<{ backups: BackupSummary[] }>;
  /** Imports the legacy KV limiter's live counters (idempotent, resumable by cursor). */
  importFromKv(input: ImportFromKvInput): Promise<ImportFromKvReport>;
  /** Sets (or with `everyMs: null` stops) scheduled backups. */
  scheduleBackups(input: BackupScheduleInput): Promise<BackupSchedule>;
  backupSchedule(): Promise<BackupSchedule>;
}

/** `Admin.importFromKv`: legacy per-minute counters (`ratelimit:<keyId>:minute:<yyyyMMddHHmm[ss]>` → count). */
export interface ImportFromKvInput {
  /** The legacy limit per minute; becomes the fixed-window rule `ruleName` (60 s) of each subject. */
  limit: number;
  /** Default "minute". Use the name your policy's minute rule has, so imported counts land in it. */
  ruleName?: string;
  /** Prepended to the legacy key id to form the tollgate subject. Default "". */
  subjectPrefix?: string;
  /** From the previous report, to resume. */
  cursor?: string;
  /** KV keys read per call, 1–1,000; default 500. */
  batch?: number;
}

export interface ImportFromKvReport {
  scanned: number;
  imported: { key: string; subject: string; count: number }[];
  /** Keys not imported and why: malformed key or value, a window already over, an empty count, a full window. */
  skipped: { key: string; reason: string }[];
  /** Present when more keys follow: pass it back to continue. */
  cursor?: string;
}

/** `Admin.scheduleBackups`: a backup of the same targets every `everyMs`, run by an alarm. */
export interface BackupScheduleInput {
  /** 1 hour to 30 days; `null` stops scheduled backups. */
  everyMs: number | null;
  accounts?: string[];
  subjects?: string[];
  paths?: boolean;
  /** The control objects, as in `BackupInput`. Default true. */
  control?: boolean;
}

export interface BackupSchedule {
  everyMs: number | null;
  accounts: string[];
  subjects: string[];
  paths: boolean;
  control: boolean;
  /** When the next scheduled backup is due; null when stopped. */
  nextAt: number | null;
  /** The latest runs, newest first. */
  runs: { slotMs: number; backupId: string; at: number }[];
}
