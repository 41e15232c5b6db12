#!/usr/bin/env node
/**
 * `soak [--minutes 30] [--concurrency 64] [--warmup-minutes 12] [--redis]`:
 * runs the reference server under a constant mix of new, continued, resumed
 * and stopped turns, reads its memory and file descriptors every 10 s, prints
 * the soak section and writes it into `docs/performance.md` between its
 * markers. Exits non-zero if a verdict is not met. Not for CI: it takes as
 * long as it is told to.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import * as Load from "./Load.ts"
import * as ServerProcess from "./ServerProcess.ts"
import * as SoakLoad from "./SoakLoad.ts"
import * as SoakReport from "./SoakReport.ts"
import { replaceSection } from "./SoakSection.ts"
import * as Suite from "./Suite.ts"

/** Pause before each word of the echo model: a turn of five words lasts about 100 ms. */
const ECHO_DELAY_MS = 20
const SAMPLE_EVERY_MS = 10_000

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    concurrency: { type: "string", default: "64" },
    // The in-memory turn log keeps every turn for 10 minutes: memory grows with
    // it until then, by design. Growth is judged once that window is full.
    "warmup-minutes": { type: "string", default: "12" },
    redis: { type: "boolean", default: false }
  }
})
const number = (name: string, text: string) => {
  const value = Number(text)
  if (!(value > 0)) {
    console.error(`--${name} must be a positive number, got "${text}"`)
    process.exit(2)
  }
  return value
}
const minutes = number("minutes", values.minutes)
const concurrency = Math.round(number("concurrency", values.concurrency))
const warmupMinutes = number("warmup-minutes", values["warmup-minutes"])
if (warmupMinutes >= minutes) {
  console.error("--warmup-minutes must be shorter than --minutes")
  process.exit(2)
}

const database = await makeTestDatabase()
// Stopped from outside (Ctrl-C): take the server along and drop the database.
process.once("exit", ServerProcess.killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    ServerProcess.killAll()
    database
      .drop()
      .catch(() => {})
      .finally(() => process.exit(130))
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The value of an unlabelled gauge in Prometheus text, if present. */
const gauge = (text: string, name: string): number | undefined => {
  const match = new RegExp(`^${name}(?:\\{\\})? (\\S+)$`, "m").exec(text)
  return match === null ? undefined : Number(match[1])
}

let result: SoakReport.Result
try {
  if (values.redis && !(await Suite.redisReachable(Suite.REDIS_URL))) {
    console.error(`--redis: no Redis answers at ${Suite.REDIS_URL}`)
    process.exit(2)
  }
  const server = await Suite.startConvoke(database.url, ECHO_DELAY_MS, [], {
    ...(values.redis ? { redisUrl: Suite.REDIS_URL } : {})
  })
  console.log(`soak: ${server.url}, ${concurrency} streams for ${minutes} min (warm-up ${warmupMinutes} min)`)
  const tally = new SoakLoad.Tally()
  const started = performance.now()

  /** One reading: the least RSS of 5 over a second, the open descriptors, the gauges. */
  const read = async (): Promise<SoakReport.Sample> => {
    let rss = server.rss()
    for (let reading = 0; reading < 4; reading++) {
      await sleep(250)
      rss = Math.min(rss, server.rss())
    }
    const metrics = await fetch(`${server.url}/metrics`)
      .then((response) => response.text())
      .catch(() => "")
    return {
      seconds: (performance.now() - started) / 1000,
      rss,
      openFiles: ServerProcess.openFiles(server.pid),
      streamsActive: gauge(metrics, "streams_active"),
      turnLogTurns: gauge(metrics, "turn_log_turns"),
      turnLogEvents: gauge(metrics, "turn_log_events"),
      turnLogBytes: gauge(metrics, "turn_log_bytes"),
      turns: tally.total,
      errors: tally.failed
    }
  }

  const samples: Array<SoakReport.Sample> = []
  const until = started + minutes * 60_000
  const load = SoakLoad.run({ url: server.url, concurrency, until, tally })
  let loading = true
  void load.finally(() => (loading = false))
  // Every 10 s, and once more just before the workers stop, so the last reading is still under load.
  const readingTimes: Array<number> = []
  for (let at = started + SAMPLE_EVERY_MS; at <= until - 5_000; at += SAMPLE_EVERY_MS) readingTimes.push(at)
  readingTimes.push(until - 1_500)
  for (const at of readingTimes) {
    await sleep(Math.max(0, at - performance.now()))
    if (!loading) break
    const sample = await read()
    samples.push(sample)
    console.log(
      `  ${(sample.seconds / 60).toFixed(1)} min: RSS ${(sample.rss / 1024 / 1024).toFixed(1)} MiB, ${sample.openFiles} fds, ${sample.streamsActive ?? "?"} streams, ${sample.turns} turns, ${sample.errors} errors`
    )
  }
  await load
  // The turns have ended; let the last stops and drops settle before the reading.
  await sleep(3_000)
  const drained = await read()
  await server.stop()
  result = {
    command: `npm run soak -- --minutes ${minutes} --warmup-minutes ${warmupMinutes} --concurrency ${concurrency}${values.redis ? " --redis" : ""}`,
    minutes,
    warmupMinutes,
    concurrency,
    redis: values.redis,
    echoDelayMs: ECHO_DELAY_MS,
    samples,
    drained,
    kinds: tally.kinds,
    stopsAfterEnd: tally.stopsAfterEnd,
    errors: [...tally.errors].map(([check, { count, samples: messages }]) => ({
      check,
      count,
      samples: messages
    })),
    ttfeP50: Load.percentile(tally.ttfe, 50),
    ttfeP99: Load.percentile(tally.ttfe, 99),
    seconds: (performance.now() - started) / 1000
  }
} finally {
  ServerProcess.killAll()
  await database.drop()
}

const section = SoakReport.section(result)
console.log(`\n${section}\n`)
const path = fileURLToPath(new URL("../../../docs/performance.md", import.meta.url))
writeFileSync(
  path,
  replaceSection(existsSync(path) ? readFileSync(path, "utf8") : "# Performance\n", section)
)
console.log(`wrote the soak section of ${path}`)
const verdicts = SoakReport.verdictLines(result)
for (const line of verdicts) console.log(line)
process.exit(verdicts.every((line) => line.startsWith("met")) ? 0 : 1)
