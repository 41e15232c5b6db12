#!/usr/bin/env node
// Makes a fresh clone runnable with nothing but Node (any version ≥ 18) and npm:
// installs the workspace with pnpm from the npm registry when node_modules is
// missing or older than the lockfile. The workspace pins Node 24 as a dev
// dependency, so every script run through pnpm afterwards uses it.
import { spawnSync } from "node:child_process"
import { existsSync, statSync } from "node:fs"
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
