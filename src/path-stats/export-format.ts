import type { ExportRow } from "../../rpc/path-stats";

/** Column order of CSV exports (and key order of JSON rows). */
export const EXPORT_COLUMNS = [
  "bucketStart",
  "granularity",
  "method",
  "path",
  "requests",
  "errors",
  "clients",
  "p50",
  "p90",
  "p99",
] as const;

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break, quotes
 * doubled. A text cell starting with `=`, `+`, `-`, `@`, tab or CR is prefixed with `'` so a
 * spreadsheet shows it instead of evaluating it (OWASP, CSV injection).
 */
export function csvCell(value: string | number | null): string {
  if (value === null) return "";
  if (typeof value === "number") return String(value);
  let text = value;
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One CSV record, CRLF-terminated as RFC 4180 asks. */
export function csvLine(values: readonly (string | number | null)[]): string {
  return `${values.map(csvCell).join(",")}\r\n`;
}

export const csvHeader = () => csvLine(EXPORT_COLUMNS);

export function csvRow(row: ExportRow): string {
  return csvLine([
    new Date(row.bucketStart).toISOString(),
    row.granularity,
    row.method,
    row.path,
    row.requests,
    row.errors,
    row.clients,
    row.p50,
    row.p90,
    row.p99,
  ]);
}

export function jsonRow(row: ExportRow): string {
  return JSON.stringify(Object.fromEntries(EXPORT_COLUMNS.map((column) => [column, row[column]])));
}
