/**
 * Runs the registered scenarios against one workerd process and collects the rows, the
 * targets' verdicts, memory and the machine it ran on. Writes nothing: bench/run.ts does.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { SCENARIOS } from "../scenarios/index";
import { judgeTargets, type TargetResult } from "../targets";
import { summarize } from "./stats";
import type { BenchContext, DriveResult, Json, LoopBounds, MeasureSpec, Mode, Params, Row } from "./types";
import { startRuntime } from "./workerd";

/** How long and how hard each mode measures. */
export const MODES: Record<Mode, ModeSettings> = {
  quick: { concurrencyLevels: [1, 16], rounds: 2, windowMs: 300, warmupMs: 150, maxOps: 20_000, budgetMs: 105_000 },
  full: { concurrencyLevels: [1, 8, 32, 128], rounds: 3, windowMs: 1_200, warmupMs: 300, maxOps: 200_000, budgetMs: 14 * 60_000 },
  test: { concurrencyLevels: [4], rounds: 1, windowMs: 250, warmupMs: 50, maxOps: 5_000, budgetMs: 30_000 },
};

export interface ModeSettings {
  concurrencyLevels: number[];
  /** Each measurement alternates op and ceiling this many times. */
  rounds: number;
  /** Length of one measured window. */
  windowMs: number;
  /** Untimed warm-up before each measurement (object creation, JIT). */
  warmupMs: number;
  /** Cap on the calls of one window, whatever its length. */
  maxOps: number;
  /** The whole run stops measuring after this; remaining scenarios are reported as skipped. */
  budgetMs: number;
}

export interface RunOptions {
  mode: Mode;
  /** Scenario ids to run; all when absent. */
  only?: string[];
  /**
   * Where workerd keeps Durable Object storage. "memory" (default where /dev/shm exists):
   * a tmpfs directory, so a commit costs what SQLite costs, not what this machine's disk
   * takes to fsync. "disk": the OS temp directory, as `wrangler dev` would use.
   */
  storage?: "memory" | "disk";
  log?: (line: string) => void;
}

export interface BenchResults {
  mode: Mode;
  date: string;
  durationMs: number;
  settings: ModeSettings;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    node: string;
    workerd: string;
    miniflare: string;
    platform: string;
    loadAverageAtStart: number[];
    /** Where Durable Object storage lived during the run (see RunOptions.storage). */
    storage: "memory" | "disk";
  };
  rows: Row[];
  targets: TargetResult[];
  memory: {
    workerdPeakRssBytes: number | null;
    workerdRssAtEndBytes: number | null;
    byScenario: Array<{ scenario: string; peakRssBytes: number | null }>;
  };
  skipped: string[];
}

class BudgetExceeded extends Error {}

export async function runBench(options: RunOptions): Promise<BenchResults> {
  const settings = MODES[options.mode];
  const log = options.log ?? (() => {});
  const started = Date.now();
  const deadline = started + settings.budgetMs;
  const storage = options.storage ?? (existsSync("/dev/shm") ? "memory" : "disk");
  // miniflare puts its per-instance storage under os.tmpdir(), which follows TMPDIR.
  const previousTmp = process.env.TMPDIR;
  const tmp = storage === "memory" ? mkdtempSync(join("/dev/shm", "tollgate-bench-")) : undefined;
  if (tmp) process.env.TMPDIR = tmp;
  let restored = false;
  const runtime = await startRuntime().catch((error: unknown) => {
    restoreTmp();
    throw error;
  });
  function restoreTmp() {
    if (!tmp || restored) return;
    restored = true;
    if (previousTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previousTmp;
    rmSync(tmp, { recursive: true, force: true });
  }
  const rows: Row[] = [];
  const skipped: string[] = [];
  const byScenario: BenchResults["memory"]["byScenario"] = [];
  const runId = `bench-${started.toString(36)}`;

  // A scenario outside the budget (it times nothing) is bounded by its own counts.
  let budgeted = true;
  const drive = async (op: string, params: Params, bounds: LoopBounds): Promise<DriveResult> => {
    const left = budgeted ? deadline - Date.now() : bounds.durationMs;
    if (left <= 0) throw new BudgetExceeded(`run budget of ${settings.budgetMs} ms spent`);
    const limited = { ...bounds, durationMs: Math.min(bounds.durationMs, left) };
    return runtime.post<DriveResult>("/run", { op, params, ...limited }, limited.durationMs + 60_000);
  };
  const call = async (op: string, params: Params): Promise<Json> =>
    (await runtime.post<{ result: Json }>("/call", { op, params }, 60_000)).result;

  const ctx: BenchContext = {
    mode: options.mode,
    runId,
    concurrencyLevels: settings.concurrencyLevels,
    drive,
    call,
    record: (row) => void rows.push(row),
    unavailable: (id, group, label) => void rows.push({ id, group, label, note: "not available yet" }),
    log,
    async measure(spec: MeasureSpec): Promise<Row> {
      const bounds = (durationMs: number): LoopBounds => ({
        concurrency: spec.concurrency,
        durationMs,
        maxOps: Math.min(spec.maxOps ?? settings.maxOps, settings.maxOps),
      });
      const paramsFor = async (round: number) => ({ ...spec.params, ...((await spec.beforeRound?.(round)) ?? {}) });

      // Warm-up (round 0): objects created, code compiled; nothing recorded.
      const others = [...(spec.ceiling ? [{ name: "ceiling", ...spec.ceiling }] : []), ...(spec.references ?? [])];
      const warm = await paramsFor(0);
      await drive(spec.op, warm, bounds(settings.warmupMs));
      for (const other of others) await drive(other.op, other.params, bounds(settings.warmupMs));

      const mine: DriveResult[] = [];
      const theirs: DriveResult[][] = others.map(() => []);
      for (let round = 1; round <= settings.rounds; round++) {
        const params = await paramsFor(round);
        // Rotate who goes first, so drift on a shared machine hits every op alike.
        const order = [-1, ...others.map((_, i) => i)];
        const shift = (round - 1) % order.length;
        for (const which of [...order.slice(shift), ...order.slice(0, shift)]) {
          if (which === -1) mine.push(await drive(spec.op, params, bounds(settings.windowMs)));
          else theirs[which]!.push(await drive(others[which]!.op, others[which]!.params, bounds(settings.windowMs)));
        }
      }

      const measured = summarize(mine);
      const extra: Record<string, Json> = { ...spec.extra };
      others.forEach((other, i) => {
        const reference = summarize(theirs[i]!);
        const ratio = reference.opsPerSec > 0 ? measured.opsPerSec / reference.opsPerSec : 0;
        if (other.name === "ceiling") {
          measured.ratioToCeiling = ratio;
          if (reference.p50Ms > 0) measured.p50RatioToCeiling = measured.p50Ms / reference.p50Ms;
          if (reference.meanMs > 0) measured.meanRatioToCeiling = measured.meanMs / reference.meanMs;
          extra.ceilingOpsPerSec = Math.round(reference.opsPerSec);
          extra.ceilingP50Ms = reference.p50Ms;
          extra.ceilingMeanMs = Math.round(reference.meanMs * 1_000) / 1_000;
        } else {
          extra[`× ${other.name}`] = Math.round(ratio * 100) / 100;
          extra[`${other.name} ops/s`] = Math.round(reference.opsPerSec);
        }
      });
      const firstError = [...mine, ...theirs.flat()].find((result) => result.firstError)?.firstError;
      const row: Row = {
        id: spec.id,
        group: spec.group,
        label: spec.label,
        ...(spec.route ? { route: spec.route } : {}),
        concurrency: spec.concurrency,
        measured,
        extra,
        ...(firstError ? { note: `errors: ${firstError}` } : {}),
      };
      rows.push(row);
      log(
        `  ${spec.label} @${spec.concurrency}: ${Math.round(measured.opsPerSec)} ops/s, mean ${measured.meanMs.toFixed(2)} ms` +
          (measured.ratioToCeiling !== undefined ? `, ${measured.ratioToCeiling.toFixed(2)} × ceiling` : ""),
      );
      return row;
    },
  };

  // Ctrl-C or a kill: miniflare's own exit hook stops workerd and exits; this removes the
  // tmpfs directory on the way out (synchronously, as "exit" listeners must be).
  process.once("exit", restoreTmp);

  const loadAverageAtStart = loadavg();
  try {
    for (const scenario of SCENARIOS) {
      if (options.only && !options.only.includes(scenario.id)) continue;
      budgeted = scenario.outsideBudget !== true;
      if (budgeted && Date.now() >= deadline) {
        skipped.push(scenario.id);
        continue;
      }
      log(`${scenario.title}`);
      runtime.memory.takeWindowPeak();
      try {
        await scenario.run(ctx);
      } catch (error) {
        if (!(error instanceof BudgetExceeded)) throw error;
        skipped.push(`${scenario.id} (partly: run budget spent)`);
      }
      byScenario.push({ scenario: scenario.id, peakRssBytes: runtime.memory.takeWindowPeak() ?? null });
    }
    const end = runtime.memory.read();
    const cpuList = cpus();
    return {
      mode: options.mode,
      date: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      settings,
      machine: {
        cpus: cpuList.length,
        cpuModel: cpuList[0]?.model.trim() ?? "unknown",
        memoryBytes: totalmem(),
        node: process.version,
        workerd: runtime.workerdVersion,
        miniflare: runtime.miniflareVersion,
        platform: `${process.platform} ${process.arch}`,
        loadAverageAtStart: loadAverageAtStart.map((value) => Math.round(value * 100) / 100),
        storage,
      },
      rows,
      targets: judgeTargets(rows),
      memory: {
        workerdPeakRssBytes: end?.peakBytes ?? null,
        workerdRssAtEndBytes: end?.rssBytes ?? null,
        byScenario,
      },
      skipped,
    };
  } finally {
    process.off("exit", restoreTmp);
    try {
      await runtime.dispose();
    } finally {
      restoreTmp();
    }
  }
}
