/**
 * Turns end to end (ARCHITECTURE §7): reference servers on one PostgreSQL
 * database and one Redis, over real sockets. A stream dropped by the network
 * resumes on another instance with exactly the rest; a stop asked on one
 * instance ends the turn another runs and aborts its model request; the
 * disconnect grace window keeps a turn alive for a client coming back, and
 * only for as long as it lasts; the turn of an instance that is killed ends
 * for its readers with `interrupted`, and its reply is stored once. Then the
 * same resume and stop on one instance with the in-memory log.
 *
 * The model is the echo model (replies of known length) or the fake
 * Anthropic API, whose replies stall until the test sends more and which
 * says when the server closed its request. Connections are dropped by a TCP
 * proxy between the client and the server. Tests wait on events, never on
 * time: the wait for a lease to lapse is the wait for the event it brings.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process"
import { join } from "node:path"
import type { Readable } from "node:stream"
import { FakeAnthropic } from "@convoke/anthropic/testing"
import { RedisTurnLog } from "@convoke/core"
import { CutProxy, requireService } from "@convoke/core/testing"
import {
  makeTestDatabase,
  requireServer,
  type TestDatabase,
  type WriteWatch,
  watchWrites
} from "@convoke/store-pg/testing"
import { Duration } from "effect"
import fc from "fast-check"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { load, type Settings } from "../src/Settings.ts"
import { isRedisReachable, query, startServer, testSettings, watchOutput } from "./helpers.ts"
import {
  contentOf,
  eventOf,
  frameReader,
  idOf,
  type RedisDatabase,
  reserveRedisDatabase
} from "./turnSupport.ts"

const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379"
const postgres = await requireServer(it)
const redis = requireService(it, `Redis at ${new URL(REDIS_URL).host}`, await isRedisReachable(REDIS_URL))

const CONVERSATIONS = "/api/v0.3/conversations"
const API_KEY = "sk-ant-turns-0123456789abcdef"
const KEYS = {
  alice: "turns-alice-0123456789abcdef-ghijklmnopqrstuvwxyz",
  bob: "turns-bob-0123456789abcdefgh-ghijklmnopqrstuvwxyz"
} as const
type User = keyof typeof KEYS
const apiKeys = Object.entries(KEYS).map(([userId, key]) => ({ key, userId }))
const as = (user: User) => ({ authorization: `Bearer ${KEYS[user]}` })
/** The grace window of the Claude-backed instance. */
const GRACE_MS = 1000
const LEASE_MS = Duration.toMillis(RedisTurnLog.defaults.lease)

/** The fake's reply that streams "Hello", then stalls until the test sends the rest. */
const HELLO = FakeAnthropic.frames("hello.sse")
const stallAfterHello = (): FakeAnthropic.Reply => ({ frames: HELLO.slice(0, 4), afterwards: "stall" })
const hello = { type: "content", delta: { content: "Hello" } }
const errorOf = (type: string) => ({ type: "error", error: { type, message: expect.any(String) } })

// The turns and conversations this run wrote to Redis, to delete its keys and only them.
const turnIds = new Set<string>()
const conversationIds = new Set<string>()

/** Starts a streamed turn at `url` and reads its metadata event. */
const startTurn = async (url: string, message: string, user: User = "alice") => {
  const response = await fetch(`${url}/api/v0.3/chat`, {
    method: "POST",
    headers: { "content-type": "application/json", ...as(user) },
    body: JSON.stringify({ message, stream: true })
  })
  expect(response.status).toBe(200)
  const reader = frameReader(response)
  const metadata = eventOf((await reader.next())!)
  expect(metadata).toMatchObject({ type: "metadata", turn_id: expect.any(String) })
  turnIds.add(metadata.turn_id)
  conversationIds.add(metadata.conversation_id)
  return { metadata, reader, conversationId: metadata.conversation_id as string }
}

/** `GET …/stream`, with `Last-Event-ID` when given. */
const resume = (server: { readonly url: string }, id: string, lastEventId?: string, user: User = "alice") =>
  fetch(`${server.url}${CONVERSATIONS}/${id}/stream`, {
    headers: { ...as(user), ...(lastEventId === undefined ? {} : { "last-event-id": lastEventId }) }
  })

const stop = (server: { readonly url: string }, id: string, user: User = "alice") =>
  fetch(`${server.url}${CONVERSATIONS}/${id}/stop`, { method: "POST", headers: as(user) })

const show = async (server: { readonly url: string }, id: string) =>
  (await fetch(`${server.url}${CONVERSATIONS}/${id}`, { headers: as("alice") })).json()

/** The metadata frame a resumed stream begins with: the original's fields, key order included, then `resumed`. */
const resumedFrame = (metadata: object) => `data: ${JSON.stringify({ ...metadata, resumed: true })}`

/** The ids `<turn>:1` … `<turn>:last`. */
const idsUpTo = (turnId: string, last: number) =>
  Array.from({ length: last }, (_, index) => `${turnId}:${index + 1}`)

/** The Anthropic settings that point at the fake. */
const claudeAt = (fake: FakeAnthropic.FakeAnthropic) =>
  load([], {
    ANTHROPIC_API_KEY: API_KEY,
    ANTHROPIC_BASE_URL: fake.url,
    CONVOKE_MODEL_RETRY_DELAY_MS: "1"
  }).anthropic

const withGrace = (millis: number): Pick<Settings, "chat"> => ({
  chat: { ...testSettings().chat, disconnectGrace: Duration.millis(millis) }
})

describe.skipIf(!postgres || !redis)("turns across instances sharing PostgreSQL and Redis", () => {
  let database: TestDatabase
  let redisDatabase: RedisDatabase
  let fake: FakeAnthropic.FakeAnthropic
  let messageWrites: WriteWatch
  /** Runs turns on the echo model, 15 ms a word. */
  let a: RunningServer
  /** Where the turns of the others are resumed and stopped. */
  let b: RunningServer
  /** Runs turns on Claude (the fake), with a grace window of `GRACE_MS`. */
  let claude: RunningServer
  /** The same with a grace window of 0. */
  let claudeNoGrace: RunningServer

  /**
   * Resolves once Redis holds event `seq` of the turn: from then on every
   * instance knows it. The instance running the turn writes it there a few
   * milliseconds after its own readers have it; a resume on another
   * instance inside that window finds nothing to replay yet (204).
   */
  const logged = (turnId: string, seq: number) => redisDatabase.untilLogged(turnId, seq)

  const replies = (conversationId: string) =>
    query<{ content: string; status: string }>(
      database.url,
      "SELECT content, status FROM convoke_messages WHERE conversation_id = $1 AND role = 'assistant' ORDER BY seq",
      [conversationId]
    )

  /** Settings every instance shares: the database, Redis and the users' keys. */
  const shared = (overrides: Partial<Settings> = {}): Partial<Settings> => ({
    databaseUrl: database.url,
    redisUrl: redisDatabase.url,
    apiKeys,
    cleanupIntervalMinutes: 0,
    webDir: undefined,
    ...overrides
  })

  beforeAll(async () => {
    database = await makeTestDatabase()
    redisDatabase = await reserveRedisDatabase(REDIS_URL)
    fake = await FakeAnthropic.start()
    // One at a time: the first migrates the database.
    a = await startServer(shared({ echoDelayMs: 15 }))
    b = await startServer(shared())
    claude = await startServer(shared({ anthropic: claudeAt(fake), ...withGrace(GRACE_MS) }))
    claudeNoGrace = await startServer(shared({ anthropic: claudeAt(fake), ...withGrace(0) }))
    messageWrites = await watchWrites(database.url, "convoke_messages", ["conversation_id", "role"])
  })

  afterAll(async () => {
    await Promise.all([a, b, claude, claudeNoGrace].map((server) => server?.close()))
    await messageWrites?.close()
    await fake?.close()
    await database?.drop()
    const prefix = RedisTurnLog.defaults.prefix
    await redisDatabase?.release([
      ...[...turnIds].flatMap((turn) =>
        ["events", "info", "readers", "stop"].map((suffix) => `${prefix}${turn}:${suffix}`)
      ),
      ...[...conversationIds].map((conversation) => `${prefix}conversation:${conversation}`)
    ])
  })

  describe("resume on another instance", () => {
    it("a stream the network drops after any number of events, at any byte, resumes on the other instance with exactly the rest, once, in order; the stored reply is all of it", async () => {
      let runs = 0
      let resumedLive = 0
      let cutInFrame = 0
      const startedAt = performance.now()
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 2, max: 10 }).chain((words) =>
            fc.record({
              words: fc.constant(words),
              // Frames are the metadata event, the words + 1 content events, then [DONE].
              frames: fc.integer({ min: 1, max: words + 3 }),
              extraBytes: fc.integer({ min: 0, max: 120 })
            })
          ),
          async ({ words, frames, extraBytes }) => {
            runs++
            const message = Array.from({ length: words }, (_, index) => `word${index}`).join(" ")
            const reply = `Echo #1: ${message}`
            const proxy = await CutProxy.make(a.url, { cutAfterFrames: frames, extraBytes })
            try {
              const first = await startTurn(proxy.url, message)
              const failure = await first.reader.rest()
              const turnId = first.metadata.turn_id
              // The frames up to the cut, and perhaps one more that the extra bytes completed.
              expect(first.reader.frames.length).toBeGreaterThanOrEqual(frames)
              expect(first.reader.frames.length).toBeLessThanOrEqual(frames + 1)
              if (first.reader.partial() !== "") cutInFrame++
              const delivered = first.reader.frames.slice(1)
              const last = delivered.at(-1)
              const sawDone = last !== undefined && eventOf(last) === "[DONE]"
              // Dropped by the network, unless everything had passed.
              if (!sawDone) expect(failure).toBeDefined()
              expect(delivered.map(idOf)).toEqual(idsUpTo(turnId, delivered.length))

              await logged(turnId, Math.max(1, delivered.length))
              if ((await show(b, first.conversationId)).running_turn !== null) resumedLive++
              const response = await resume(b, first.conversationId, last && idOf(last))
              let all = delivered
              if (sawDone) {
                expect(response.status).toBe(204)
              } else {
                expect(response.status).toBe(200)
                const second = frameReader(response)
                expect(await second.rest()).toBeUndefined()
                expect(second.frames[0]).toBe(resumedFrame(first.metadata))
                all = [...delivered, ...second.frames.slice(1)]
              }
              expect(all.map(idOf)).toEqual(idsUpTo(turnId, words + 2))
              expect(all.slice(0, -1).map((frame) => eventOf(frame).type)).toEqual(
                Array(words + 1).fill("content")
              )
              expect(eventOf(all.at(-1)!)).toBe("[DONE]")
              expect(contentOf(all)).toBe(reply)
              expect(await replies(first.conversationId)).toEqual([{ content: reply, status: "complete" }])
            } finally {
              await proxy.close()
            }
          }
        ),
        { numRuns: 15 }
      )
      console.info(
        `resume after a cut: ${runs} runs in ${(performance.now() - startedAt).toFixed(0)} ms, ${cutInFrame} cut inside a frame, ${resumedLive} still running when resumed`
      )
    })

    it("replays a finished turn on the other instance from its start without Last-Event-ID, or after ?last_event_id=, to [DONE]; 204 once read to its end or for another turn", async () => {
      const { metadata, reader, conversationId } = await startTurn(a.url, "replay me over there")
      expect(await reader.rest()).toBeUndefined()
      const original = reader.frames
      expect(eventOf(original.at(-1)!)).toBe("[DONE]")

      const whole = frameReader(await resume(b, conversationId))
      expect(await whole.rest()).toBeUndefined()
      expect(whole.frames).toEqual([resumedFrame(metadata), ...original.slice(1)])

      const parameter = `?last_event_id=${encodeURIComponent(`${metadata.turn_id}:2`)}`
      const after = await fetch(`${b.url}${CONVERSATIONS}/${conversationId}/stream${parameter}`, {
        headers: as("alice")
      })
      expect(after.status).toBe(200)
      const rest = frameReader(after)
      expect(await rest.rest()).toBeUndefined()
      expect(rest.frames).toEqual([resumedFrame(metadata), ...original.slice(3)])

      const ended = await resume(b, conversationId, idOf(original.at(-1)!))
      expect(ended.status).toBe(204)
      expect(await ended.text()).toBe("")
      expect((await resume(b, conversationId, `${crypto.randomUUID()}:1`)).status).toBe(204)
    })

    it("once another instance has a turn's [DONE], it has its end: 204 for that id, no running turn, the reply listed once", async () => {
      // The model's last frames come a while after its last text, as the end of a reply often does.
      fake.enqueue({ frames: HELLO, frameDelayMs: 40 })
      const { metadata, reader, conversationId } = await startTurn(claude.url, "Read me to the very end")
      expect(await reader.rest()).toBeUndefined()
      const lastId = idOf(reader.frames.at(-1)!)!
      expect(eventOf(reader.frames.at(-1)!)).toBe("[DONE]")
      await logged(metadata.turn_id, reader.frames.length - 1)

      const ended = await resume(b, conversationId, lastId)
      expect(ended.status).toBe(204)
      const shown = await show(b, conversationId)
      expect(shown.running_turn).toBeNull()
      expect(shown.messages.map(({ role, status }: Record<string, string>) => [role, status])).toEqual([
        ["user", "complete"],
        ["assistant", "complete"]
      ])
    })

    it("answers another user like a missing conversation (404, same body) and a malformed id with 400, on the other instance, while the turn runs", async () => {
      fake.enqueue(stallAfterHello())
      const arrived = fake.requestArrived(fake.requests.length + 1)
      const { reader, conversationId, metadata } = await startTurn(claude.url, "Hello, only mine")
      expect(await reader.nextEvent()).toEqual(hello)
      const upstream = await arrived
      await logged(metadata.turn_id, 1)

      const missingStream = await resume(b, crypto.randomUUID(), undefined, "bob")
      const missingStop = await stop(b, crypto.randomUUID(), "bob")
      const missing = await missingStream.text()
      expect(missingStream.status).toBe(404)
      expect(JSON.parse(missing).error.type).toBe("not_found")
      expect(await missingStop.text()).toBe(missing)
      for (const response of [
        await resume(b, conversationId, undefined, "bob"),
        await resume(b, conversationId, `${metadata.turn_id}:1`, "bob"),
        await stop(b, conversationId, "bob")
      ]) {
        expect(response.status).toBe(404)
        expect(await response.text()).toBe(missing)
      }
      for (const malformed of ["garbage", `${metadata.turn_id}:x`, `${metadata.turn_id}:-1`]) {
        const response = await resume(b, conversationId, malformed)
        expect(response.status).toBe(400)
        expect((await response.json()).error.type).toBe("invalid_request")
      }
      // Bob's attempts did not touch the turn.
      expect(upstream.framesWritten()).toBe(4)
      expect((await show(b, conversationId)).running_turn.turn_id).toBe(metadata.turn_id)

      expect((await stop(b, conversationId)).status).toBe(202)
      await upstream.connectionClosed
      expect(await reader.rest()).toBeUndefined()
    })
  })

  describe("stop", () => {
    it("a stop asked on one instance ends the turn another runs: its model request is aborted, readers on both get cancelled then [DONE], the reply is stored cancelled", async () => {
      fake.enqueue(stallAfterHello())
      const arrived = fake.requestArrived(fake.requests.length + 1)
      const onClaude = await startTurn(claude.url, "Stop me from anywhere")
      const { metadata, conversationId } = onClaude
      const turnId = metadata.turn_id
      expect(await onClaude.reader.nextEvent()).toEqual(hello)
      const upstream = await arrived
      await logged(turnId, 1)

      // A reader on the other instance, from the start: the replay, then live.
      const onB = frameReader(await resume(b, conversationId))
      expect(await onB.next()).toBe(resumedFrame(metadata))
      expect(await onB.nextEvent()).toEqual(hello)
      const running = await show(b, conversationId)
      expect(running.running_turn).toEqual({ turn_id: turnId, started_at: expect.any(String) })
      expect(running.messages.at(-1)).toMatchObject({
        role: "assistant",
        status: "streaming",
        content: "Hello"
      })

      const stopped = await stop(b, conversationId)
      expect(stopped.status).toBe(202)
      expect(await stopped.json()).toEqual({ turn_id: turnId })
      await upstream.connectionClosed
      for (const reader of [onClaude.reader, onB]) {
        expect(await reader.nextEvent()).toEqual(errorOf("cancelled"))
        expect(await reader.nextEvent()).toBe("[DONE]")
        expect(await reader.next()).toBeUndefined()
        expect(reader.frames.slice(-3).map(idOf)).toEqual(idsUpTo(turnId, 3))
      }
      expect(upstream.framesWritten()).toBe(4)
      expect(await replies(conversationId)).toEqual([{ content: "Hello", status: "cancelled" }])
      const ended = await show(b, conversationId)
      expect(ended.running_turn).toBeNull()
      expect(ended.messages.at(-1)).toMatchObject({
        role: "assistant",
        status: "cancelled",
        content: "Hello"
      })
      const again = await stop(b, conversationId)
      expect(again.status).toBe(204)
    })
  })

  describe("disconnect grace", () => {
    it("a client whose connection drops and who is back within the window gets the whole reply: the model never stopped", async () => {
      fake.enqueue(stallAfterHello())
      const arrived = fake.requestArrived(fake.requests.length + 1)
      const proxy = await CutProxy.make(claude.url)
      try {
        const first = await startTurn(proxy.url, "Keep going without me")
        expect(await first.reader.nextEvent()).toEqual(hello)
        const upstream = await arrived
        proxy.cut()
        expect(await first.reader.rest()).toBeDefined()

        const back = frameReader(
          await resume(claude, first.conversationId, idOf(first.reader.frames.at(-1)!))
        )
        expect(await back.next()).toBe(resumedFrame(first.metadata))
        upstream.send(HELLO.slice(4))
        expect(await back.rest()).toBeUndefined()
        expect(eventOf(back.frames.at(-1)!)).toBe("[DONE]")
        expect(back.frames.slice(1).map(idOf)).toEqual(idsUpTo(first.metadata.turn_id, 4).slice(1))
        const reply = contentOf(first.reader.frames) + contentOf(back.frames)
        expect(reply).toBe("Hello there, how can I help?")
        expect(upstream.framesWritten()).toBe(HELLO.length)
        expect(await replies(first.conversationId)).toEqual([{ content: reply, status: "complete" }])
      } finally {
        await proxy.close()
      }
    })

    it("with no reader back, the model request is aborted when the window ends, the reply is stored cancelled, and a late client learns it", async () => {
      fake.enqueue(stallAfterHello())
      const arrived = fake.requestArrived(fake.requests.length + 1)
      const proxy = await CutProxy.make(claude.url)
      try {
        const first = await startTurn(proxy.url, "Nobody comes back")
        expect(await first.reader.nextEvent()).toEqual(hello)
        const upstream = await arrived
        const stored = messageWrites.written(
          (row) => row.conversation_id === first.conversationId && row.role === "assistant"
        )
        const cutAt = performance.now()
        proxy.cut()
        await upstream.connectionClosed
        const waited = performance.now() - cutAt
        console.info(
          `grace ${GRACE_MS} ms: the model request was aborted ${waited.toFixed(0)} ms after the cut`
        )
        // The window starts when the server sees the connection close, after the cut.
        expect(waited).toBeGreaterThanOrEqual(GRACE_MS - 5)
        await stored
        expect(await replies(first.conversationId)).toEqual([{ content: "Hello", status: "cancelled" }])

        const late = frameReader(
          await resume(claude, first.conversationId, idOf(first.reader.frames.at(-1)!))
        )
        expect(await late.rest()).toBeUndefined()
        expect(late.frames.slice(1).map(eventOf)).toEqual([errorOf("cancelled"), "[DONE]"])
      } finally {
        await proxy.close()
      }
    })

    it("with a window of 0, the model request is aborted as soon as the connection drops", async () => {
      fake.enqueue(stallAfterHello())
      const arrived = fake.requestArrived(fake.requests.length + 1)
      const proxy = await CutProxy.make(claudeNoGrace.url)
      try {
        const first = await startTurn(proxy.url, "Stop when I go")
        expect(await first.reader.nextEvent()).toEqual(hello)
        const upstream = await arrived
        const cutAt = performance.now()
        proxy.cut()
        await upstream.connectionClosed
        const waited = performance.now() - cutAt
        console.info(`grace 0: the model request was aborted ${waited.toFixed(0)} ms after the cut`)
        // Well inside the window the other instance would have waited.
        expect(waited).toBeLessThan(GRACE_MS)
        await messageWrites.written(
          (row) => row.conversation_id === first.conversationId && row.role === "assistant"
        )
        expect(await replies(first.conversationId)).toEqual([{ content: "Hello", status: "cancelled" }])
      } finally {
        await proxy.close()
      }
    })
  })

  describe("crash", () => {
    let child: ChildProcessByStdio<null, Readable, Readable> | undefined

    afterEach(() => {
      if (child?.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    })

    it("when the instance running a turn is killed, a reader on another gets interrupted then [DONE] once the lease lapses, and the reply so far is stored interrupted, once", async () => {
      // The developer's own Anthropic settings must not reach the child.
      const inherited = Object.fromEntries(
        Object.entries(process.env).filter(([name]) => !name.startsWith("ANTHROPIC_"))
      )
      child = spawn(process.execPath, [join(import.meta.dirname, "..", "src", "bin.ts")], {
        env: {
          ...inherited,
          PORT: "0",
          DATABASE_URL: database.url,
          REDIS_URL: redisDatabase.url,
          ANTHROPIC_API_KEY: API_KEY,
          ANTHROPIC_BASE_URL: fake.url,
          CONVOKE_API_KEYS: apiKeys.map(({ key, userId }) => `${key}:${userId}`).join(","),
          CONVOKE_LOG_FORMAT: "off",
          CONVOKE_METRICS: "off",
          CONVOKE_WEB_DIR: "off",
          CONVOKE_CLEANUP_INTERVAL_MINUTES: "0",
          CONVOKE_RATE_LIMIT_REQUESTS: "0",
          CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "0",
          CONVOKE_RATE_LIMIT_CONCURRENT: "0"
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const output = watchOutput(child)
      const url = (await output.waitFor("stdout", /listening\s+(http:\/\/\S+)/))[1]!
      expect((await output.waitFor("stdout", /turns\s+(.*)/))[1]).toContain("shared by every instance")

      fake.enqueue(stallAfterHello())
      const arrived = fake.requestArrived(fake.requests.length + 1)
      const onChild = await startTurn(url, "Then the server went away")
      const { metadata, conversationId } = onChild
      expect(await onChild.reader.nextEvent()).toEqual(hello)
      await arrived
      await logged(metadata.turn_id, 1)
      const onB = frameReader(await resume(b, conversationId))
      expect(await onB.next()).toBe(resumedFrame(metadata))
      expect(await onB.nextEvent()).toEqual(hello)
      const stored = messageWrites.written(
        (row) => row.conversation_id === conversationId && row.role === "assistant"
      )

      const killedAt = performance.now()
      child.kill("SIGKILL")
      expect(await onB.nextEvent()).toEqual(errorOf("interrupted"))
      const waited = performance.now() - killedAt
      expect(await onB.nextEvent()).toBe("[DONE]")
      expect(await onB.next()).toBeUndefined()
      expect(onB.frames.slice(1).map(idOf)).toEqual(idsUpTo(metadata.turn_id, 3))
      console.info(
        `crash: the reader on the other instance was told ${waited.toFixed(0)} ms after the kill (lease ${LEASE_MS} ms)`
      )
      expect(waited).toBeLessThan(LEASE_MS + 5000)
      expect(await onChild.reader.rest()).toBeDefined()
      expect(await output.closed).toBeNull()

      await stored
      expect(await replies(conversationId)).toEqual([{ content: "Hello", status: "interrupted" }])
      const shown = await show(b, conversationId)
      expect(shown.running_turn).toBeNull()
      expect(
        shown.messages.map(({ role, status, content }: Record<string, string>) => [role, status, content])
      ).toEqual([
        ["user", "complete", "Then the server went away"],
        ["assistant", "interrupted", "Hello"]
      ])
    })
  })
})

describe.skipIf(!postgres)("turns on one instance with the in-memory log", () => {
  let database: TestDatabase
  let fake: FakeAnthropic.FakeAnthropic
  let server: RunningServer

  beforeAll(async () => {
    database = await makeTestDatabase()
    fake = await FakeAnthropic.start()
    server = await startServer({
      databaseUrl: database.url,
      apiKeys,
      cleanupIntervalMinutes: 0,
      webDir: undefined,
      anthropic: claudeAt(fake)
    })
  })

  afterAll(async () => {
    await server?.close()
    await fake?.close()
    await database?.drop()
  })

  it("a dropped stream resumes with the rest and follows it live; a stop ends it, aborts the model request and stores it cancelled", async () => {
    expect(server.summary.find(([label]) => label === "turns")?.[1]).toContain(
      "in memory (this instance only, 64 MiB at most)"
    )
    fake.enqueue(stallAfterHello())
    const arrived = fake.requestArrived(fake.requests.length + 1)
    const proxy = await CutProxy.make(server.url)
    try {
      const first = await startTurn(proxy.url, "Hello from memory")
      expect(await first.reader.nextEvent()).toEqual(hello)
      const upstream = await arrived
      proxy.cut()
      expect(await first.reader.rest()).toBeDefined()

      const back = frameReader(await resume(server, first.conversationId, idOf(first.reader.frames.at(-1)!)))
      expect(await back.next()).toBe(resumedFrame(first.metadata))
      upstream.send(HELLO.slice(4, 5), "stall")
      expect(await back.nextEvent()).toEqual({ type: "content", delta: { content: " there" } })

      const stopped = await stop(server, first.conversationId)
      expect(stopped.status).toBe(202)
      expect(await stopped.json()).toEqual({ turn_id: first.metadata.turn_id })
      await upstream.connectionClosed
      expect(await back.nextEvent()).toEqual(errorOf("cancelled"))
      expect(await back.nextEvent()).toBe("[DONE]")
      expect(await back.next()).toBeUndefined()
      expect(back.frames.slice(1).map(idOf)).toEqual(idsUpTo(first.metadata.turn_id, 4).slice(1))
      const shown = await show(server, first.conversationId)
      expect(shown.running_turn).toBeNull()
      expect(shown.messages.at(-1)).toMatchObject({
        role: "assistant",
        status: "cancelled",
        content: "Hello there"
      })
    } finally {
      await proxy.close()
    }
  })
})
