/**
 * The issue's targets, judged on the rows of one run. A target whose rows are missing or
 * not measured (the capability is not built yet) is "n/a". Targets never fail the build.
 */
import { budgetValue, COST_BUDGETS } from "./harness/cost";
import type { Row, Target } from "./harness/types";
import { ANSWERING_REFERENCE } from "./scenarios/lean";

const measured = (rows: readonly Row[], prefix: string) => rows.filter((row) => row.id.startsWith(prefix) && row.measured !== undefined);

const byId = (rows: readonly Row[], id: string) => rows.find((row) => row.id === id && row.measured !== undefined);

const fmt = (value: number) => value.toFixed(2);

const where = (row: Row) => `${row.route ?? "?"} @${row.concurrency ?? "?"}`;

/** Every row with the prefix has a ratio to the ceiling of at least `min`. */
function throughputAtLeast(prefix: string, min: number) {
  return (rows: readonly Row[]) => {
    const candidates = measured(rows, prefix).filter((row) => row.measured!.ratioToCeiling !== undefined);
    if (candidates.length === 0) return undefined;
    const worst = candidates.reduce((a, b) => (a.measured!.ratioToCeiling! <= b.measured!.ratioToCeiling! ? a : b));
    const ratio = worst.measured!.ratioToCeiling!;
    const all = candidates.map((row) => `${where(row)}: ${fmt(row.measured!.ratioToCeiling!)}`).join(", ");
    return { pass: ratio >= min, detail: `lowest ${fmt(ratio)} × ceiling (${where(worst)}); ${all}` };
  };
}

/** Throughput at the largest window is at least `min` × throughput at the smallest. */
function flatAcrossWindows(prefix: string, min: number) {
  return (rows: readonly Row[]) => {
    const small = byId(rows, `${prefix}.100`);
    const large = byId(rows, `${prefix}.10000`);
    if (!small || !large) return undefined;
    const ratio = large.measured!.opsPerSec / small.measured!.opsPerSec;
    return {
      pass: ratio >= min,
      detail: `${Math.round(large.measured!.opsPerSec)} ops/s at 10,000 vs ${Math.round(small.measured!.opsPerSec)} at 100: ${fmt(ratio)} ×`,
    };
  };
}

/** The row's throughput against its ceiling (here the one-write ceiling) is at least `min`; p50 and p99 beside it. */
function againstWriteCeiling(id: string, min: number) {
  return (rows: readonly Row[]) => {
    const row = byId(rows, id);
    if (row?.measured?.ratioToCeiling === undefined) return undefined;
    const m = row.measured;
    const ratio = m.ratioToCeiling!;
    const ceilingP50 = Number(row.extra?.ceilingP50Ms ?? 0);
    const answering = row.extra?.[`× ${ANSWERING_REFERENCE}`];
    const beside =
      answering === undefined
        ? ""
        : `; ${fmt(Number(answering))} × the same write carrying check's input and a decision (${row.extra?.[`${ANSWERING_REFERENCE} ops/s`]} ops/s${row.extra?.answerShapeMatches === false ? ", WARNING: its answer's shape differs from check's" : ""})`;
    return {
      pass: ratio >= min,
      detail: `${fmt(ratio)} × the one-write ceiling (${Math.round(m.opsPerSec)} vs ${row.extra?.ceilingOpsPerSec} ops/s); p50 ${fmt(m.p50Ms)} ms, p99 ${fmt(m.p99Ms)} ms (ceiling p50 ${fmt(ceilingP50)} ms)${beside}`,
    };
  };
}

export const TARGETS: readonly Target[] = [
  {
    id: "lean-check",
    description: "check, 1 rule, one subject, 16 callers ≥ 1.0 × the one-write ceiling",
    judge: againstWriteCeiling("lean.check.one-subject", 1.0),
  },
  {
    id: "lean-authorize-cost",
    description: "authorize(cost) with a key, 16 callers ≥ 0.25 × the one-write ceiling",
    judge: againstWriteCeiling("lean.authorize.cost", 0.25),
  },
  {
    id: "check-1-rule",
    description: "one-rule check ≥ 0.9 × ceiling throughput",
    judge: throughputAtLeast("tollgate.check.1-rule.", 0.9),
  },
  {
    id: "check-5-rule",
    description: "five-rule check ≥ 0.8 × ceiling throughput",
    judge: throughputAtLeast("tollgate.check.5-rule.", 0.8),
  },
  {
    id: "authorize-p50",
    description: "authorize p50 ≤ 1.5 × ceiling p50",
    judge(rows) {
      // Every single-call authorize row (anonymous, key + estimate, key + cost) at every concurrency level.
      const candidates = ["anonymous", "estimate", "cost"].flatMap((kind) => measured(rows, `tollgate.authorize.${kind}`));
      if (candidates.length === 0) return undefined;
      // workerd's clock ticks in whole ms: below a few ms, p50s are too coarse to divide, so the mean is used.
      const ratioOf = (row: Row) => {
        const useP50 = Number(row.extra?.ceilingP50Ms ?? 0) >= 5 && row.measured!.p50RatioToCeiling !== undefined;
        return { ratio: (useP50 ? row.measured!.p50RatioToCeiling : row.measured!.meanRatioToCeiling) ?? Infinity, useP50 };
      };
      const worst = candidates.reduce((a, b) => (ratioOf(a).ratio >= ratioOf(b).ratio ? a : b));
      const all = candidates
        .map(
          (row) =>
            `${row.id.slice("tollgate.authorize.".length)} @${row.concurrency}: ${fmt(ratioOf(row).ratio)}${ratioOf(row).useP50 ? " (p50)" : " (mean)"}`,
        )
        .join(", ");
      const { ratio } = ratioOf(worst);
      return {
        pass: ratio <= 1.5,
        detail: `highest ${fmt(ratio)} × ceiling (${worst.id.slice("tollgate.authorize.".length)} @${worst.concurrency}; p50 where the ceiling's p50 is ≥ 5 ms, else mean latency); ${all}`,
      };
    },
  },
  {
    id: "exact-counts",
    description: "tollgate counts exactly at every concurrency level (KV loss beside it)",
    judge(rows) {
      const exact = rows.filter((row) => row.id === "exactness.tollgate");
      if (exact.length === 0) return undefined;
      const inexact = exact.filter((row) => row.extra?.counted !== row.extra?.increments || row.measured?.errors !== 0);
      const kv = rows
        .filter((row) => row.id === "baseline.kv-counter")
        .map((row) => `${row.extra?.callers}: ${(Number(row.extra?.survived) * 100).toFixed(1)}%`)
        .join(", ");
      return {
        pass: inexact.length === 0,
        detail: `${
          inexact.length === 0
            ? `exact at ${exact.map((row) => row.extra?.callers).join(", ")} callers`
            : `inexact at ${inexact.map((row) => row.extra?.callers).join(", ")} callers`
        }; KV kept ${kv}`,
      };
    },
  },
  {
    id: "sliding-window-flat",
    description: "sliding_window throughput at 10,000 entries ≥ 0.8 × at 100",
    judge: flatAcrossWindows("tollgate.sliding_window", 0.8),
  },
  {
    id: "sliding-log-flat",
    description: "sliding_log throughput at 10,000 entries ≥ 0.8 × at 100",
    judge(rows) {
      const measured = flatAcrossWindows("tollgate.sliding_log", 0.8)(rows);
      if (measured) return measured;
      const slot = rows.find((row) => row.id === "tollgate.sliding_log.10000");
      return slot?.note?.startsWith("not measured") ? { na: slot.note } : undefined;
    },
  },
  {
    id: "top-paths-flat",
    description: "topPaths over 30 days at 10,000 clients ≤ 1.2 × the time at 100",
    judge(rows) {
      const small = byId(rows, "tollgate.top-paths-30d.100");
      const large = byId(rows, "tollgate.top-paths-30d.10000");
      if (!small || !large) return undefined;
      // Mean latency: single latencies tick in whole ms (see docs/benchmarks.md, "Latency").
      const ratio = large.measured!.meanMs / small.measured!.meanMs;
      return {
        pass: ratio <= 1.2,
        detail: `mean ${fmt(large.measured!.meanMs)} ms at 10,000 clients vs ${fmt(small.measured!.meanMs)} ms at 100: ${fmt(ratio)} ×`,
      };
    },
  },
  {
    id: "top-paths-vs-fan-out",
    description: "topPaths ≥ 10 × faster than the fan-out design at 1,000 IPs",
    judge(rows) {
      const ours = byId(rows, "tollgate.top-paths-30d.1000");
      const theirs = rows.find((row) => row.id === "baseline.fan-out.1000");
      if (!ours || !theirs) return undefined;
      if (theirs.measured === undefined || theirs.measured.ops === 0) {
        if (!theirs.note?.startsWith(">")) return theirs.note?.startsWith("not measured") ? { na: theirs.note } : undefined;
        return { pass: true, detail: `the fan-out query did not finish (${theirs.note}); topPaths mean ${fmt(ours.measured!.meanMs)} ms` };
      }
      const ratio = theirs.measured!.meanMs / ours.measured!.meanMs;
      return {
        pass: ratio >= 10,
        detail: `fan-out mean ${fmt(theirs.measured!.meanMs)} ms vs topPaths ${fmt(ours.measured!.meanMs)} ms: ${fmt(ratio)} × faster`,
      };
    },
  },
  // The issue's cost budgets (bench/scenarios/cost.ts): rows written, or object requests, per operation.
  ...COST_BUDGETS.map(
    (budget): Target => ({
      id: budget.id,
      description: budget.description,
      judge(rows) {
        const value = budgetValue(budget, rows);
        if (value === undefined) return undefined;
        const unit = budget.rowId === "cost.record-many" ? "hit" : budget.metric === "requests" ? "gateway request" : "operation";
        const what = budget.metric === "requests" ? "object requests" : "rows written";
        return { pass: value <= budget.max, detail: `${value < 1 ? value.toFixed(3) : fmt(value)} ${what} per ${unit}` };
      },
    }),
  ),
];

export interface TargetResult {
  id: string;
  description: string;
  status: "PASS" | "FAIL" | "n/a";
  detail: string;
}

export function judgeTargets(rows: readonly Row[]): TargetResult[] {
  return TARGETS.map((target) => {
    const verdict = target.judge(rows);
    if (verdict === undefined) {
      return { id: target.id, description: target.description, status: "n/a", detail: "n/a (capability not built yet)" };
    }
    if ("na" in verdict) return { id: target.id, description: target.description, status: "n/a", detail: `n/a (${verdict.na})` };
    return { id: target.id, description: target.description, status: verdict.pass ? "PASS" : "FAIL", detail: verdict.detail };
  });
}
