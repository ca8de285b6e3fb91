// The dashboard in a real browser: headless Chromium (Debian's `chromium`, installed by this
// test, or by .ci/run, when missing) loads /dashboard/ from a running `wrangler dev`, signs in with the
// admin token, and must draw the hits, 429s and credits this test recorded beforehand.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdminApi } from "../../rpc/admin";
import { connect } from "../../rpc/client";
import type { RecordInput } from "../../rpc/path-stats";
import { type DevServer, startTollgate } from "../node/wrangler-dev";
import { findOrInstallChromium } from "./find-chromium";

const TOKEN = "dashboard-test-admin-token-5c1e";
const ARTIFACTS = join(import.meta.dirname, "..", "artifacts");

let server: DevServer;
let browser: BrowserContext;
let profile: string;

beforeAll(async () => {
  const executablePath = findOrInstallChromium();
  profile = mkdtempSync(join(tmpdir(), "tollgate-chromium-"));
  server = await startTollgate({ vars: { TOLLGATE_ADMIN_TOKEN: TOKEN } });
  // A fresh profile directory each run (playwright takes it as launchPersistentContext's argument).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 1400 },
    // Besides playwright's own flags: keep Chromium off the network and quiet.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}, 900_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
});

const admin = () => connect<AdminApi>(`${server.url}/rpc`, { token: TOKEN });

/** Hits a few minutes in the past: their minutes are closed, so they are flushed at once. */
function workload(now: number): RecordInput[] {
  const hits: RecordInput[] = [];
  const add = (count: number, hit: Omit<RecordInput, "at">, minutesAgo: number) => {
    for (let i = 0; i < count; i += 1) hits.push({ ...hit, latencyMs: 10 + i, at: now - minutesAgo * 60_000 });
  };
  add(30, { ip: "198.51.100.7", method: "GET", path: "/v1/orders/123", status: 200 }, 5);
  add(12, { ip: "203.0.113.9", method: "POST", path: "/v1/completions", status: 200 }, 4);
  add(5, { ip: "203.0.113.9", method: "POST", path: "/v1/completions", status: 429 }, 4);
  add(3, { ip: "192.0.2.1", method: "GET", path: "/health", status: 503 }, 3);
  return hits;
}

async function waitFor<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within 60 s; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Counts the canvas pixels drawn in a colour (r, g, b) of one of the charts. */
function pixelsOf(page: Page, chart: string, [r, g, b]: [number, number, number]): Promise<number> {
  return page.evaluate(
    ({ chart, r, g, b }) => {
      const canvas = document.querySelector<HTMLCanvasElement>(`#${chart} canvas`);
      if (canvas === null) return -1;
      const { data } = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height);
      let count = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i]! - r) < 24 && Math.abs(data[i + 1]! - g) < 24 && Math.abs(data[i + 2]! - b) < 24 && data[i + 3]! > 200)
          count += 1;
      }
      return count;
    },
    { chart, r, g, b },
  );
}

describe("the dashboard", () => {
  it("signs in with the admin token and charts the recorded traffic and credit burn", async () => {
    const now = Date.now();
    const hits = workload(now);
    expect(await admin().pathStats().recordMany({ hits })).toEqual({ accepted: hits.length });
    const credits = admin().credits();
    await credits.createAccount({ accountId: "dash-acct", name: "Dashboard test" });
    await admin().credits().grant({ accountId: "dash-acct", amount: 1_000, reason: "test", idempotencyKey: "dash-grant" });
    for (let i = 0; i < 3; i += 1) {
      const charged = await admin()
        .credits()
        .charge({
          accountId: "dash-acct",
          usage: { operation: "chat", model: "dash-model", requests: 5, inputTokens: 1_000, cachedTokens: 100, outputTokens: 200 },
          idempotencyKey: `dash-charge-${i}`,
        });
      expect(charged.ok).toBe(true);
    }
    await waitFor(
      "the hits reaching the aggregator",
      () => admin().pathStats().globalStats({ range: "1h" }),
      (s) => s.totalRequests === hits.length,
    );

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`${server.url}/dashboard/`);

    // A wrong token is refused and shows nothing.
    await page.fill("#token", "not-the-token");
    await page.click("#sign-in button[type=submit]");
    await expect.poll(() => page.textContent("#sign-in-error")).toBe("The token is not valid.");
    expect(await page.isHidden("#dashboard")).toBe(true);

    await page.fill("#token", TOKEN);
    await page.click("#sign-in button[type=submit]");
    await page.waitForSelector("#requests-chart canvas");
    await expect.poll(() => page.getAttribute("#requests-chart", "data-requests")).toBe(String(hits.length));

    expect(await page.textContent("#total-requests")).toBe(String(hits.length));
    expect(await page.textContent("#total-errors")).toBe("3");
    expect(await page.textContent("#total-denials")).toBe("5");
    expect(await page.textContent("#unique-clients")).toBe("3");
    // "1h" is drawn per minute.
    expect(Number(await page.getAttribute("#requests-chart", "data-points"))).toBeGreaterThanOrEqual(60);
    const topPaths = await page.$$eval("#top-paths tbody tr", (rows) =>
      rows.map((r) => (r as HTMLElement).innerText.split("\t").slice(0, 3)),
    );
    expect(topPaths).toEqual([
      ["GET", "/v1/orders/:id", "30"],
      ["POST", "/v1/completions", "17"],
      ["GET", "/health", "3"],
    ]);
    const topClients = await page.$$eval("#top-clients tbody tr td:first-child", (cells) => cells.map((c) => c.textContent));
    // Truncated to /24 (PATH_IP_MODE "truncate").
    expect(topClients).toEqual(["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"]);
    expect(await page.$$eval("#denials tbody tr", (rows) => rows.map((r) => (r as HTMLElement).innerText.split("\t")))).toEqual([
      ["POST /v1/completions", "5"],
    ]);
    const latency = await page.$$eval("#latency tbody tr", (rows) => rows.map((r) => (r as HTMLElement).innerText.split("\t")));
    expect(latency.map((r) => r[0])).toEqual(["p50", "p90", "p99", "min", "max", "hits with a latency"]);
    expect(latency[3]![1]).toBe("10.0 ms");
    expect(latency[4]![1]).toBe("39.0 ms");
    // The lines are really drawn: the requests line (blue) and the 429 line (orange).
    expect(await pixelsOf(page, "requests-chart", [0x35, 0x67, 0xd6])).toBeGreaterThan(20);
    expect(await pixelsOf(page, "requests-chart", [0xe0, 0x8a, 0x00])).toBeGreaterThan(5);

    // Credit burn for an account: 3 charges of 5 requests at 1 credit per request.
    await page.fill("#account", "dash-acct");
    await page.click("#account-form button[type=submit]");
    await expect.poll(() => page.getAttribute("#burn-chart", "data-credits")).toBe("15");
    expect(await page.textContent("#burn-summary")).toContain("15 credits over 3 calls");
    expect(await pixelsOf(page, "burn-chart", [0x7b, 0x3f, 0xd6])).toBeGreaterThan(500);
    // Per model: the three charges' tokens and credits.
    expect(await page.$$eval("#burn-models tbody tr", (rows) => rows.map((r) => (r as HTMLElement).innerText.split("\t")))).toEqual([
      ["dash-model", "3", "3,000", "300", "0", "600", "15"],
    ]);
    // Service metrics: the capnweb calls above are counted per method (docs/metrics.md).
    const counted = await page.$$eval("#metrics tbody tr", (rows) =>
      rows.map((r) => (r as HTMLElement).innerText.split("\t").slice(0, 2).join(" ")),
    );
    expect(counted).toContain("PathStatsService recordMany");
    expect(await page.textContent("#cost-note")).toMatch(/per month projected/);

    // The range picker asks again: 7 days of the same hits, drawn per hour or coarser.
    await page.click("#range button[data-range='7d']");
    await expect.poll(() => page.textContent("#status")).toContain("Range 7d");
    expect(await page.getAttribute("#requests-chart", "data-requests")).toBe(String(hits.length));
    expect(Number(await page.getAttribute("#requests-chart", "data-points"))).toBeLessThanOrEqual(7 * 24 + 1);
    await page.click("#range button[data-range='1h']");
    await expect.poll(() => page.textContent("#status")).toContain("Range 1h");

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it("serves only the dashboard's files beside /rpc; every other path is 404", async () => {
    const page = await fetch(`${server.url}/dashboard/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    const bundle = await fetch(`${server.url}/dashboard/app.js`);
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get("content-type")).toMatch(/javascript/);
    for (const path of ["/", "/index.html", "/dashboard/nope.js", "/rpcx", "/public/dashboard/index.html"]) {
      expect((await fetch(`${server.url}${path}`)).status, path).toBe(404);
    }
  });
});
