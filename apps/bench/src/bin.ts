#!/usr/bin/env node
/**
 * `bench`: runs the benchmark suite and writes `docs/performance.md`.
 * `bench --smoke`: a few hundred requests in seconds, writing nothing; exits
 * non-zero only if a request failed or a server broke, never on timing.
 * `bench --websocket`: the WebSocket table alone, printed, writing nothing.
 * `bench --postgres`: the main scenario (Convoke, the Effect floor and the baseline on
 * PostgreSQL) alone, printed, writing nothing; `bench --burst`: 2,000
 * streams opened at once, likewise; `bench --memory [--node <flag>]`: memory per
 * open stream alone (the flag goes to Convoke's `node`).
 * `bench --profile [concurrency]`: CPU profiles of Convoke, the Effect floor and the baseline
 * under 10 s of the main scenario (default concurrency 64), summed by place.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import * as Profile from "./Profile.ts"
import { markdown, tableLines } from "./Report.ts"
import * as ServerProcess from "./ServerProcess.ts"
import * as Suite from "./Suite.ts"

// Stopped from outside (Ctrl-C, a CI timeout): take the servers along.
process.once("exit", ServerProcess.killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    ServerProcess.killAll()
    const cleanup = Suite.onAbort?.() ?? Promise.resolve()
    cleanup.catch(() => {}).finally(() => process.exit(130))
  })
}

const profileAt = process.argv.indexOf("--profile")
if (profileAt >= 0) {
  const concurrency = Number(process.argv[profileAt + 1] ?? 64) || 64
  const database = await makeTestDatabase()
  try {
    const directory = mkdtempSync(join(tmpdir(), "convoke-profile-"))
    const results = await Suite.profile(database.url, concurrency, 10, directory)
    for (const result of results) {
      console.log(
        `\n## ${result.server}, concurrency ${concurrency}: ${((result.cpuSeconds * 1000) / result.requests).toFixed(3)} ms CPU per request (from /proc), ${result.temporary} temporary ids\n\n${result.file}\n`
      )
      console.log(Profile.markdown(result.profile, result.requests).join("\n"))
    }
    console.log(`\n## Self time per request, side by side\n\n${Profile.sideBySide(results).join("\n")}`)
  } finally {
    ServerProcess.killAll()
    await database.drop()
  }
  process.exit(0)
}

if (process.argv.includes("--postgres") || process.argv.includes("--burst")) {
  const database = await makeTestDatabase()
  try {
    const table = process.argv.includes("--burst") ? Suite.burstTable : Suite.postgresTable
    console.log(tableLines(await table(Suite.FULL, database.url)).join("\n"))
  } finally {
    ServerProcess.killAll()
    await database.drop()
  }
  process.exit(0)
}

if (process.argv.includes("--memory")) {
  // `--node <flag>`: a flag to Convoke's `node`, to see what a V8 setting does.
  const at = process.argv.indexOf("--node")
  const flags = at < 0 ? [] : [process.argv[at + 1]!]
  const database = await makeTestDatabase()
  try {
    const [convoke, baseline] = await Suite.memoryRows(Suite.FULL, database.url, undefined, flags)
    console.log(
      `Memory per open stream, Convoke / baseline: ${(convoke!.perStream / baseline!.perStream).toFixed(2)}×`
    )
  } finally {
    ServerProcess.killAll()
    await database.drop()
  }
  process.exit(0)
}

if (process.argv.includes("--websocket")) {
  const database = await makeTestDatabase()
  try {
    const table = await Suite.webSocketTable(Suite.FULL, database.url)
    const baseline = (concurrency: number) =>
      table.rows.find((row) => row.server === "baseline" && row.concurrency === concurrency)!
    console.log(table.note)
    console.log(
      "| server | C | TTFE p50 | TTFE p99 | turns/s | ratio p50 | ratio p99 | ratio turns/s | errors |"
    )
    console.log("|---|---|---|---|---|---|---|---|---|")
    for (const row of table.rows) {
      const reference = baseline(row.concurrency)
      console.log(
        `| ${row.server} | ${row.concurrency} | ${row.p50.toFixed(2)} ms | ${row.p99.toFixed(2)} ms | ${row.perSecond.toFixed(0)} | ×${(row.p50 / reference.p50).toFixed(2)} | ×${(row.p99 / reference.p99).toFixed(2)} | ×${(row.perSecond / reference.perSecond).toFixed(2)} | ${row.errors} |`
      )
    }
    for (const line of table.roundRatios ?? []) console.log(`rounds ${line}`)
  } finally {
    ServerProcess.killAll()
    await database.drop()
  }
  process.exit(0)
}

const smoke = process.argv.includes("--smoke")
const started = performance.now()
const report = await Suite.run(smoke ? Suite.SMOKE : Suite.FULL).catch((error: unknown) => {
  console.error("The benchmark broke:", error)
  process.exit(1)
})
const seconds = (performance.now() - started) / 1000
if (smoke) {
  console.log(`smoke: ${report.errors} errors in ${seconds.toFixed(1)} s`)
  if (report.errors > 0) {
    for (const table of report.tables)
      for (const row of table.rows)
        for (const message of row.errorMessages) console.error(`${row.server}: ${message}`)
    for (const row of report.memory)
      for (const message of row.errorMessages) console.error(`${row.server}: ${message}`)
    process.exit(1)
  }
} else {
  const path = fileURLToPath(new URL("../../../docs/performance.md", import.meta.url))
  mkdirSync(dirname(path), { recursive: true })
  // The soak's section, from a run of its own, stays as it is.
  const previous = existsSync(path) ? readFileSync(path, "utf8") : ""
  writeFileSync(path, markdown(report, "npm run bench", seconds, previous))
  console.log(`wrote ${path} (${seconds.toFixed(0)} s, ${report.errors} errors)`)
}
