/**
 * Debian's Chromium, headless, driven by playwright-core — for the dashboard's test and its
 * benchmark. Never a downloaded browser: /usr/bin/chromium comes from `apt-get install
 * chromium` (scripts/setup.sh). Missing, it fails loudly, naming the set-up command.
 */
import { access, constants } from "node:fs/promises";
import { type Browser, chromium } from "playwright-core";

/** Where Debian's package puts it (CUBE_CHROMIUM overrides). */
export const CHROMIUM = process.env.CUBE_CHROMIUM ?? "/usr/bin/chromium";

/**
 * The flags this machine needs: no sandbox (root, in a container), no GPU, and none of the
 * background connections (updates, sync, QUIC) that a closed network refuses at every start.
 * playwright adds --headless and a fresh, empty --user-data-dir of its own.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Starts headless Chromium; close it with `browser.close()`. */
export async function launchChromium(): Promise<Browser> {
  try {
    await access(CHROMIUM, constants.X_OK);
  } catch {
    throw new Error(
      `${CHROMIUM} is missing: run \`npm run setup\` as root (it installs Debian's chromium), or \`apt-get install -y chromium\``,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS],
    timeout: 60_000,
  });
}
