#!/usr/bin/env node
/**
 * `convoke`: starts the reference server. Zero configuration gives an
 * embedded database, the echo model and anonymous access on 127.0.0.1:3000.
 * `convoke keys …` manages the stored API keys (see `Keys.ts`).
 */
import * as YoungGeneration from "./YoungGeneration.ts"

// Loaded after YoungGeneration has set how V8 grows its heap: static imports would
// all be read and compiled before any module runs.
const { help, secretWarnings } = await import("./CommandLine.ts")
const { start } = await import("./Server.ts")
const { load, SettingsError } = await import("./Settings.ts")

const argv = process.argv.slice(2)
if (argv[0] === "keys") {
  const { run } = await import("./Keys.ts")
  const outcome = await run(argv.slice(1), process.env)
  process.stdout.write(outcome.stdout)
  process.stderr.write(outcome.stderr)
  process.exit(outcome.code)
}
if (argv.includes("--help") || argv.includes("-h")) {
  console.log(help())
  process.exit(0)
}

let settings: ReturnType<typeof load>
try {
  settings = load(argv, process.env)
  for (const warning of secretWarnings(argv)) console.warn(`WARNING: ${warning}`)
} catch (error) {
  console.error(
    error instanceof SettingsError ? error.message : `Invalid arguments: ${(error as Error).message}`
  )
  console.error("\nRun with --help to see every option.")
  process.exit(2)
}

/** A failure in words: its message, else its cause's (a Redis or database error often has only a cause). */
const reason = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  if (error.message !== "") return error.message
  return error.cause === undefined ? error.name : `${error.name}: ${reason(error.cause)}`
}

const server = await start(settings).catch((error: unknown) => {
  if (error instanceof SettingsError) {
    console.error(error.message)
    process.exit(2)
  }
  console.error(`Convoke could not start: ${reason(error)}`)
  process.exit(1)
})

YoungGeneration.release()

const width = Math.max(...server.summary.map(([label]) => label.length))
console.log(
  [
    "",
    "  Convoke reference server",
    ...server.summary.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`),
    ""
  ].join("\n")
)
if (server.anonymous) {
  console.warn("  WARNING: anonymous mode. Anyone who can reach this port can chat as the same user.\n")
}

let signals = 0
const stop = (signal: string) => {
  if (++signals > 1) process.exit(1)
  console.log(`\n${signal}: closing open streams and the database…`)
  server.close().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error("Shutdown failed:", error)
      process.exit(1)
    }
  )
}
process.on("SIGTERM", () => stop("SIGTERM"))
process.on("SIGINT", () => stop("SIGINT"))
