/**
 * The benchmark suite: starts Convoke (the reference server's CLI) and the
 * hand-written baseline as child processes on the same throwaway PostgreSQL
 * database, runs each scenario on both in alternating rounds, and reports
 * TTFE percentiles, throughput, errors, peak RSS and the ratios.
 *
 * Both servers are anonymous (Convoke with no API keys on loopback, the
 * baseline with no auth at all), Convoke has rate limits and logs off and
 * metrics on (the default), and both use a 10-connection pool.
 */

import { randomUUID } from "node:crypto"
import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import pg from "pg"
import * as Load from "./Load.ts"
import * as Profile from "./Profile.ts"
import * as ServerProcess from "./ServerProcess.ts"
import * as SocketLoad from "./SocketLoad.ts"

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const SERVER_BIN = here("../../server/src/bin.ts")

/** The embedded default's row, which the PGlite goal is about. */
export const PGLITE = "Convoke (PGlite)"
/** The same with the young generation capped: the trade-off the store-pg README offers. */
export const PGLITE_CAPPED = "Convoke (PGlite, --max-semi-space-size=8)"
const BASELINE = here("./Baseline.ts")
const EFFECT_BASELINE = here("./EffectBaseline.ts")
/** The baseline's server written as the leanest Effect program (`EffectBaseline.ts`). */
export const EFFECT_FLOOR = "Effect floor"
const ADAPTERS = here("./Adapters.ts")
const READY = /listening\s+(http:\/\/\S+)/

/** Pause before each word of the echo model in short streams, and in held-open ones. */
const SHORT_DELAY_MS = 5
const SLOW_DELAY_MS = 5_000
/** Memory per open stream, and streams opened at once: the model sends one delta a second, as the scenario of the performance goals says. */
const HELD_DELAY_MS = 1_000
/** Five words with the echo prefix: a short stream of six content events, 5 ms apart. */
const SHORT_MESSAGE = "hello benchmark world of streams"
const SLOW_MESSAGE = Array.from({ length: 40 }, (_, index) => `word${index}`).join(" ")
/** 180 words at one a second: every stream stays open while 2,000 are opened and measured. */
const HELD_MESSAGE = Array.from({ length: 180 }, (_, index) => `word${index}`).join(" ")

/** One level of load: `concurrency` clients for `requests` requests, or for `seconds`, `rounds` times per server. */
export interface Step {
  readonly concurrency: number
  readonly requests?: number | undefined
  readonly seconds?: number | undefined
  readonly rounds: number
}

/** The size of a suite. */
export interface Plan {
  readonly smoke: boolean
  /** Each load scenario: concurrency, requests per round, rounds per server. */
  readonly load: ReadonlyArray<Step>
  readonly adapters: ReadonlyArray<Step>
  readonly pglite: { readonly concurrency: ReadonlyArray<number>; readonly requests: number }
  /** The turn log in Redis against the in-memory one (skipped without Redis). */
  readonly turnLog: ReadonlyArray<Step>
  /** Streams held open to measure memory per stream, on both servers. */
  readonly memoryStreams: number
  /** Streams opened all at once on Convoke and the baseline, alternating rounds: TTFE and SYN drops. */
  readonly burst: { readonly streams: number; readonly rounds: number }
  /** Streams held open on one Convoke instance (0 skips the scenario). */
  readonly manyStreams: number
  /**
   * Slowloris: TTFE at concurrency 1 while `attackers` connections trickle a
   * request head that never ends, against the same server idle, in rounds.
   */
  readonly slowloris: { readonly attackers: number; readonly requests: number; readonly rounds: number }
  /** The WebSocket transport against SSE on the same server, and the baseline. */
  readonly websocket: ReadonlyArray<Step>
  /** Frames per second: `replies` long replies of `words` words at once, no delay between words. */
  readonly frames: { readonly replies: number; readonly words: number }
}

export const FULL: Plan = {
  smoke: false,
  load: [
    // 10 s per level and server, twice, alternating: at concurrency 1 about 1,400 requests
    // each, so the p99 rests on the 14 slowest, not a handful.
    { concurrency: 1, seconds: 10, rounds: 2 },
    { concurrency: 64, seconds: 10, rounds: 2 },
    { concurrency: 256, seconds: 10, rounds: 2 }
  ],
  adapters: [
    // Four rounds at 1: the four servers' TTFE drifts by tens of percent from one
    // round to the next on a shared machine, and the goals are a few percent apart.
    { concurrency: 1, requests: 200, rounds: 4 },
    { concurrency: 64, requests: 1_500, rounds: 2 }
  ],
  pglite: { concurrency: [1, 16], requests: 600 },
  turnLog: [
    { concurrency: 1, requests: 400, rounds: 2 },
    { concurrency: 64, requests: 3_000, rounds: 2 }
  ],
  memoryStreams: 2_000,
  burst: { streams: 2_000, rounds: 2 },
  manyStreams: 10_000,
  slowloris: { attackers: 200, requests: 200, rounds: 3 },
  websocket: [
    { concurrency: 1, requests: 400, rounds: 3 },
    { concurrency: 64, requests: 3_000, rounds: 3 }
  ],
  frames: { replies: 8, words: 5_000 }
}

export const SMOKE: Plan = {
  smoke: true,
  load: [
    { concurrency: 1, requests: 30, rounds: 1 },
    { concurrency: 16, seconds: 1, rounds: 1 }
  ],
  adapters: [{ concurrency: 4, requests: 40, rounds: 1 }],
  pglite: { concurrency: [4], requests: 40 },
  turnLog: [{ concurrency: 4, requests: 40, rounds: 1 }],
  memoryStreams: 100,
  burst: { streams: 100, rounds: 1 },
  manyStreams: 0,
  slowloris: { attackers: 50, requests: 20, rounds: 1 },
  websocket: [
    { concurrency: 1, requests: 20, rounds: 1 },
    { concurrency: 8, requests: 80, rounds: 1 }
  ],
  frames: { replies: 2, words: 200 }
}

/** One measured row of a table. */
export interface Row {
  readonly server: string
  readonly concurrency: number
  readonly requests: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  /** TTFE p99 without each round's first wave (`concurrency` requests sent at once on new connections). */
  readonly p99AfterFirstWave: number
  readonly max: number
  readonly doneP50: number
  readonly perSecond: number
  readonly errors: number
  readonly temporary: number
  readonly peakRss: number
  /** Server CPU time (user + system) per completed request, in milliseconds. */
  readonly cpuPerRequest: number
  readonly errorMessages: ReadonlyArray<string>
}

/** A table of the report. */
export interface Table {
  readonly title: string
  readonly note: string
  readonly rows: ReadonlyArray<Row>
  /** The row name ratios are taken against, if any. */
  readonly reference?: string | undefined
  /** Per concurrency: the ratios of every round, to show the noise. */
  readonly roundRatios?: ReadonlyArray<string> | undefined
  /** Per server: SYN drops the kernel counted during its rounds (the burst table). */
  readonly synDrops?: Readonly<Record<string, number>> | undefined
}

/** Memory per open stream. */
export interface MemoryRow {
  readonly server: string
  readonly streams: number
  /** Streams that received their metadata event. */
  readonly opened: number
  readonly idleRss: number
  readonly openRss: number
  readonly perStream: number
  readonly errors: number
  readonly temporary: number
  readonly ttfeP50: number
  readonly ttfeP99: number
  readonly errorMessages: ReadonlyArray<string>
}

/** Everything a run measured. */
export interface Report {
  readonly tables: ReadonlyArray<Table>
  readonly memory: ReadonlyArray<MemoryRow>
  readonly many: MemoryRow | undefined
  /** The conversation INSERT alone, one at a time on an idle pool: what pooling conversations could save at most. */
  readonly insert: { readonly p50: number; readonly p99: number } | undefined
  /** CPU profiles of Convoke, the Effect floor and the baseline at concurrency 64 (not in the smoke run). */
  readonly profiles: ReadonlyArray<Profiled>
  /** Total errors of every scenario: the smoke run fails on any. */
  readonly errors: number
}

const convokeEnv = (databaseUrl: string | undefined, delayMs: number): Record<string, string> => ({
  ...(databaseUrl === undefined ? {} : { DATABASE_URL: databaseUrl }),
  CONVOKE_ECHO_DELAY_MS: String(delayMs),
  CONVOKE_RATE_LIMIT_REQUESTS: "0",
  CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "0",
  CONVOKE_RATE_LIMIT_AUTH_FAILURES: "0",
  CONVOKE_RATE_LIMIT_CONCURRENT: "0",
  CONVOKE_LOG_FORMAT: "off",
  // The default creation budget: a stream on a temporary id while the database
  // is healthy but busy is a failure the tables count.
  CONVOKE_CLEANUP_INTERVAL_MINUTES: "0"
})

/** Redis for the turn-log scenario: the bench's own `REDIS_URL`, else the local default. */
export const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379"

/** Data directories of the servers started here, removed when this process exits. */
const dataDirs: Array<string> = []
process.once("exit", () => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
})

/**
 * A data directory of its own for each server (unless `--data-dir` is given):
 * its outbox journal is locked by one process at a time, and the soak, a
 * bench and several servers of one scenario may run at once.
 */
const ownDataDir = (extra: ReadonlyArray<string>): Array<string> => {
  if (extra.includes("--data-dir")) return []
  const dir = mkdtempSync(join(tmpdir(), "convoke-bench-data-"))
  dataDirs.push(dir)
  return ["--data-dir", dir]
}

/** Starts the reference server CLI with the bench's settings (rate limits and logs off, metrics on). */
export const startConvoke = (
  databaseUrl: string | undefined,
  delayMs: number,
  extra: Array<string> = [],
  options: {
    readonly name?: string
    readonly redisUrl?: string
    /** Flags to `node` itself, before the script. */
    readonly nodeFlags?: ReadonlyArray<string>
  } = {}
) =>
  ServerProcess.start({
    name: options.name ?? "Convoke",
    args: [...(options.nodeFlags ?? []), SERVER_BIN, "--port", "0", ...ownDataDir(extra), ...extra],
    // Without Redis unless asked: every other scenario measures the in-memory turn log.
    env: { ...convokeEnv(databaseUrl, delayMs), REDIS_URL: options.redisUrl ?? "" },
    ready: READY
  })

const startBaseline = (databaseUrl: string, delayMs: number, nodeFlags: ReadonlyArray<string> = []) =>
  ServerProcess.start({
    name: "baseline",
    args: [...nodeFlags, BASELINE],
    env: { DATABASE_URL: databaseUrl, ECHO_DELAY_MS: String(delayMs) },
    ready: READY
  })

const startEffectFloor = (databaseUrl: string, delayMs: number, nodeFlags: ReadonlyArray<string> = []) =>
  ServerProcess.start({
    name: EFFECT_FLOOR,
    args: [...nodeFlags, EFFECT_BASELINE],
    env: { DATABASE_URL: databaseUrl, ECHO_DELAY_MS: String(delayMs) },
    ready: READY
  })

const startAdapter = (kind: string, databaseUrl: string, delayMs: number) =>
  ServerProcess.start({
    name: kind,
    args: [ADAPTERS, kind],
    env: { DATABASE_URL: databaseUrl, ECHO_DELAY_MS: String(delayMs) },
    ready: READY
  })

/** Accumulates rounds of one server at one concurrency. */
class Accumulator {
  readonly ttfe: Array<number> = []
  readonly afterFirstWave: Array<number> = []
  readonly done: Array<number> = []
  errors = 0
  temporary = 0
  requests = 0
  seconds = 0
  peakRss = 0
  cpuSeconds = 0
  readonly errorMessages: Array<string> = []
  readonly roundP50: Array<number> = []
  add(result: Load.Result, concurrency: number, peakRss: number, cpuSeconds: number) {
    for (const sample of result.samples) {
      this.ttfe.push(sample.ttfe)
      if ((sample.index ?? 0) >= concurrency) this.afterFirstWave.push(sample.ttfe)
      this.done.push(sample.done)
      if (sample.temporary) this.temporary++
    }
    this.roundP50.push(
      Load.percentile(
        result.samples.map((sample) => sample.ttfe),
        50
      )
    )
    this.errors += result.errors
    this.errorMessages.push(...result.errorMessages.slice(0, 5 - this.errorMessages.length))
    this.requests += result.samples.length + result.errors
    this.seconds += result.seconds
    this.peakRss = Math.max(this.peakRss, peakRss)
    this.cpuSeconds += cpuSeconds
  }
  row(server: string, concurrency: number): Row {
    return {
      server,
      concurrency,
      requests: this.requests,
      p50: Load.percentile(this.ttfe, 50),
      p95: Load.percentile(this.ttfe, 95),
      p99: Load.percentile(this.ttfe, 99),
      p99AfterFirstWave: Load.percentile(this.afterFirstWave, 99),
      max: Load.percentile(this.ttfe, 100),
      doneP50: Load.percentile(this.done, 50),
      perSecond: (this.requests - this.errors) / this.seconds,
      errors: this.errors,
      temporary: this.temporary,
      peakRss: this.peakRss,
      // No CPU reading (a scenario that does not take one): shown as "–", not as 0.
      cpuPerRequest:
        this.cpuSeconds > 0 ? (this.cpuSeconds * 1000) / (this.requests - this.errors) : Number.NaN,
      errorMessages: this.errorMessages
    }
  }
}

const log = (line: string) => console.log(line)

/** A server under load, and how to load it: over HTTP (`Load.run`) unless said. */
type Target = ServerProcess.ServerProcess & { readonly load?: typeof SocketLoad.run | undefined }

const measure = async (server: Target, step: Pick<Step, "concurrency" | "requests" | "seconds">) => {
  const peak = server.sampleRss()
  const cpuBefore = server.cpuSeconds()
  const result = await (server.load ?? Load.run)({
    url: server.url,
    concurrency: step.concurrency,
    requests: step.requests,
    seconds: step.seconds,
    message: SHORT_MESSAGE
  })
  return { result, peakRss: peak(), cpuSeconds: server.cpuSeconds() - cpuBefore }
}

const warm = (server: ServerProcess.ServerProcess, smoke: boolean) =>
  Load.run({ url: server.url, concurrency: 16, requests: smoke ? 32 : 600, message: SHORT_MESSAGE })

/** Runs servers in alternating rounds at each concurrency; one table row per server and concurrency. */
const alternate = async (servers: ReadonlyArray<Target>, steps: ReadonlyArray<Step>) => {
  const rows: Array<Row> = []
  const roundRatios: Array<string> = []
  for (const step of steps) {
    const accumulators = servers.map(() => new Accumulator())
    for (let round = 0; round < step.rounds; round++) {
      // Alternate which server goes first, so neither always gets the warmer machine.
      const order =
        round % 2 === 0 ? servers.map((_, index) => index) : servers.map((_, index) => index).reverse()
      for (const index of order) {
        const { result, peakRss, cpuSeconds } = await measure(servers[index]!, step)
        accumulators[index]!.add(result, step.concurrency, peakRss, cpuSeconds)
        log(
          `  ${servers[index]!.name} c=${step.concurrency} round ${round + 1}: TTFE p50 ${Load.percentile(
            result.samples.map((sample) => sample.ttfe),
            50
          ).toFixed(2)} ms, ${(result.samples.length / result.seconds).toFixed(0)}/s, ${result.errors} errors`
        )
      }
    }
    for (const [index, server] of servers.entries())
      rows.push(accumulators[index]!.row(server.name, step.concurrency))
    if (servers.length > 1) {
      const reference = accumulators.at(-1)!
      roundRatios.push(
        `c=${step.concurrency}: ${servers
          .slice(0, -1)
          .map(
            (server, index) =>
              `${server.name} ${accumulators[index]!.roundP50.map((p50, round) => (p50 / reference.roundP50[round]!).toFixed(2)).join(", ")}`
          )
          .join("; ")}`
      )
    }
  }
  return { rows, roundRatios }
}

/**
 * Resident memory once garbage has had time to go: the least of readings over
 * three seconds after a one-second pause. A single reading swings by tens of
 * megabytes with the collector's timing.
 */
const settledRss = async (server: ServerProcess.ServerProcess): Promise<number> => {
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  let least = server.rss()
  for (let reading = 0; reading < 15; reading++) {
    await new Promise((resolve) => setTimeout(resolve, 200))
    least = Math.min(least, server.rss())
  }
  return least
}

/** Memory per open stream: idle RSS, then RSS with `count` slow streams open. */
const memoryOf = async (
  server: ServerProcess.ServerProcess,
  count: number,
  message: string = SLOW_MESSAGE
): Promise<MemoryRow> => {
  await Load.run({ url: server.url, concurrency: 8, requests: 8, message: "warm up" }).catch(() => undefined)
  const idleRss = await settledRss(server)
  let openRss = 0
  const held = await Load.holdOpen({
    url: server.url,
    count,
    message,
    whileOpen: async () => {
      openRss = await settledRss(server)
    }
  })
  return {
    server: server.name,
    streams: count,
    opened: held.opened,
    idleRss,
    openRss,
    perStream: (openRss - idleRss) / count,
    errors: held.errors,
    temporary: held.temporary,
    ttfeP50: Load.percentile(held.ttfe, 50),
    ttfeP99: Load.percentile(held.ttfe, 99),
    errorMessages: held.errorMessages
  }
}

/**
 * Memory per open stream of Convoke and the baseline, one after the other
 * (`convokeFlags`: flags to `node` for Convoke, to see what a V8 setting does).
 */
export const memoryRows = async (
  plan: Pick<Plan, "memoryStreams">,
  databaseUrl: string,
  keep: (server: ServerProcess.ServerProcess) => ServerProcess.ServerProcess = (server) => server,
  convokeFlags: ReadonlyArray<string> = []
): Promise<Array<MemoryRow>> => {
  const rows: Array<MemoryRow> = []
  for (const which of ["Convoke", "baseline"] as const) {
    const server = keep(
      which === "Convoke"
        ? await startConvoke(databaseUrl, HELD_DELAY_MS, [], { nodeFlags: convokeFlags })
        : await startBaseline(databaseUrl, HELD_DELAY_MS)
    )
    try {
      rows.push(await memoryOf(server, plan.memoryStreams, HELD_MESSAGE))
      log(`  ${which}: ${(rows.at(-1)!.perStream / 1024).toFixed(1)} KiB per stream`)
    } finally {
      await server.stop()
    }
  }
  return rows
}

/**
 * `streams` slow streams opened at once on each server (no waves), in
 * alternating rounds: TTFE while the others open, and the SYN drops the
 * kernel counted meanwhile.
 */
export const burstTable = async (
  plan: Plan,
  databaseUrl: string,
  keep: <A extends ServerProcess.ServerProcess>(server: A) => A = (server) => server
): Promise<Table> => {
  const { streams, rounds } = plan.burst
  log(`${streams} streams opened at once`)
  const servers = [
    keep(await startConvoke(databaseUrl, HELD_DELAY_MS)),
    keep(await startBaseline(databaseUrl, HELD_DELAY_MS))
  ]
  const accumulators = servers.map(() => new Accumulator())
  const drops = servers.map(() => 0)
  for (let round = 0; round < rounds; round++) {
    for (const index of round % 2 === 0 ? [0, 1] : [1, 0]) {
      const server = servers[index]!
      await Load.run({ url: server.url, concurrency: 8, requests: 16, message: "warm up" })
      const peak = server.sampleRss()
      const dropsBefore = Load.listenDrops()
      const started = performance.now()
      const held = await Load.holdOpen({
        url: server.url,
        count: streams,
        batch: streams,
        message: SLOW_MESSAGE,
        whileOpen: async () => {}
      })
      drops[index]! += Load.listenDrops() - dropsBefore
      accumulators[index]!.add(
        {
          samples: held.ttfe.map((ttfe) => ({ ttfe, done: Number.NaN, temporary: false })),
          errors: held.errors,
          errorMessages: held.errorMessages,
          seconds: (performance.now() - started) / 1000
        },
        0,
        peak(),
        0
      )
      accumulators[index]!.temporary += held.temporary
      log(
        `  ${server.name} round ${round + 1}: TTFE p50 ${Load.percentile(held.ttfe, 50).toFixed(0)} ms, p99 ${Load.percentile(held.ttfe, 99).toFixed(0)} ms, ${held.errors} errors`
      )
    }
  }
  return {
    title: `${streams} streams opened at once`,
    note: `${streams} streams (the model sends a word a second) opened at the same moment, each on a new connection, on each server in alternating rounds; TTFE while the others open. SYN drops (the kernel's \`ListenDrops\` over the rounds): ${servers.map((server, index) => `${server.name} ${drops[index]}`).join(", ")}.`,
    rows: servers.map((server, index) => accumulators[index]!.row(server.name, streams)),
    reference: "baseline",
    synDrops: Object.fromEntries(servers.map((server, index) => [server.name, drops[index]!]))
  }
}

/** Times the conversation INSERT of the baseline alone, one at a time, on an idle database. */
const timeInsert = async (databaseUrl: string, count: number) => {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 })
  const times: Array<number> = []
  try {
    for (let index = 0; index < count; index++) {
      const now = new Date()
      const started = performance.now()
      await pool.query(
        "INSERT INTO convoke_conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        [randomUUID(), "insert-timing", "hello benchmark world", now]
      )
      times.push(performance.now() - started)
    }
  } finally {
    await pool.end()
  }
  return { p50: Load.percentile(times, 50), p99: Load.percentile(times, 99) }
}

/** Each slowloris connection sends one more byte of its request head this often. */
const TRICKLE_MS = 300

/**
 * Opens `count` connections to `url` that each send a request head a byte at
 * a time and never finish it; `stop` closes them all.
 */
const slowlorisAttack = async (url: string, count: number) => {
  const { hostname, port } = new URL(url)
  const sockets = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof connect>>((resolve) => {
          const socket = connect({ host: hostname, port: Number(port) })
          // The server answers a head that takes too long with a 408 and closes: that is its defence.
          socket.on("error", () => {})
          socket.once("connect", () => {
            socket.write("POST /api/v0.3/chat HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
            resolve(socket)
          })
        })
    )
  )
  const trickle = setInterval(() => {
    for (const socket of sockets) if (!socket.destroyed) socket.write("a")
  }, TRICKLE_MS)
  return {
    stop: () => {
      clearInterval(trickle)
      for (const socket of sockets) socket.destroy()
    }
  }
}

/** TTFE of one server idle and under a slowloris attack, in alternating rounds. */
const underSlowloris = async (
  server: ServerProcess.ServerProcess,
  plan: Plan["slowloris"]
): Promise<ReadonlyArray<Row>> => {
  const idle = new Accumulator()
  const attacked = new Accumulator()
  for (let round = 0; round < plan.rounds; round++) {
    const first = await measure(server, { concurrency: 1, requests: plan.requests })
    idle.add(first.result, 1, first.peakRss, first.cpuSeconds)
    const attack = await slowlorisAttack(server.url, plan.attackers)
    try {
      const second = await measure(server, { concurrency: 1, requests: plan.requests })
      attacked.add(second.result, 1, second.peakRss, second.cpuSeconds)
    } finally {
      attack.stop()
    }
    log(
      `  round ${round + 1}: TTFE p50 idle ${Load.percentile(
        first.result.samples.map((sample) => sample.ttfe),
        50
      ).toFixed(2)} ms, under attack ${Load.percentile(attacked.ttfe.slice(-plan.requests), 50).toFixed(
        2
      )} ms`
    )
  }
  return [idle.row("Convoke (idle)", 1), attacked.row(`Convoke (${plan.attackers} slowloris)`, 1)]
}

/** Whether Redis answers at `url`: one PING over a bare socket. */
export const redisReachable = (url: string): Promise<boolean> =>
  new Promise((resolve) => {
    const { hostname, port } = new URL(url)
    const socket = connect({ host: hostname, port: Number(port || 6379) })
    const done = (reachable: boolean) => {
      socket.destroy()
      resolve(reachable)
    }
    socket.setTimeout(1_000, () => done(false))
    socket.once("error", () => done(false))
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")))
  })

/**
 * The WebSocket transport beside SSE on the same Convoke process and the
 * baseline (SSE), alternating rounds; then frames per second of long replies
 * on both transports, on a Convoke with no delay between words.
 */
export const webSocketTable = async (
  plan: Plan,
  databaseUrl: string,
  keep: <A extends ServerProcess.ServerProcess>(server: A) => A = (server) => server
): Promise<Table> => {
  log("WebSocket vs SSE")
  const convoke = keep(await startConvoke(databaseUrl, SHORT_DELAY_MS))
  const baseline = keep(await startBaseline(databaseUrl, SHORT_DELAY_MS))
  const overSocket: Target = { ...convoke, name: "Convoke (WebSocket)", load: SocketLoad.run }
  const overSse: Target = { ...convoke, name: "Convoke (SSE)" }
  for (const server of [overSocket, overSse, baseline]) await warm(server, plan.smoke)
  const { rows, roundRatios } = await alternate([overSocket, overSse, baseline], plan.websocket)
  // The frame rates are measured on a machine with no other server running.
  await Promise.all([convoke.stop(), baseline.stop()])
  const fast = keep(await startConvoke(databaseUrl, 0, [], { name: "Convoke (no delay)" }))
  const long = Array.from({ length: plan.frames.words }, (_, index) => `w${index}`).join(" ")
  await SocketLoad.framesSocket(fast.url, "warm up", 4)
  const rates: Array<string> = []
  for (const [name, measureFrames] of [
    ["SSE", SocketLoad.framesSse],
    ["WebSocket", SocketLoad.framesSocket],
    ["SSE", SocketLoad.framesSse],
    ["WebSocket", SocketLoad.framesSocket]
  ] as const) {
    const { frames, seconds } = await measureFrames(fast.url, long, plan.frames.replies)
    rates.push(`${name} ${(frames / seconds).toFixed(0)}`)
    log(`  frames/s ${name}: ${(frames / seconds).toFixed(0)} (${frames} frames in ${seconds.toFixed(2)} s)`)
  }
  await fast.stop()
  return {
    title: "WebSocket vs SSE",
    note: `One Convoke process (PostgreSQL) read over WebSocket (\`concurrency\` sockets opened before the clock starts, one turn at a time each) and over SSE (keep-alive connections), and the baseline (SSE), alternating rounds. Frames per second, ${plan.frames.replies} replies of ${plan.frames.words} words at once with no delay between words (SSE: one connection each; WebSocket: one socket for all), two rounds each: ${rates.join(", ")}.`,
    rows,
    reference: "baseline",
    roundRatios
  }
}

/**
 * The main scenario: a new conversation per request, six content events 5 ms
 * apart, Convoke, the Effect floor and the baseline in alternating rounds at
 * each level. Convoke starts first: it runs the migrations the others rely on.
 */
export const postgresTable = async (
  plan: Plan,
  databaseUrl: string,
  keep: <A extends ServerProcess.ServerProcess>(server: A) => A = (server) => server
): Promise<Table> => {
  const convoke = keep(await startConvoke(databaseUrl, SHORT_DELAY_MS))
  const floor = keep(await startEffectFloor(databaseUrl, SHORT_DELAY_MS))
  const baseline = keep(await startBaseline(databaseUrl, SHORT_DELAY_MS))
  log("PostgreSQL: Convoke vs the Effect floor vs the baseline")
  for (const server of [convoke, floor, baseline]) await warm(server, plan.smoke)
  const postgres = await alternate([convoke, floor, baseline], plan.load)
  return {
    title: "PostgreSQL: Convoke vs the baseline",
    note: `Reference server CLI (\`DATABASE_URL\`, rate limits off, logs off, metrics on, the default creation budget) vs \`node:http\` + \`pg\`, same database, alternating rounds of 10 s per level: a new conversation per request, six content events 5 ms apart. The ${EFFECT_FLOOR} is the baseline's server written as the leanest Effect program (\`EffectBaseline.ts\`: a fiber per request, \`@effect/sql-pg\` multiplexed as Convoke's pool is, Effect sleeps). CPU ms/req: the server process's user + system time over the round, per completed request.`,
    rows: postgres.rows,
    reference: "baseline",
    roundRatios: postgres.roundRatios
  }
}

/** A CPU profile of one server under the main scenario's load. */
export interface Profiled {
  readonly server: string
  /** The `.cpuprofile` file, for a flame graph (Chrome DevTools, speedscope). */
  readonly file: string
  readonly requests: number
  readonly temporary: number
  readonly cpuSeconds: number
  readonly profile: Profile.Breakdown
}

/**
 * Profiles Convoke, the Effect floor and the baseline (`node --cpu-prof`)
 * under `seconds` of the main scenario at `concurrency`, one after the
 * other; the profiles stay in `directory`.
 */
export const profile = async (
  databaseUrl: string,
  concurrency: number,
  seconds: number,
  directory: string
): Promise<ReadonlyArray<Profiled>> => {
  const results: Array<Profiled> = []
  for (const which of ["Convoke", EFFECT_FLOOR, "baseline"] as const) {
    const dir = join(directory, which.replaceAll(" ", "-"))
    const flags = ["--cpu-prof", "--cpu-prof-dir", dir]
    const server =
      which === "Convoke"
        ? await startConvoke(databaseUrl, SHORT_DELAY_MS, [], { nodeFlags: flags })
        : which === EFFECT_FLOOR
          ? await startEffectFloor(databaseUrl, SHORT_DELAY_MS, flags)
          : await startBaseline(databaseUrl, SHORT_DELAY_MS, flags)
    await warm(server, false)
    const from = Profile.monotonicMicros()
    const { result, cpuSeconds } = await measure(server, { concurrency, seconds })
    const to = Profile.monotonicMicros()
    await server.stop()
    const file = readdirSync(dir).find((name) => name.endsWith(".cpuprofile"))
    if (file === undefined) throw new Error(`${which} wrote no CPU profile (did it exit normally?)`)
    results.push({
      server: which,
      file: join(dir, file),
      requests: result.samples.length,
      temporary: result.samples.filter((sample) => sample.temporary).length,
      cpuSeconds,
      profile: Profile.read(join(dir, file), { from, to })
    })
  }
  return results
}

/** What to clean up if the run is stopped from outside (a signal): set while a run holds a database. */
export let onAbort: (() => Promise<void>) | undefined

/** Runs the suite. */
export const run = async (plan: Plan): Promise<Report> => {
  const database = await makeTestDatabase()
  // Stopped from outside: the bin's signal handler drops the database too.
  onAbort = () => database.drop()
  const started: Array<ServerProcess.ServerProcess> = []
  const keep = <A extends ServerProcess.ServerProcess>(server: A) => {
    started.push(server)
    return server
  }
  const stopAll = async () => {
    await Promise.all(started.splice(0).map((server) => server.stop()))
  }
  const dataDir = mkdtempSync(join(tmpdir(), "convoke-bench-"))
  const tables: Array<Table> = []
  const memory: Array<MemoryRow> = []
  let many: MemoryRow | undefined
  let insert: Report["insert"]
  let profiles: ReadonlyArray<Profiled> = []
  try {
    tables.push(await postgresTable(plan, database.url, keep))
    insert = await timeInsert(database.url, plan.smoke ? 20 : 500)
    await stopAll()
    if (!plan.smoke) {
      log("CPU profiles at concurrency 64")
      const profileDir = mkdtempSync(join(tmpdir(), "convoke-profile-"))
      try {
        profiles = await profile(database.url, 64, 10, profileDir)
      } finally {
        rmSync(profileDir, { recursive: true, force: true })
      }
    }

    if (await redisReachable(REDIS_URL)) {
      log("Turn log: Redis vs in memory")
      const withRedis = keep(
        await startConvoke(database.url, SHORT_DELAY_MS, [], {
          name: "Convoke (Redis log)",
          redisUrl: REDIS_URL
        })
      )
      const inMemory = keep(
        await startConvoke(database.url, SHORT_DELAY_MS, [], { name: "Convoke (memory log)" })
      )
      const baselineAgain = keep(await startBaseline(database.url, SHORT_DELAY_MS))
      for (const server of [withRedis, inMemory, baselineAgain]) await warm(server, plan.smoke)
      const turnLog = await alternate([withRedis, baselineAgain, inMemory], plan.turnLog)
      tables.push({
        title: "Turn log: Redis vs in memory",
        note: `The reference server with \`REDIS_URL\` (${REDIS_URL}: the turn log in Redis Streams, written in the background in batches) against the same server with the in-memory log, and the baseline, alternating rounds.`,
        rows: turnLog.rows,
        reference: "Convoke (memory log)",
        roundRatios: turnLog.roundRatios
      })
      await stopAll()
    } else {
      log(`Turn log: skipped, no Redis at ${REDIS_URL}`)
    }

    tables.push(await webSocketTable(plan, database.url, keep))
    await stopAll()

    log("Adapters: plain Node handler vs Express, Fastify, Lambda")
    const adapters: Array<ServerProcess.ServerProcess> = []
    for (const kind of ["express", "fastify", "lambda", "node"]) {
      adapters.push(keep(await startAdapter(kind, database.url, SHORT_DELAY_MS)))
    }
    for (const server of adapters) await warm(server, plan.smoke)
    const adapterResult = await alternate(adapters, plan.adapters)
    tables.push({
      title: "Adapters: TTFE relative to the plain Node handler",
      note: "The same app (`ChatHttp.makeApp`, PostgreSQL store, echo model, anonymous) behind each adapter; the Lambda handler runs behind the loopback Function URL stand-in of the Lambda package's tests.",
      rows: adapterResult.rows,
      reference: "node",
      roundRatios: adapterResult.roundRatios
    })
    await stopAll()

    log("Embedded PGlite (the zero-configuration default)")
    const embedded = keep(await startConvoke(undefined, SHORT_DELAY_MS, ["--data-dir", dataDir]))
    const renamed = { ...embedded, name: PGLITE }
    // The trade-off the store-pg README offers: a young generation capped at
    // 8 MB (V8 grows it to 64 MB under load) holds RSS down for some CPU.
    const capped = keep(
      await startConvoke(undefined, SHORT_DELAY_MS, [], {
        name: PGLITE_CAPPED,
        nodeFlags: ["--max-semi-space-size=8"]
      })
    )
    await warm(renamed, plan.smoke)
    await warm(capped, plan.smoke)
    const pglite = await alternate(
      [renamed, capped],
      plan.pglite.concurrency.map((concurrency) => ({
        concurrency,
        requests: plan.pglite.requests,
        rounds: 1
      }))
    )
    tables.push({
      title: "Embedded PGlite (Convoke only)",
      note: "The reference server with no `DATABASE_URL`: PGlite in-process, reached through pglite-socket, each on a new data directory (its first start: the database is created by a short-lived child process, then opened). PGlite serves one query at a time. The second server runs with `node --max-semi-space-size=8`.",
      rows: pglite.rows
    })
    await stopAll()

    log(`Slowloris: ${plan.slowloris.attackers} connections trickling request heads`)
    const target = keep(await startConvoke(database.url, SHORT_DELAY_MS))
    await warm(target, plan.smoke)
    tables.push({
      title: "Slowloris: TTFE under attack",
      note: `The reference server at concurrency 1, idle and while ${plan.slowloris.attackers} connections each send a byte of a request head every ${TRICKLE_MS} ms and never finish it (the server's header timeout, 20 s by default, answers them with a 408), alternating rounds.`,
      rows: await underSlowloris(target, plan.slowloris),
      reference: "Convoke (idle)"
    })
    await stopAll()

    log(`Memory per open stream (${plan.memoryStreams} streams)`)
    memory.push(...(await memoryRows(plan, database.url, keep)))
    await stopAll()

    tables.push(await burstTable(plan, database.url, keep))
    await stopAll()

    if (plan.manyStreams > 0) {
      log(`${plan.manyStreams} open streams on one Convoke instance`)
      const server = keep(await startConvoke(database.url, SLOW_DELAY_MS))
      many = await memoryOf(server, plan.manyStreams)
      log(`  ${many.errors} errors, ${(many.perStream / 1024).toFixed(1)} KiB per stream`)
      await stopAll()
    }
  } finally {
    await stopAll()
    rmSync(dataDir, { recursive: true, force: true })
    onAbort = undefined
    await database.drop()
  }
  const errors =
    tables.reduce((sum, table) => sum + table.rows.reduce((rows, row) => rows + row.errors, 0), 0) +
    memory.reduce((sum, row) => sum + row.errors, 0) +
    (many?.errors ?? 0)
  return { tables, memory, many, insert, profiles, errors }
}
