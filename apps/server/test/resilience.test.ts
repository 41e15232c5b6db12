/**
 * Database outages against the real PostgreSQL, without touching the shared
 * server: the reference server talks to PostgreSQL through a loopback TCP
 * proxy the test cuts, blackholes and restores.
 */
import { makeTcpProxy, makeTestDatabase, type WriteWatch, watchWrites } from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import {
  ADMIN_TOKEN,
  chat,
  events,
  healthDetails,
  query,
  readAll,
  startServer,
  testSettings,
  UUID_V4
} from "./helpers.ts"

type Proxy = Awaited<ReturnType<typeof makeTcpProxy>>

let database: Awaited<ReturnType<typeof makeTestDatabase>>
let proxy: Proxy
let server: RunningServer
// What the outbox writes once the database is back, announced as it commits.
let messageWrites: WriteWatch
let auditWrites: WriteWatch

const direct = <A extends object>(text: string, params: ReadonlyArray<unknown> = []) =>
  query<A>(database.url, text, params)

/**
 * Holds `LOCK TABLE convoke_conversations IN EXCLUSIVE MODE` in a transaction
 * of its own until `release`: every new conversation waits, while reads and
 * `SELECT 1` go on (a migration, or a disk stalling on fsync, look the same
 * to the server).
 */
const lockConversations = () => {
  let release!: () => void
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  let locked!: () => void
  const isLocked = new Promise<void>((resolve) => {
    locked = resolve
  })
  const done = Effect.runPromise(
    Effect.gen(function* () {
      const sql = yield* PgClient.PgClient
      yield* sql.withTransaction(
        Effect.gen(function* () {
          yield* sql.unsafe("LOCK TABLE convoke_conversations IN EXCLUSIVE MODE")
          locked()
          yield* Effect.promise(() => released)
        })
      )
    }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(database.url), maxConnections: 1 })))
  )
  return { isLocked, release, done }
}

/** The times the server's liveness connection last answered `SELECT 1`, as PostgreSQL records them. */
const livenessAnswers = async (seen: Set<string>) => {
  const rows = await direct<{ at: string }>(
    "SELECT state_change::text AS at FROM pg_stat_activity WHERE datname = $1 AND query = 'SELECT 1' AND state = 'idle'",
    [database.name]
  )
  for (const { at } of rows) seen.add(at)
  return seen.size
}

/** The outbox's counters, from `/health`. */
const outbox = async () => (await healthDetails(server)).outbox

/** Reads the first chunk of a stream, then the rest. */
const streamed = async (body: object) => {
  const startedAt = performance.now()
  const response = await chat(server, { stream: true, ...body })
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  const first = decoder.decode((await reader.read()).value)
  const firstEventMillis = performance.now() - startedAt
  let rest = ""
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    rest += decoder.decode(value, { stream: true })
  }
  const metadata = JSON.parse(first.replace(/^data: /, ""))
  // Each event's `data:` line, without the `id:` line before it.
  const payloads = rest
    .split("\n\n")
    .filter(Boolean)
    .map((frame) => frame.replace(/^id: [^\n]*\n/, ""))
  return { metadata, firstEventMillis, payloads }
}

beforeAll(async () => {
  database = await makeTestDatabase()
  const target = new URL(database.url)
  proxy = await makeTcpProxy({ targetHost: target.hostname, targetPort: Number(target.port || 5432) })
  const throughProxy = new URL(database.url)
  throughProxy.hostname = proxy.host
  throughProxy.port = String(proxy.port)
  server = await startServer({
    databaseUrl: throughProxy.toString(),
    chat: { ...testSettings().chat, creationBudget: Duration.millis(100) },
    cleanupIntervalMinutes: 0,
    adminToken: Redacted.make(ADMIN_TOKEN)
  })
  // The server has migrated the database: the tables exist.
  messageWrites = await watchWrites(database.url, "convoke_messages", ["conversation_id"])
  auditWrites = await watchWrites(database.url, "convoke_audit_log", ["conversation_id", "cause"])
})

afterAll(async () => {
  proxy?.restore()
  await server?.close()
  await messageWrites?.close()
  await auditWrites?.close()
  await proxy?.close()
  await database?.drop()
})

describe("reference server during a database outage", () => {
  it("waits for a database whose writes wait on a lock while it still answers: no temporary id", async () => {
    const lock = lockConversations()
    await lock.isLocked
    const pending = streamed({ message: "behind a lock" })
    try {
      // The creation waits on the lock; the server's liveness check answers meanwhile,
      // ten times (five creation budgets), and the stream keeps waiting for its conversation.
      const seen = new Set<string>()
      await expect
        .poll(() => livenessAnswers(seen), { timeout: 10_000, interval: 5 })
        .toBeGreaterThanOrEqual(10)
    } finally {
      // Released whatever happened: the tests after this one write to the table.
      lock.release()
      await lock.done
    }
    const { metadata, firstEventMillis, payloads } = await pending
    console.info(`time to first event behind a lock: ${firstEventMillis.toFixed(1)} ms`)
    expect(metadata.temporary).toBeUndefined()
    expect(payloads.at(-1)).toBe("data: [DONE]")
    const [row] = await direct<{ id: string }>("SELECT id FROM convoke_conversations WHERE id = $1", [
      metadata.conversation_id
    ])
    expect(row?.id).toBe(metadata.conversation_id)
  })

  for (const fault of ["cut", "blackhole"] as const) {
    it(`streams on a temporary id when the database is ${fault === "cut" ? "cut off" : "blackholed"}, and stores it all once it is back`, async () => {
      proxy[fault]()
      const { metadata, firstEventMillis, payloads } = await streamed({ message: `during ${fault}` })
      console.info(`time to first event with the database ${fault}: ${firstEventMillis.toFixed(1)} ms`)
      expect(metadata).toMatchObject({ type: "metadata", temporary: true })
      expect(metadata.conversation_id).toMatch(UUID_V4)
      expect(payloads.at(-1)).toBe("data: [DONE]")
      expect(
        payloads
          .slice(0, -1)
          .map((payload) => JSON.parse(payload.slice(6)).delta.content)
          .join("")
      ).toBe(`Echo #1: during ${fault}`)

      const blocking = await chat(server, { message: "not streaming" })
      expect(blocking.status).toBe(503)
      expect(blocking.headers.get("retry-after")).not.toBeNull()
      expect((await blocking.json()).error.type).toBe("unavailable")

      proxy.restore()
      // Queued while the database was away: both messages, and the audit of the reconciliation.
      const id = metadata.conversation_id
      await messageWrites.written((row) => row.conversation_id === id, 2)
      await auditWrites.written((row) => row.conversation_id === id && row.cause === "reconciled")
      const rows = await direct<{ role: string; status: string; content: string }>(
        "SELECT m.role, m.status, m.content FROM convoke_messages m JOIN convoke_conversations c ON c.id = m.conversation_id WHERE c.id = $1 AND c.user_id = 'anonymous' ORDER BY m.seq",
        [metadata.conversation_id]
      )
      expect(rows.map(({ role, status, content }) => `${role}/${status}/${content}`)).toEqual([
        `user/complete/during ${fault}`,
        `assistant/complete/Echo #1: during ${fault}`
      ])

      const resumed = events(
        await readAll(
          await chat(server, { message: "after", stream: true, conversation_id: metadata.conversation_id })
        )
      )
      expect(resumed[0]).toEqual({
        type: "metadata",
        conversation_id: metadata.conversation_id,
        model: "unified-chat",
        timestamp: expect.any(Number),
        turn_id: expect.stringMatching(UUID_V4)
      })
      expect(
        resumed
          .slice(1)
          .map((event) => event.delta.content)
          .join("")
      ).toBe("Echo #2: after")
      const [count] = await direct<{ messages: string; distinct_messages: string }>(
        "SELECT count(*) AS messages, count(DISTINCT id) AS distinct_messages FROM convoke_messages WHERE conversation_id = $1",
        [metadata.conversation_id]
      )
      expect(Number(count!.messages)).toBe(4)
      expect(Number(count!.distinct_messages)).toBe(4)
      const audit = await direct<{ cause: string }>(
        "SELECT cause FROM convoke_audit_log WHERE conversation_id = $1 AND action = 'conversation.created' ORDER BY id",
        [metadata.conversation_id]
      )
      expect(audit.map(({ cause }) => cause)).toContain("reconciled")
    })
  }

  it("loses nothing from a burst of 500 streams during an outage", async () => {
    proxy.cut()
    const ids: Array<string> = []
    const timings: Array<number> = []
    let next = 0
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < 500) {
          const index = next++
          const { metadata, firstEventMillis, payloads } = await streamed({ message: `burst ${index}` })
          expect(metadata.temporary).toBe(true)
          expect(payloads.at(-1)).toBe("data: [DONE]")
          ids.push(metadata.conversation_id)
          timings.push(firstEventMillis)
        }
      })
    )
    timings.sort((a, b) => a - b)
    console.info(
      `burst of 500 streams during an outage: time to first event p50 ${timings[250]!.toFixed(1)} ms, p99 ${timings[495]!.toFixed(1)} ms`
    )
    expect(new Set(ids).size).toBe(500)
    expect((await outbox()).dropped).toBe(0)
    proxy.restore()
    const burst = new Set(ids)
    await messageWrites.written((row) => burst.has(row.conversation_id as string), 1000)
    expect((await outbox()).dropped).toBe(0)
    const [stored] = await direct<{ conversations: string; messages: string; distinct_messages: string }>(
      `SELECT
         (SELECT count(*) FROM convoke_conversations WHERE id = ANY($1::uuid[])) AS conversations,
         (SELECT count(*) FROM convoke_messages WHERE conversation_id = ANY($1::uuid[])) AS messages,
         (SELECT count(DISTINCT (conversation_id, role)) FROM convoke_messages WHERE conversation_id = ANY($1::uuid[])) AS distinct_messages`,
      [ids]
    )
    expect(Number(stored!.conversations)).toBe(500)
    expect(Number(stored!.messages)).toBe(1000)
    expect(Number(stored!.distinct_messages)).toBe(1000)
  })
})
