/**
 * What the browser tests of the demo pages share: the pages built with Vite
 * into a folder of their own and served by the reference server (with a data
 * folder of its own), headless Chromium as the client's browser tests launch
 * it (`packages/client/test/browser.ts`), and where screenshots go.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type RunningServer, start } from "@convoke/server/src/Server.ts"
import { load } from "@convoke/server/src/Settings.ts"
import type { Browser, Page } from "playwright-core"
import { build } from "vite"
import { hasChromium, launchChromium } from "../../../packages/client/test/browser.ts"

/** The repository's root. */
export const root = fileURLToPath(new URL("../../../", import.meta.url))

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

// Chromium comes from Debian's packages, installed by .ci/run; a developer
// machine without it skips these tests, CI never does.
export const runnable = hasChromium || Boolean(process.env.CI)

/** The built pages served by the reference server, and Chromium to open them. */
export interface Demo {
  readonly server: RunningServer
  readonly browser: Browser
  /** Closes the browser and the server, and deletes their folders. */
  readonly close: () => Promise<void>
}

/**
 * Builds the demo pages into a temporary folder, serves them from the
 * reference server, whose echo model waits `echoDelayMs` before each word,
 * and launches Chromium with the flags `chromiumArgs` adds for that server;
 * `settings` are more of the server's settings (environment variables).
 * `name` names the temporary folders. Cleans up after itself if any of it
 * fails.
 */
export const startDemo = async (options: {
  readonly name: string
  readonly echoDelayMs: number
  readonly chromiumArgs?: (server: RunningServer) => ReadonlyArray<string>
  readonly settings?: Readonly<Record<string, string>>
}): Promise<Demo> => {
  const dataDir = mkdtempSync(join(tmpdir(), `convoke-${options.name}-data-`))
  const webDir = mkdtempSync(join(tmpdir(), `convoke-${options.name}-dist-`))
  let server: RunningServer | undefined
  let browser: Browser | undefined
  const close = async () => {
    await browser?.close()
    await server?.close()
    rmSync(dataDir, { recursive: true, force: true })
    rmSync(webDir, { recursive: true, force: true })
  }
  try {
    await build({
      root: fileURLToPath(new URL("../", import.meta.url)),
      configFile: fileURLToPath(new URL("../vite.config.ts", import.meta.url)),
      logLevel: "silent",
      build: { outDir: webDir, emptyOutDir: true }
    })
    server = await start(
      load([], {
        PORT: "0",
        CONVOKE_ECHO_DELAY_MS: String(options.echoDelayMs),
        CONVOKE_DATA_DIR: dataDir,
        CONVOKE_WEB_DIR: webDir,
        ...options.settings
      })
    )
    browser = await launchChromium(options.chromiumArgs?.(server) ?? [])
  } catch (error) {
    await close()
    throw error
  }
  return { server, browser, close }
}

/** Saves a screenshot of the whole page as `test-results/<file>` at the repository's root. */
export const screenshot = async (page: Page, file: string) => {
  mkdirSync(join(root, "test-results"), { recursive: true })
  await page.screenshot({ path: join(root, "test-results", file), fullPage: true })
}
