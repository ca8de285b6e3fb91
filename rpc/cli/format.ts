/** Renders rows as a plain-text table with a header line; every cell is stringified. */
export function table(headers: string[], rows: unknown[][]): string {
  const cells = [headers, ...rows.map((row) => row.map((cell) => (cell === undefined || cell === null ? "" : String(cell))))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => row[column]!.length)));
  return cells
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** A time as an ISO string plus how far away it is, e.g. `2026-11-22T21:05:00.000Z (in 42s)`. */
export function when(epochMs: number, nowMs: number = Date.now()): string {
  const delta = Math.round((epochMs - nowMs) / 1000);
  const relative = delta === 0 ? "now" : delta > 0 ? `in ${delta}s` : `${-delta}s ago`;
  return `${new Date(epochMs).toISOString()} (${relative})`;
}
