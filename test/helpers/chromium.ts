// Headless Chromium for the browser tests: Debian's `chromium` package driven
// by playwright-core, which downloads no browser of its own. A missing
// binary fails loudly with the install command; it never skips.
import { chromium, type Browser } from 'playwright-core'
import { findBinary } from './binaries.js'

const INSTALL_HINT = 'chromium is not installed. Install it with: sudo apt-get update && sudo apt-get install -y chromium ' +
  '(macOS: brew install --cask chromium), or run `npm run setup`.'

const MAC_APP = '/Applications/Chromium.app/Contents/MacOS/Chromium'

/** The first Chromium binary on PATH (Debian names it chromium, Ubuntu chromium-browser), or Homebrew's app. */
export function chromiumBinary (): string {
  return findBinary(['chromium', 'chromium-browser'], [MAC_APP], INSTALL_HINT)
}

/**
 * Launches headless Chromium as a user's browser would behave: with the
 * back/forward cache, which Playwright turns off by default (the Back-button
 * test is about exactly that cache).
 *
 * @param args - extra command-line switches
 */
export async function launchChromium (args: string[] = []): Promise<Browser> {
  return await chromium.launch({
    executablePath: chromiumBinary(),
    headless: true,
    // Chromium refuses to run as root with its sandbox; tests run as root in CI containers.
    chromiumSandbox: process.getuid?.() !== 0,
    ignoreDefaultArgs: ['--disable-back-forward-cache'],
    args,
    timeout: 60_000
  })
}
