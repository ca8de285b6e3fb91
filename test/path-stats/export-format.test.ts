import { describe, expect, it } from "vitest";
import { csvCell, csvHeader, csvLine, csvRow, jsonRow } from "../../src/path-stats/export-format";

describe("CSV cells (RFC 4180) and formula injection", () => {
  it("quotes cells holding commas, quotes or line breaks, doubling quotes", () => {
    expect(csvCell("plain")).toBe("plain");
    expect(csvCell("a,b")).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell("two\r\nlines")).toBe('"two\r\nlines"');
    expect(csvCell(12.5)).toBe("12.5");
    expect(csvCell(null)).toBe("");
    expect(csvLine(["a", 1, null])).toBe("a,1,\r\n");
  });

  it("defuses cells a spreadsheet would evaluate", () => {
    expect(csvCell('=HYPERLINK("http://x")')).toBe('"\'=HYPERLINK(""http://x"")"');
    expect(csvCell("+1")).toBe("'+1");
    expect(csvCell("-2+3")).toBe("'-2+3");
    expect(csvCell("@SUM(A1)")).toBe("'@SUM(A1)");
    expect(csvCell("\tx")).toBe("'\tx");
    expect(csvCell(-5)).toBe("-5");
  });

  it("writes rows in the header's column order, and JSON rows with the same keys", () => {
    expect(csvHeader()).toBe("bucketStart,granularity,method,path,requests,errors,clients,p50,p90,p99\r\n");
    const row = {
      bucketStart: Date.UTC(2026, 0, 2, 3, 4),
      granularity: "minute" as const,
      method: "GET",
      path: "/=x",
      requests: 3,
      errors: 1,
      clients: 2,
      p50: 1.5,
      p90: null,
      p99: 9,
    };
    expect(csvRow(row)).toBe("2026-01-02T03:04:00.000Z,minute,GET,/=x,3,1,2,1.5,,9\r\n");
    expect(Object.keys(JSON.parse(jsonRow(row)))).toEqual([
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
    ]);
  });
});
