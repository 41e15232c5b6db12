#!/usr/bin/env node
// Makes a fresh clone runnable with nothing but Node (any version ≥ 18) and npm:
// installs the workspace with pnpm from the npm registry when node_modules is
// missing or older than the lockfile. The workspace pins Node 24 as a dev
// dependency, so every script run through pnpm afterwards uses it.
import { spawnSync } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const PNPM = "pnpm@10.34.8"
const marker = join(root, "node_modules", ".modules.yaml")
const lockfile = join(root, "pnpm-lock.yaml")
const node24 = join(root, "node_modules", ".bin", "node")

const stale =
  !existsSync(marker) || !existsSync(node24) || statSync(lockfile).mtimeMs > statSync(marker).mtimeMs

if (stale) {
  console.error(`Installing dependencies with ${PNPM} (first run only)…`)
  const npx = process.platform === "win32" ? "npx.cmd" : "npx"
  const result = spawnSync(npx, ["-y", PNPM, "install", "--frozen-lockfile"], { cwd: root, stdio: "inherit" })
  if (result.status !== 0) {
    console.error("Dependency installation failed; see the output above.")
    process.exit(result.status ?? 1)
  }
}

// The reference server serves the web demo from apps/web/dist: build it when
// it is missing or older than its sources (or the client it bundles).
const web = join(root, "apps", "web")
const built = join(web, "dist", "index.html")
const newest = (path) => {
  if (!existsSync(path)) return 0
  const info = statSync(path)
  if (!info.isDirectory()) return info.mtimeMs
  return Math.max(info.mtimeMs, ...readdirSync(path).map((name) => newest(join(path, name))))
}
const webSources = ["index.html", "use-chat.html", "vite.config.ts", "src", "package.json"].map((name) =>
  join(web, name)
)
const clientSources = join(root, "packages", "client", "src")
if (
  existsSync(join(web, "index.html")) &&
  (!existsSync(built) || Math.max(...webSources.map(newest), newest(clientSources)) > statSync(built).mtimeMs)
) {
  console.error("Building the web demo (apps/web)…")
  const vite = join(web, "node_modules", "vite", "bin", "vite.js")
  const result = spawnSync(node24, [vite, "build", "--logLevel", "warn"], { cwd: web, stdio: "inherit" })
  if (result.status !== 0) console.error("The web demo could not be built; the server runs without it.")
}
