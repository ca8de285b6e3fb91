import { BASELINE_IDLE_RESET_MS, type ClientBaseline } from "../operations/protection/detector";
import type { DumpTable, Migration } from "../platform/migrations";
import { all, maybeOne, run } from "../platform/sql";

/**
 * Where a collector keeps each client's anomaly baseline (docs/protection.md). Since version 3,
 * in two columns of the client's `client_paths` row that a flush writes anyway: a flush writes
 * the client's baseline into the upsert of one of the counters its hits changed, so the
 * baseline costs no row of its own. `baseline_seq` orders a client's baselines (the highest is
 * current; older ones left on other rows are ignored). Baselines an older version wrote to
 * `client_baselines` are still read until the client's next flush, and pruned there.
 */
export const BASELINES_MIGRATION: Migration = {
  version: 2,
  name: "client baselines for anomaly detection",
  up(sql) {
    sql.exec(`CREATE TABLE client_baselines (
      client TEXT PRIMARY KEY,
      minute_ms INTEGER NOT NULL,
      requests INTEGER NOT NULL,
      client_errors INTEGER NOT NULL,
      not_found INTEGER NOT NULL,
      server_errors INTEGER NOT NULL,
      minutes INTEGER NOT NULL,
      rate_mean REAL NOT NULL,
      rate_var REAL NOT NULL,
      scan_mean REAL NOT NULL,
      scan_var REAL NOT NULL,
      flagged_until_ms INTEGER NOT NULL,
      flagged_minute_ms INTEGER NOT NULL
    ) WITHOUT ROWID`);
  },
};

export const BASELINE_COLUMNS_MIGRATION: Migration = {
  version: 3,
  name: "baselines in the client's path counters",
  up(sql) {
    sql.exec("ALTER TABLE client_paths ADD COLUMN baseline TEXT");
    sql.exec("ALTER TABLE client_paths ADD COLUMN baseline_seq INTEGER");
  },
  // An older dump's counters carry no baseline; its `client_baselines` rows restore as they are.
  upgradeDump: (tables: DumpTable[]) =>
    tables.map((table) =>
      table.name === "client_paths"
        ? { ...table, columns: [...table.columns, "baseline", "baseline_seq"], rows: table.rows.map((row) => [...row, null, null]) }
        : table,
    ),
};

type LegacyRow = {
  minute_ms: number;
  requests: number;
  client_errors: number;
  not_found: number;
  server_errors: number;
  minutes: number;
  rate_mean: number;
  rate_var: number;
  scan_mean: number;
  scan_var: number;
  flagged_until_ms: number;
  flagged_minute_ms: number;
};

/** A baseline as stored in `client_paths.baseline`: a JSON array in this order (prune reads items 0 and 10). */
const FIELDS = [
  "minuteMs",
  "requests",
  "clientErrors",
  "notFound",
  "serverErrors",
  "minutes",
  "rateMean",
  "rateVar",
  "scanMean",
  "scanVar",
  "flaggedUntilMs",
  "flaggedMinuteMs",
] as const satisfies readonly (keyof ClientBaseline)[];

export function encodeBaseline(state: ClientBaseline): string {
  return JSON.stringify(FIELDS.map((field) => state[field]));
}

function decodeBaseline(text: string): ClientBaseline {
  const values = JSON.parse(text) as number[];
  return Object.fromEntries(FIELDS.map((field, i) => [field, values[i]!])) as unknown as ClientBaseline;
}

/** A changed baseline, ready to be written with one of its client's counters. */
export interface BaselineWrite {
  baseline: string;
  seq: number;
}

/**
 * The baselines of the clients seen since the last flush: each read once, then kept and changed
 * in memory; the flush takes the changed ones (written with the counters, see ClientPaths.write)
 * and starts over. Synchronous SQL only.
 */
export class BaselineCache {
  readonly #sql: SqlStorage;
  readonly #states = new Map<string, { state: ClientBaseline; seq: number }>();
  readonly #dirty = new Set<string>();

  constructor(sql: SqlStorage) {
    this.#sql = sql;
  }

  get dirty(): number {
    return this.#dirty.size;
  }

  /** The client's baseline as it stands now, or undefined for a client never seen (or pruned). */
  get(client: string): ClientBaseline | undefined {
    return this.#load(client)?.state;
  }

  set(client: string, state: ClientBaseline): void {
    const seq = this.#load(client)?.seq ?? 0;
    this.#states.set(client, { state, seq });
    this.#dirty.add(client);
  }

  /** The changed baselines, each under the next sequence number of its client; then forgets them all. */
  take(): Map<string, BaselineWrite> {
    const writes = new Map<string, BaselineWrite>();
    for (const client of this.#dirty) {
      const { state, seq } = this.#states.get(client)!;
      writes.set(client, { baseline: encodeBaseline(state), seq: seq + 1 });
    }
    this.forget();
    return writes;
  }

  /** Forgets what memory holds, written or not (as a crash would). */
  forget(): void {
    this.#dirty.clear();
    this.#states.clear();
  }

  #load(client: string): { state: ClientBaseline; seq: number } | undefined {
    const cached = this.#states.get(client);
    if (cached !== undefined) return cached;
    const stored = maybeOne<{ baseline: string; baseline_seq: number }>(
      this.#sql,
      "SELECT baseline, baseline_seq FROM client_paths WHERE client = ? AND baseline IS NOT NULL ORDER BY baseline_seq DESC LIMIT 1",
      client,
    );
    let loaded: { state: ClientBaseline; seq: number } | undefined;
    if (stored !== undefined) loaded = { state: decodeBaseline(stored.baseline), seq: stored.baseline_seq };
    else {
      const legacy = all<LegacyRow>(this.#sql, "SELECT * FROM client_baselines WHERE client = ?", client)[0];
      if (legacy !== undefined) loaded = { state: fromLegacyRow(legacy), seq: 0 };
    }
    if (loaded !== undefined) this.#states.set(client, loaded);
    return loaded;
  }
}

/** Writes a baseline whose client has no counter in the flush (none is expected) where an older version did. */
export function writeLegacyBaseline(sql: SqlStorage, client: string, baseline: string): void {
  const state = decodeBaseline(baseline);
  sql.exec(
    `INSERT OR REPLACE INTO client_baselines (client, minute_ms, requests, client_errors, not_found, server_errors, minutes,
       rate_mean, rate_var, scan_mean, scan_var, flagged_until_ms, flagged_minute_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    client,
    ...FIELDS.map((field) => state[field]),
  );
}

/** Forgets baselines of clients idle past the point where they would start from the priors anyway. */
export function pruneBaselines(sql: SqlStorage, nowMs: number): number {
  const idleBefore = nowMs - BASELINE_IDLE_RESET_MS;
  const cleared = run(
    sql,
    `UPDATE client_paths SET baseline = NULL, baseline_seq = NULL
     WHERE baseline IS NOT NULL AND json_extract(baseline, '$[0]') < ? AND json_extract(baseline, '$[10]') < ?`,
    idleBefore,
    nowMs,
  );
  return cleared + run(sql, "DELETE FROM client_baselines WHERE minute_ms < ? AND flagged_until_ms < ?", idleBefore, nowMs);
}

function fromLegacyRow(row: LegacyRow): ClientBaseline {
  return {
    minuteMs: row.minute_ms,
    requests: row.requests,
    clientErrors: row.client_errors,
    notFound: row.not_found,
    serverErrors: row.server_errors,
    minutes: row.minutes,
    rateMean: row.rate_mean,
    rateVar: row.rate_var,
    scanMean: row.scan_mean,
    scanVar: row.scan_var,
    flaggedUntilMs: row.flagged_until_ms,
    flaggedMinuteMs: row.flagged_minute_ms,
  };
}
