/**
 * Browser plumbing for tests: bundles the client for the browser with Vite and
 * drives Debian's Chromium through `playwright-core`.
 */
import { existsSync } from "node:fs"
import { chromium } from "playwright-core"
import { bundle } from "./bundle.ts"

/** Where Debian installs Chromium (override with `CHROMIUM_PATH`). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

/** Whether the browser tests can run here. */
export const hasChromium = existsSync(CHROMIUM)

/** Starts headless Chromium with flags that work in containers and CI, and any more flags given. */
export const launchChromium = (extraArgs: ReadonlyArray<string> = []) =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs
    ]
  })

/** The client bundled as one minified ES module, as a browser would load it. */
export const bundleClient = async (): Promise<string> => (await bundle("index.ts")).code
