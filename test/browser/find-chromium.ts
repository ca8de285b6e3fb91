import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

export const CHROMIUM = "/usr/bin/chromium";

/**
 * Debian's Chromium at /usr/bin/chromium, installed with apt-get when it is missing (as root,
 * or through sudo), so `npm test` runs the browser test on a clean machine too. Throws with
 * the reason when it cannot be had.
 */
export function findOrInstallChromium(): string {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  const asRoot = process.getuid?.() === 0;
  const run = (args: string[]) =>
    asRoot
      ? execFileSync(args[0]!, args.slice(1), {
          stdio: "inherit",
          env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
          timeout: 600_000,
        })
      : execFileSync("sudo", ["-n", ...args], {
          stdio: "inherit",
          env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
          timeout: 600_000,
        });
  try {
    run(["apt-get", "update"]);
    run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"]);
  } catch (error) {
    throw new Error(
      `${CHROMIUM} is missing and apt-get could not install it (${(error as Error).message}); install Debian's chromium package`,
    );
  }
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium but ${CHROMIUM} is still missing`);
  return CHROMIUM;
}
