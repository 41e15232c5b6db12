/**
 * Browser plumbing for tests: bundles the client for the browser with Vite and
 * drives Debian's Chromium through `playwright-core`.
 */
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import { build } from "vite"

/** Where Debian installs Chromium (override with `CHROMIUM_PATH`). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

/** Whether the browser tests can run here. */
export const hasChromium = existsSync(CHROMIUM)

/** Starts headless Chromium with flags that work in containers and CI. */
export const launchChromium = () =>
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
      "--disable-sync"
    ]
  })

/** The client bundled as one minified ES module, as a browser would load it. */
export const bundleClient = async (): Promise<string> => {
  const output = await build({
    configFile: false,
    logLevel: "silent",
    build: {
      write: false,
      minify: true,
      lib: {
        entry: fileURLToPath(new URL("../src/index.ts", import.meta.url)),
        formats: ["es"],
        fileName: "client"
      }
    }
  })
  const results = Array.isArray(output) ? output : [output]
  const chunk = results
    .flatMap((result) => ("output" in result ? result.output : []))
    .find((item) => item.type === "chunk")
  if (chunk === undefined || chunk.type !== "chunk") throw new Error("Vite produced no bundle")
  return chunk.code
}
