/**
 * The durable outbox, end to end: the `convoke` CLI as a real process talks
 * to the real PostgreSQL through a TCP proxy the test cuts; 50 streams start
 * on temporary ids and run to `[DONE]`; the server is killed with SIGKILL;
 * with PostgreSQL back, a new server writes every conversation and message
 * under the ids the clients hold — from the journal in the data directory
 * (whole, or with its tail torn), or from Redis.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdtemp, rm, stat, truncate } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { deleteKeys, requireService } from "@convoke/core/testing"
import {
  makeTcpProxy,
  makeTestDatabase,
  requireServer,
  type TcpProxy,
  type TestDatabase,
  type WriteWatch,
  watchWrites
} from "@convoke/store-pg/testing"
import { NodeRedis } from "@effect/platform-node"
import { Effect } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import {
  ADMIN_TOKEN,
  chat,
  events,
  frames,
  healthDetails,
  isRedisReachable,
  query,
  watchOutput
} from "./helpers.ts"

const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379"
const postgresReachable = await requireServer(it)
const redisReachable = requireService(
  it,
  `Redis at ${new URL(REDIS_URL).host}`,
  await isRedisReachable(REDIS_URL)
)

const bin = join(import.meta.dirname, "..", "src", "bin.ts")
const STREAMS = 50

// Nothing of the developer's own settings (a model key, Redis, a data directory) reaches these servers.
const inherited = Object.fromEntries(
  Object.entries(process.env).filter(
    ([name]) => !name.startsWith("ANTHROPIC_") && !name.startsWith("CONVOKE_") && name !== "REDIS_URL"
  )
)

let database: TestDatabase
let proxy: TcpProxy
let throughProxy: string
let messageWrites: WriteWatch | undefined
const children: Array<ChildProcess> = []
const directories: Array<string> = []
const prefixes: Array<string> = []

beforeAll(async () => {
  if (!postgresReachable) return
  database = await makeTestDatabase()
  const target = new URL(database.url)
  proxy = await makeTcpProxy({ targetHost: target.hostname, targetPort: Number(target.port || 5432) })
  const url = new URL(database.url)
  url.hostname = proxy.host
  url.port = String(proxy.port)
  throughProxy = url.toString()
})

afterEach(async () => {
  proxy?.restore()
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL")
})

afterAll(async () => {
  await messageWrites?.close()
  await proxy?.close()
  await database?.drop()
  for (const directory of directories) await rm(directory, { recursive: true, force: true })
  if (prefixes.length > 0) {
    await Effect.runPromise(
      Effect.gen(function* () {
        for (const prefix of prefixes) yield* deleteKeys(prefix)
      }).pipe(Effect.provide(NodeRedis.layer({ url: REDIS_URL })), Effect.ignore)
    )
  }
})

const freshDirectory = async () => {
  const directory = await mkdtemp(join(tmpdir(), "convoke-crash-"))
  directories.push(directory)
  return directory
}

/** Starts `convoke` on PostgreSQL through the proxy; resolves once it listens. */
const startServer = async (env: Record<string, string>) => {
  const child = spawn(process.execPath, [bin], {
    env: {
      ...inherited,
      PORT: "0",
      DATABASE_URL: throughProxy,
      CONVOKE_ECHO_DELAY_MS: "1",
      CONVOKE_CREATION_BUDGET_MS: "100",
      CONVOKE_RATE_LIMIT_REQUESTS: "0",
      CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "0",
      CONVOKE_RATE_LIMIT_CONCURRENT: "0",
      CONVOKE_CLEANUP_INTERVAL_MINUTES: "0",
      CONVOKE_METRICS: "off",
      CONVOKE_WEB_DIR: "off",
      CONVOKE_LOG_FORMAT: "json",
      CONVOKE_ADMIN_TOKEN: ADMIN_TOKEN,
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  const output = watchOutput(child)
  const [, url] = await output.waitFor("stdout", /listening\s+(http:\/\/\S+)/)
  return { child, url: url!, output }
}

const health = async (url: string) => (await healthDetails({ url })).outbox

/**
 * Cuts PostgreSQL off, runs `STREAMS` streams to `[DONE]` (each on a
 * temporary id), checks every write is queued, and kills the server.
 */
const crashDuringOutage = async (label: string, env: Record<string, string>) => {
  const first = await startServer(env)
  // The first server has migrated the database: the watch has its table.
  messageWrites ??= await watchWrites(database.url, "convoke_messages", ["conversation_id", "role"])
  proxy.cut()
  const firstEvents: Array<number> = []
  const streams = await Promise.all(
    Array.from({ length: STREAMS }, async (_, index) => {
      const startedAt = performance.now()
      const response = await chat(first, { message: `crash ${index}`, stream: true })
      const reader = response.body!.getReader()
      const decoder = new TextDecoder()
      let text = decoder.decode((await reader.read()).value, { stream: true })
      firstEvents.push(performance.now() - startedAt)
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        text += decoder.decode(read.value, { stream: true })
      }
      const payloads = frames(text)
      const [metadata, ...content] = events(payloads)
      expect(metadata).toMatchObject({ type: "metadata", temporary: true })
      expect(payloads.at(-1)).toBe("[DONE]")
      return {
        id: metadata!.conversation_id as string,
        message: `crash ${index}`,
        reply: content.map((event) => event.delta.content).join("")
      }
    })
  )
  firstEvents.sort((a, b) => a - b)
  console.info(
    `${STREAMS} concurrent streams on temporary ids, outbox ${label}: time to first event p50 ${firstEvents[STREAMS / 2]!.toFixed(1)} ms, max ${firstEvents.at(-1)!.toFixed(1)} ms`
  )
  // [DONE] comes after the reply is queued: every conversation and both its messages wait.
  expect(await health(first.url)).toMatchObject({ pending: 2 * STREAMS, dropped: 0 })
  first.child.kill("SIGKILL")
  await first.output.closed
  return streams
}

/** What PostgreSQL holds for the conversations of `streams`, by id. */
const stored = async (streams: ReadonlyArray<{ readonly id: string }>) => {
  const rows = await query<{ id: string; user_id: string; role: string; content: string }>(
    database.url,
    `SELECT c.id, c.user_id, m.role, m.content
       FROM convoke_conversations c LEFT JOIN convoke_messages m ON m.conversation_id = c.id
      WHERE c.id = ANY($1::uuid[]) ORDER BY c.id, m.seq`,
    [streams.map(({ id }) => id)]
  )
  const byId = new Map<string, Array<string>>()
  for (const row of rows) {
    expect(row.user_id).toBe("anonymous")
    byId.set(row.id, [
      ...(byId.get(row.id) ?? []),
      ...(row.role === null ? [] : [`${row.role}: ${row.content}`])
    ])
  }
  return byId
}

/** Everything the clients saw, as PostgreSQL should hold it. */
const expected = (
  streams: ReadonlyArray<{ readonly id: string; readonly message: string; readonly reply: string }>
) => new Map(streams.map(({ id, message, reply }) => [id, [`user: ${message}`, `assistant: ${reply}`]]))

describe.skipIf(!postgresReachable)("a crash while PostgreSQL is down", () => {
  it("loses nothing queued in the journal: a restart on the same data directory writes it all", async () => {
    const dataDir = await freshDirectory()
    const streams = await crashDuringOutage("in the journal", { CONVOKE_DATA_DIR: dataDir })
    proxy.restore()
    const ids = new Set(streams.map(({ id }) => id))
    const written = messageWrites!.written((row) => ids.has(row.conversation_id as string), 2 * STREAMS)

    const second = await startServer({ CONVOKE_DATA_DIR: dataDir })
    expect(second.output.stdout()).toMatch(/outbox\s+.*journal in .*; 100 queued writes recovered/)
    await written
    expect(await stored(streams)).toEqual(expected(streams))
    expect(await health(second.url)).toMatchObject({ recovered: 2 * STREAMS, skipped: 0, dropped: 0 })
    // The clients' ids answer through the API, with the same identity.
    const { messages } = await (await fetch(`${second.url}/api/v0.3/conversations/${streams[0]!.id}`)).json()
    expect(messages.map((message: { content: string }) => message.content)).toEqual([
      streams[0]!.message,
      streams[0]!.reply
    ])
  })

  it("recovers every complete record when the crash tore the journal's tail, and says what it skipped", async () => {
    const dataDir = await freshDirectory()
    const streams = await crashDuringOutage("in the journal", { CONVOKE_DATA_DIR: dataDir })
    const journal = join(dataDir, "outbox", "journal")
    await truncate(journal, (await stat(journal)).size - 5)
    proxy.restore()
    const ids = new Set(streams.map(({ id }) => id))
    // The last record queued was the last reply: it is the one lost.
    const written = messageWrites!.written((row) => ids.has(row.conversation_id as string), 2 * STREAMS - 1)

    const second = await startServer({ CONVOKE_DATA_DIR: dataDir })
    expect(second.output.stdout()).toMatch(/99 queued writes recovered, 1 damaged record skipped/)
    await second.output.waitFor("stdout", /The outbox journal had damaged records; they were skipped/)
    await written
    const rows = await stored(streams)
    const missing = streams.filter(({ id, reply }) => !rows.get(id)!.includes(`assistant: ${reply}`))
    expect(missing).toHaveLength(1)
    expect(rows).toEqual(
      new Map(
        [...expected(streams)].map(([id, messages]) => [
          id,
          id === missing[0]!.id ? messages.slice(0, 1) : messages
        ])
      )
    )
    expect(await health(second.url)).toMatchObject({ recovered: 2 * STREAMS - 1, skipped: 1, dropped: 0 })
  })

  describe.skipIf(!redisReachable)("with REDIS_URL", () => {
    it("loses nothing queued in Redis: another server, on another data directory, writes it all", async () => {
      const prefix = `convoke:test:crash:${randomUUID()}:`
      prefixes.push(prefix)
      const redis = { REDIS_URL, CONVOKE_OUTBOX_PREFIX: prefix }
      const streams = await crashDuringOutage("in Redis", {
        ...redis,
        CONVOKE_DATA_DIR: await freshDirectory()
      })
      proxy.restore()
      const ids = new Set(streams.map(({ id }) => id))
      const written = messageWrites!.written((row) => ids.has(row.conversation_id as string), 2 * STREAMS)

      const second = await startServer({ ...redis, CONVOKE_DATA_DIR: await freshDirectory() })
      expect(second.output.stdout()).toMatch(/outbox\s+.*Redis .*prefix .*; 100 queued writes recovered/)
      await written
      expect(await stored(streams)).toEqual(expected(streams))
      expect(await health(second.url)).toMatchObject({ recovered: 2 * STREAMS, dropped: 0 })
    })
  })
})
