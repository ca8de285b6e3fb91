import type { DumpTable, Migration } from "../platform/migrations";
import { timesGoBackwards } from "./journal";

/**
 * Tables of one account's ledger. `entries` is append-only (no statement ever updates or
 * deletes it); every other table is a view the entries justify, re-checked by the audit.
 *
 * Entry ids are unique without an index row per entry (migration 8): a new id carries its
 * `seq` (entry-ids.ts), so the primary key makes it unique and finds it; an id that does not
 * (made before migration 8, or given by a caller) is kept unique and found by the partial
 * UNIQUE index `entries_by_legacy_id`, which holds only those ids. An entry writes one row.
 *
 * Likewise open holds are found without an index row per hold (migration 10): a new hold id
 * carries its expiry (hold-ids.ts) and the table is clustered on the id, so the holds due by a
 * time are a range of ids; only holds made before migration 10 are in `holds_open_legacy`.
 */
export const CREDIT_LEDGER_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "account, entries, grants, holds, idempotency, keys, prices, rollups, audits",
    up(sql) {
      sql.exec(`CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        overdraft_limit INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        granted INTEGER NOT NULL DEFAULT 0,
        held INTEGER NOT NULL DEFAULT 0,
        consumed INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0,
        held_debt INTEGER NOT NULL DEFAULT 0,
        consumed_debt INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0,
        head_hash TEXT NOT NULL
      )`);
      sql.exec(`CREATE TABLE entries (
        seq INTEGER PRIMARY KEY,
        entry_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        balance_after INTEGER NOT NULL,
        granted_after INTEGER NOT NULL,
        held_after INTEGER NOT NULL,
        consumed_after INTEGER NOT NULL,
        expired_after INTEGER NOT NULL,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      )`);
      sql.exec("CREATE INDEX entries_by_time ON entries (at_ms, seq)");
      sql.exec(`CREATE TABLE grants (
        grant_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        consumed INTEGER NOT NULL DEFAULT 0,
        repaid INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0,
        priority INTEGER NOT NULL,
        expires_at_ms INTEGER,
        expiry_booked INTEGER NOT NULL DEFAULT 0
      )`);
      sql.exec("CREATE INDEX grants_to_expire ON grants (expires_at_ms) WHERE expiry_booked = 0 AND expires_at_ms IS NOT NULL");
      sql.exec(`CREATE TABLE holds (
        hold_id TEXT PRIMARY KEY,
        amount INTEGER NOT NULL,
        status TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        key_id TEXT,
        spend_day TEXT NOT NULL,
        spend_month TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        settled_at_ms INTEGER
      )`);
      sql.exec("CREATE INDEX holds_open ON holds (expires_at_ms) WHERE status = 'open'");
      sql.exec(`CREATE TABLE hold_allocations (
        hold_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        grant_id TEXT,
        amount INTEGER NOT NULL,
        PRIMARY KEY (hold_id, ord)
      )`);
      sql.exec(`CREATE TABLE consumptions (
        entry_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        grant_id TEXT,
        amount INTEGER NOT NULL,
        refunded INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (entry_id, ord)
      )`);
      sql.exec(`CREATE TABLE idempotency (
        idempotency_key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
      )`);
      sql.exec("CREATE INDEX idempotency_by_expiry ON idempotency (expires_at_ms)");
      sql.exec(`CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        family_id TEXT NOT NULL,
        name TEXT NOT NULL,
        start TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        scopes TEXT NOT NULL,
        rules TEXT NOT NULL,
        spend_cap_day INTEGER,
        spend_cap_month INTEGER,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER,
        revoked_at_ms INTEGER,
        rolled_to TEXT
      )`);
      sql.exec(`CREATE TABLE key_spend (
        family_id TEXT NOT NULL,
        period TEXT NOT NULL,
        amount INTEGER NOT NULL,
        PRIMARY KEY (family_id, period)
      )`);
      // The limiter's state is stored whole, as JSON, so its shape can grow with new algorithms.
      sql.exec(`CREATE TABLE key_rule_states (
        family_id TEXT NOT NULL,
        rule_name TEXT NOT NULL,
        state TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (family_id, rule_name)
      )`);
      sql.exec("CREATE TABLE prices (operation TEXT NOT NULL, model TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (operation, model))");
      sql.exec(`CREATE TABLE price_carries (
        key_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        model TEXT NOT NULL,
        carry INTEGER NOT NULL,
        PRIMARY KEY (key_id, operation, model)
      )`);
      sql.exec(`CREATE TABLE usage_rollups (
        day TEXT NOT NULL,
        key_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        model TEXT NOT NULL,
        amount INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, key_id, operation, model)
      )`);
      sql.exec("CREATE TABLE audit_reports (at_ms INTEGER NOT NULL, ok INTEGER NOT NULL, body TEXT NOT NULL)");
      sql.exec(`CREATE TABLE audit_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        granted INTEGER NOT NULL,
        held INTEGER NOT NULL,
        consumed INTEGER NOT NULL,
        expired INTEGER NOT NULL,
        balance_after INTEGER NOT NULL
      )`);
      sql.exec("CREATE INDEX audit_reports_by_time ON audit_reports (at_ms)");
    },
  },
  {
    version: 2,
    name: "tokens in the usage rollups",
    up(sql) {
      // Tokens of the calls priced from usage (charge, commit with usage), for reports by model.
      for (const column of ["input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens"]) {
        sql.exec(`ALTER TABLE usage_rollups ADD COLUMN ${column} INTEGER NOT NULL DEFAULT 0`);
      }
    },
    // An older dump's rollups lack the token columns, which then take their default, 0.
    upgradeDump: (tables) => tables,
  },
  {
    version: 3,
    name: "refunded parts instead of consumptions; totals from the last entry",
    up(sql) {
      // Where a debit's or commit's credit came from is its entry's `draws` (part `ord` is the
      // draw's index); only what was refunded of a part needs a row, written by the refund.
      // Nothing writes `account`'s totals, `last_seq` and `head_hash` any more: they are the last
      // entry's (LedgerAccount.row), and the columns keep what they held when this step ran.
      sql.exec(`CREATE TABLE refunded_parts (
        entry_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        refunded INTEGER NOT NULL,
        PRIMARY KEY (entry_id, ord)
      ) WITHOUT ROWID`);
      sql.exec("INSERT INTO refunded_parts (entry_id, ord, refunded) SELECT entry_id, ord, refunded FROM consumptions WHERE refunded > 0");
      sql.exec("DROP TABLE consumptions");
    },
    upgradeDump: (tables) =>
      tables.map((table) => {
        if (table.name !== "consumptions") return table;
        const at = (column: string) => table.columns.indexOf(column);
        const rows = table.rows.filter((row) => Number(row[at("refunded")]) > 0);
        return {
          name: "refunded_parts",
          columns: ["entry_id", "ord", "refunded"],
          rows: rows.map((row) => [row[at("entry_id")]!, row[at("ord")]!, row[at("refunded")]!]),
        };
      }),
  },
  {
    version: 4,
    name: "an open hold keeps its allocations in its row",
    up(sql) {
      // One row per hold instead of one per hold and allocation: placing and settling a hold
      // write its row only. A settled hold's allocations are gone (given back or captured).
      sql.exec("ALTER TABLE holds ADD COLUMN allocations TEXT");
      sql.exec(`UPDATE holds SET allocations = (
          SELECT json_group_array(json_object('grantId', grant_id, 'amount', amount))
          FROM (SELECT grant_id, amount FROM hold_allocations a WHERE a.hold_id = holds.hold_id ORDER BY ord)
        ) WHERE status = 'open'`);
      sql.exec("DROP TABLE hold_allocations");
    },
    upgradeDump: (tables) => {
      const allocationsTable = tables.find((table) => table.name === "hold_allocations");
      const byHold = new Map<string, { ord: number; grantId: string | null; amount: number }[]>();
      if (allocationsTable !== undefined) {
        const at = (column: string) => allocationsTable.columns.indexOf(column);
        for (const row of allocationsTable.rows) {
          const holdId = String(row[at("hold_id")]);
          const grant = row[at("grant_id")];
          const part = { ord: Number(row[at("ord")]), grantId: grant === null ? null : String(grant), amount: Number(row[at("amount")]) };
          byHold.set(holdId, [...(byHold.get(holdId) ?? []), part]);
        }
      }
      return tables
        .filter((table) => table !== allocationsTable)
        .map((table) => {
          if (table.name !== "holds") return table;
          const id = table.columns.indexOf("hold_id");
          const status = table.columns.indexOf("status");
          const allocationsOf = (row: DumpTable["rows"][number]) => {
            if (row[status] !== "open") return null;
            const parts = (byHold.get(String(row[id])) ?? []).sort((a, b) => a.ord - b.ord);
            return JSON.stringify(parts.map(({ grantId, amount }) => ({ grantId, amount })));
          };
          return { ...table, columns: [...table.columns, "allocations"], rows: table.rows.map((row) => [...row, allocationsOf(row)]) };
        });
    },
  },
  {
    version: 5,
    name: "usage rollups brought up to date from the entries",
    up(sql) {
      // The last entry the rollups include (UsageRollups.catchUp); no row: none yet. An existing
      // ledger's rollups include every entry so far. An empty ledger gets no row (it holds no data).
      sql.exec("CREATE TABLE rollup_checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)");
      sql.exec("INSERT INTO rollup_checkpoint (id, seq) SELECT 1, MAX(seq) FROM entries HAVING COUNT(*) > 0");
    },
    upgradeDump: (tables) => {
      const entries = tables.find((table) => table.name === "entries");
      const seq = entries?.columns.indexOf("seq") ?? -1;
      const rows =
        entries === undefined || entries.rows.length === 0 ? [] : [[1, Math.max(...entries.rows.map((row) => Number(row[seq])))]];
      const others = tables.filter((table) => table.name !== "rollup_checkpoint");
      return [...others, { name: "rollup_checkpoint", columns: ["id", "seq"], rows }];
    },
  },
  {
    version: 6,
    name: "one spend row per key family",
    up(sql) {
      // Caps read only the current day and month: a family's latest day and month, in one row
      // written once per spend, replace a row per family and period (two written per spend).
      sql.exec(`CREATE TABLE key_spend_now (
        family_id TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        day_amount INTEGER NOT NULL,
        month TEXT NOT NULL,
        month_amount INTEGER NOT NULL
      ) WITHOUT ROWID`);
      sql.exec(`INSERT INTO key_spend_now (family_id, day, day_amount, month, month_amount)
        SELECT family_id,
          COALESCE(MAX(CASE WHEN period LIKE 'd:%' THEN period END), 'd:'), 0,
          COALESCE(MAX(CASE WHEN period LIKE 'm:%' THEN period END), 'm:'), 0
        FROM key_spend GROUP BY family_id`);
      sql.exec(`UPDATE key_spend_now SET
        day_amount = COALESCE((SELECT amount FROM key_spend s WHERE s.family_id = key_spend_now.family_id AND s.period = key_spend_now.day), 0),
        month_amount = COALESCE((SELECT amount FROM key_spend s WHERE s.family_id = key_spend_now.family_id AND s.period = key_spend_now.month), 0),
        day = substr(day, 3), month = substr(month, 3)`);
      sql.exec("DROP TABLE key_spend");
    },
    upgradeDump: (tables) =>
      tables.map((table) => {
        if (table.name !== "key_spend") return table;
        const at = (column: string) => table.columns.indexOf(column);
        const latest = new Map<string, { day: [string, number]; month: [string, number] }>();
        for (const row of table.rows) {
          const family = String(row[at("family_id")]);
          const period = String(row[at("period")]);
          const amount = Number(row[at("amount")]);
          const now = latest.get(family) ?? { day: ["", 0], month: ["", 0] };
          const slot = period.startsWith("d:") ? "day" : "month";
          if (period.slice(2) > now[slot][0]) now[slot] = [period.slice(2), amount];
          latest.set(family, now);
        }
        return {
          name: "key_spend_now",
          columns: ["family_id", "day", "day_amount", "month", "month_amount"],
          rows: [...latest].map(([family, { day, month }]) => [family, ...day, ...month]),
        };
      }),
  },
  {
    version: 7,
    name: "no index over entry times where they never go backwards",
    up(sql) {
      // New entries' times never go backwards (Journal.append), so a time is found by bisecting
      // `seq` and the index costs a row per entry for nothing. A ledger whose stored times ever
      // went backwards (a clock set back) keeps the index: bisection would misplace them.
      if (!timesGoBackwards(sql)) sql.exec("DROP INDEX entries_by_time");
    },
    // A dump holds rows, not indexes: after a restore, the ledger decides for itself (Journal.afterImport).
    upgradeDump: (tables) => tables,
  },
  {
    version: 8,
    name: "entry ids carry their seq: no index row per new entry",
    up(sql) {
      // The UNIQUE on entry_id wrote an index row per entry. The table is rebuilt without it
      // (SQLite cannot drop a column's constraint), with the same columns and rows; ids that do
      // not carry their seq, and only those, get a partial UNIQUE index (see the comment above).
      const timeIndexed = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'entries_by_time'").toArray().length > 0;
      sql.exec(`CREATE TABLE entries_rebuilt (
        seq INTEGER PRIMARY KEY,
        entry_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        balance_after INTEGER NOT NULL,
        granted_after INTEGER NOT NULL,
        held_after INTEGER NOT NULL,
        consumed_after INTEGER NOT NULL,
        expired_after INTEGER NOT NULL,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      )`);
      const columns =
        "seq, entry_id, kind, at_ms, balance_after, granted_after, held_after, consumed_after, expired_after, body, prev_hash, hash";
      sql.exec(`INSERT INTO entries_rebuilt (${columns}) SELECT ${columns} FROM entries ORDER BY seq`);
      sql.exec("DROP TABLE entries");
      sql.exec("ALTER TABLE entries_rebuilt RENAME TO entries");
      if (timeIndexed) sql.exec("CREATE INDEX entries_by_time ON entries (at_ms, seq)");
      // Journal.find repeats this predicate word for word (LEGACY_ENTRY_ID), so SQLite uses the index.
      sql.exec("CREATE UNIQUE INDEX entries_by_legacy_id ON entries (entry_id) WHERE substr(entry_id, 3, 10) <> printf('%010x', seq)");
    },
    // A dump holds rows: an older dump's entries land in the new table, and the index takes their ids.
    upgradeDump: (tables) => tables,
  },
  {
    version: 9,
    name: "idempotency records and holds without a rowid or an index they do not need",
    up(sql) {
      // A record was its row, the rowid table's automatic index over its key, and an index over
      // expiry: 3 rows. Clustered on its key it is 1. Pruning reads the table in the alarm
      // (rows read cost a thousandth of rows written), and the write path schedules the prune
      // from the record's own expiry (LedgerUpkeep), so no index over expiry is needed.
      sql.exec(`CREATE TABLE idempotency_rebuilt (
        idempotency_key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
      ) WITHOUT ROWID`);
      sql.exec(`INSERT INTO idempotency_rebuilt (idempotency_key, fingerprint, result, created_at_ms, expires_at_ms)
        SELECT idempotency_key, fingerprint, result, created_at_ms, expires_at_ms FROM idempotency`);
      sql.exec("DROP TABLE idempotency");
      sql.exec("ALTER TABLE idempotency_rebuilt RENAME TO idempotency");
      // A hold likewise: clustered on its id, it writes its row and the open-holds index, not also an index over its id.
      sql.exec(`CREATE TABLE holds_rebuilt (
        hold_id TEXT PRIMARY KEY,
        amount INTEGER NOT NULL,
        status TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        key_id TEXT,
        spend_day TEXT NOT NULL,
        spend_month TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        settled_at_ms INTEGER,
        allocations TEXT
      ) WITHOUT ROWID`);
      const holdColumns =
        "hold_id, amount, status, expires_at_ms, key_id, spend_day, spend_month, created_at_ms, settled_at_ms, allocations";
      sql.exec(`INSERT INTO holds_rebuilt (${holdColumns}) SELECT ${holdColumns} FROM holds`);
      sql.exec("DROP TABLE holds");
      sql.exec("ALTER TABLE holds_rebuilt RENAME TO holds");
      sql.exec("CREATE INDEX holds_open ON holds (expires_at_ms) WHERE status = 'open'");
    },
    // Same columns: a dump's rows go into the new tables as they are.
    upgradeDump: (tables) => tables,
  },
  {
    version: 10,
    name: "open holds found by their ids, which carry their expiry, not by an index",
    up(sql) {
      // Holds placed from now on carry their expiry in their id (hold-ids.ts): the ids due by a
      // time are a range of the primary key. The index keeps only the holds made before, and
      // its condition repeats LEGACY_HOLD_ID word for word, so a query that does uses it.
      sql.exec("DROP INDEX holds_open");
      sql.exec(
        "CREATE INDEX holds_open_legacy ON holds (expires_at_ms) WHERE status = 'open' AND substr(hold_id, 3, 11) <> printf('%011x', expires_at_ms)",
      );
    },
    // Same columns: a dump's rows go into the table as they are, and the index takes the legacy ones.
    upgradeDump: (tables) => tables,
  },
  {
    version: 11,
    name: "a settled hold keeps the idempotency record of the call that settled it",
    up(sql) {
      // Written with the settle's one write of the row (Holds.close), where a record in the
      // idempotency table was a row and, when pruned, a deletion. The unique index finds a key
      // and keeps it one key across the account (the store searches both places).
      sql.exec("ALTER TABLE holds ADD COLUMN settle_key TEXT");
      sql.exec("ALTER TABLE holds ADD COLUMN settle_request TEXT");
      sql.exec("ALTER TABLE holds ADD COLUMN settle_result TEXT");
      sql.exec("CREATE UNIQUE INDEX holds_by_settle_key ON holds (settle_key) WHERE settle_key IS NOT NULL");
    },
    // New columns only: a dump from before has none, and its holds keep no record.
    upgradeDump: (tables) => tables,
  },
];
