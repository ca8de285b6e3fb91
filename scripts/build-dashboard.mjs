// Bundles the dashboard (dashboard/main.ts, the rpc/ capnweb client and uPlot) into
// public/dashboard/app.js and app.css, the Worker's static assets. Run by wrangler's build
// step (wrangler.toml [build], so `wrangler dev`, `npm start` and `wrangler deploy` rebuild
// it), by vitest.config.ts before the tests, and by hand: `node scripts/build-dashboard.mjs`.
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Builds the bundle; resolves to the output directory. */
export async function buildDashboard() {
  const outdir = join(root, "public", "dashboard");
  await build({
    entryPoints: { app: join(root, "dashboard", "main.ts") },
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    minify: true,
    sourcemap: false,
    outdir,
    logLevel: "warning",
  });
  return outdir;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildDashboard();
}
