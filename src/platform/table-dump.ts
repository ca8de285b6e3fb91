import * as v from "valibot";
import { conflict, invalidArgument } from "./errors";
import { integer, text } from "./schemas";
import { all } from "./sql";
import { dumpUpgrades } from "./migrations";
import { METRICS_PUSH_TASK, METRICS_TABLES } from "./metering/object-metrics";

/** A stored value in a dump: SQLite's scalars, with blobs as base64 (`{ b64 }`). */
const cell = v.union([
  v.null(),
  v.string(),
  v.pipe(
    v.number(),
    v.check((n) => Number.isFinite(n), "must be finite"),
  ),
  v.strictObject({ b64: v.pipe(v.string(), v.regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64")) }),
]);

const identifier = v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, "must be a plain SQL identifier"));

/** One object's tables, as `exportTables` writes them. Never trusted: `importTables` re-checks against its own schema. */
export const objectDumpSchema = v.strictObject({
  format: v.literal(1),
  versions: v.record(text(1, 64), integer(0, 1_000_000)),
  tables: v.pipe(
    v.array(
      v.strictObject({
        name: identifier,
        columns: v.pipe(v.array(identifier), v.minLength(1), v.maxLength(200)),
        rows: v.array(v.array(cell)),
      }),
    ),
    v.maxLength(100),
  ),
});

/** One object's tables: what a backup stores per object and what a restore imports. */
export type ObjectDump = v.InferOutput<typeof objectDumpSchema>;
type Cell = ObjectDump["tables"][number]["rows"][number][number];

/**
 * The object's own tables and the scheduler's `_tasks`, but not `_migrations` (a restored
 * object has applied the same migrations itself; the dump records their versions instead)
 * nor the runtime's internal tables, nor metrics (`_metrics*` and the push task): counts are
 * not state, and a restored object must not push the source's counts a second time.
 */
function dataTables(sql: SqlStorage): string[] {
  return all<{ name: string }>(
    sql,
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_migrations' ORDER BY name",
  )
    .map((row) => row.name)
    .filter((name) => !(METRICS_TABLES as readonly string[]).includes(name));
}

/** Rows of `table` that belong in a backup: the metrics push task is left out with the metrics. */
function backedUp(table: string): string {
  return table === "_tasks" ? `WHERE kind <> '${METRICS_PUSH_TASK}'` : "";
}

function columnsOf(sql: SqlStorage, table: string): string[] {
  return all<{ name: string }>(sql, "SELECT name FROM pragma_table_info(?) ORDER BY cid", table).map((row) => row.name);
}

/**
 * Schema versions per component, metrics left out: their tables are not in a dump, so a backup
 * taken before metrics existed restores into an object that has them.
 */
function versionsOf(sql: SqlStorage): Record<string, number> {
  const versions: Record<string, number> = {};
  for (const row of all<{ component: string; version: number }>(
    sql,
    "SELECT component, MAX(version) AS version FROM _migrations WHERE component <> 'metrics' GROUP BY component",
  )) {
    versions[row.component] = row.version;
  }
  return versions;
}

function encodeCell(value: SqlStorageValue): Cell {
  if (value instanceof ArrayBuffer) {
    let binary = "";
    for (const byte of new Uint8Array(value)) binary += String.fromCharCode(byte);
    return { b64: btoa(binary) };
  }
  return value;
}

function decodeCell(cell: Cell): SqlStorageValue {
  if (cell !== null && typeof cell === "object") {
    const binary = atob(cell.b64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }
  return cell;
}

/** Whether any data table (`_tasks` included) holds a row: a restore goes only where none does. */
export function holdsData(sql: SqlStorage): boolean {
  return dataTables(sql).some((table) => all(sql, `SELECT 1 AS x FROM "${table}" ${backedUp(table)} LIMIT 1`).length > 0);
}

/** Every row of every data table, in primary-key order (so equal states give equal dumps). */
export function exportTables(sql: SqlStorage): ObjectDump {
  return {
    format: 1,
    versions: versionsOf(sql),
    tables: dataTables(sql).map((name) => {
      const columns = columnsOf(sql, name);
      const list = columns.map((c) => `"${c}"`).join(", ");
      const rows = [...sql.exec(`SELECT ${list} FROM "${name}" ${backedUp(name)} ORDER BY ${list}`).raw()];
      return { name, columns, rows: rows.map((row) => row.map(encodeCell)) };
    }),
  };
}

/**
 * A dump taken at older schema versions, brought to `mine` where every step between knows how
 * (`Migration.upgradeDump`); any other component is left as it was, for the version check.
 */
function upgraded(dump: ObjectDump, mine: Record<string, number>): ObjectDump {
  let result = dump;
  for (const [component, version] of Object.entries(dump.versions)) {
    const target = mine[component];
    const steps = target === undefined || version >= target ? undefined : dumpUpgrades(component, version, target);
    if (steps === undefined) continue;
    let tables = result.tables;
    for (const step of steps) tables = step(tables);
    result = { ...result, versions: { ...result.versions, [component]: target! }, tables };
  }
  return result;
}

/**
 * Writes a validated dump into an empty object, all or nothing. A dump from older schema
 * versions is first upgraded where its migrations say how. Refuses (changing nothing) a dump
 * from other schema versions, naming unknown tables or columns, with ragged rows, or rows the
 * tables' constraints reject, and any import into an object that holds data. Returns the rows
 * written per table; for an upgraded dump, also the rows each of its original tables held
 * (what a backup's manifest counted), converted ones included.
 */
export function importTables(storage: DurableObjectStorage, original: ObjectDump): Record<string, number> {
  const sql = storage.sql;
  const mine = versionsOf(sql);
  const dump = upgraded(original, mine);
  for (const component of new Set([...Object.keys(mine), ...Object.keys(dump.versions)])) {
    if (mine[component] !== dump.versions[component]) {
      throw conflict(
        `the backup's ${component} schema is at version ${dump.versions[component] ?? "none"}, this object's at ${mine[component] ?? "none"}`,
      );
    }
  }
  const tables = new Set(dataTables(sql));
  const seen = new Set<string>();
  for (const table of dump.tables) {
    if (!tables.has(table.name)) throw invalidArgument(`no table ${table.name} in this object`);
    if (seen.has(table.name)) throw invalidArgument(`table ${table.name} appears twice`);
    seen.add(table.name);
    const columns = new Set(columnsOf(sql, table.name));
    if (new Set(table.columns).size !== table.columns.length) throw invalidArgument(`table ${table.name} names a column twice`);
    for (const column of table.columns) if (!columns.has(column)) throw invalidArgument(`no column ${table.name}.${column}`);
    for (const row of table.rows)
      if (row.length !== table.columns.length)
        throw invalidArgument(`a row of ${table.name} has ${row.length} cells for ${table.columns.length} columns`);
  }
  if (holdsData(sql)) throw conflict("the object already holds data; restore only into an empty object");
  const written: Record<string, number> = {};
  try {
    storage.transactionSync(() => {
      for (const table of dump.tables) {
        const insert = `INSERT INTO "${table.name}" (${table.columns.map((c) => `"${c}"`).join(", ")}) VALUES (${table.columns.map(() => "?").join(", ")})`;
        for (const row of table.rows) sql.exec(insert, ...row.map(decodeCell));
        written[table.name] = table.rows.length;
      }
    });
  } catch (error) {
    throw invalidArgument(`the backup's rows do not fit this object: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (dump === original) return written;
  return { ...Object.fromEntries(original.tables.map((table) => [table.name, table.rows.length])), ...written };
}
