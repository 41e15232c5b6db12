/**
 * The Redis turn log against the Redis at 127.0.0.1:6379 (`REDIS_URL` to
 * change it). Several log instances share one key prefix, as instances of
 * a deployment do. Every test has a prefix of its own and deletes its keys.
 * Tests wait on what they can observe (delivered entries, Redis state),
 * never on a fixed sleep. The one exception is the short leases and retention
 * that must run out.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Logger, Option, Schedule, Scope } from "effect"
import { Redis } from "effect/persistence"
import fc from "fast-check"
import {
  ChatEvent,
  ChatHttp,
  ConversationStore,
  EchoLanguageModel,
  Identity,
  RedisTurnLog,
  TurnLog
} from "../src/index.ts"
import { deleteKeys, isRedisReachable, REDIS_URL, requireService, silentRedis } from "../src/testing.ts"

// Skipped on a machine without Redis; under CI its absence fails the run.
const reachable = requireService(it, `Redis at ${new URL(REDIS_URL).host}`, await isRedisReachable(REDIS_URL))

/** Runs a test with Redis, a key prefix of its own, and every key under it deleted afterwards. */
const withRedis = <A, E>(body: (prefix: string) => Effect.Effect<A, E, Redis.Redis | Scope.Scope>) =>
  Effect.gen(function* () {
    const prefix = `convoke:test:turns:${crypto.randomUUID()}:`
    const redis = yield* Redis.Redis
    // Added first, so it runs last: after the logs' fibers have stopped.
    yield* Effect.addFinalizer(() =>
      deleteKeys(prefix).pipe(Effect.provideService(Redis.Redis, redis), Effect.orDie)
    )
    return yield* body(prefix)
  }).pipe(Effect.scoped, Effect.provide(NodeRedis.layer({ url: REDIS_URL })))

/** `redis` with every command and script call counted: its round trips, less the one-off `SCRIPT LOAD`s. */
const counting = (redis: Redis.Redis["Service"]) => {
  let calls = 0
  const counted = Redis.Redis.of({
    ...redis,
    send: <A>(command: string, ...args: ReadonlyArray<string>) => {
      calls++
      return redis.send<A>(command, ...args)
    },
    eval: (script) => {
      const run = redis.eval(script)
      return (...params) => {
        calls++
        return run(...params)
      }
    }
  })
  return { redis: counted, calls: () => calls }
}

/**
 * A log instance, as one server of the deployment has, with a Redis
 * connection of its own (seen through `wrap`), both living in the current scope.
 */
const instance = (
  options: RedisTurnLog.Options,
  wrap: (redis: Redis.Redis["Service"]) => Redis.Redis["Service"] = (redis) => redis
) =>
  Effect.gen(function* () {
    const connection = yield* Layer.build(NodeRedis.layer({ url: REDIS_URL }))
    const redis = wrap(Context.get(connection, Redis.Redis))
    return yield* RedisTurnLog.make(options).pipe(Effect.provideService(Redis.Redis, redis))
  })

/** Redis server time in epoch millis, the clock that leases and presence are scored in. */
const serverTime = Effect.gen(function* () {
  const redis = yield* Redis.Redis
  const [seconds, micros] = yield* redis.send<[string, string]>("TIME")
  return Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000)
})

const turnInfo = (): TurnLog.TurnInfo => {
  const conversationId = crypto.randomUUID()
  return {
    turnId: crypto.randomUUID(),
    conversationId,
    userId: "alice",
    metadata: ChatEvent.metadata({ conversationId, model: "echo", timestampSeconds: 1_700_000_000 }),
    replyId: crypto.randomUUID(),
    model: "echo",
    startedAt: 1_700_000_000_000
  }
}

const word = (index: number) => ChatEvent.content(`w${index} `)

/** Follows a turn, keeping what is delivered; `delivered(seq)` resolves once that entry arrived. */
const reader = (log: TurnLog.Service, turnId: string, afterSeq: number) =>
  Effect.gen(function* () {
    const entries: Array<TurnLog.Entry> = []
    const waiting = new Map<number, Deferred.Deferred<void>>()
    const signal = (seq: number) => {
      let deferred = waiting.get(seq)
      if (deferred === undefined) {
        deferred = Deferred.makeUnsafe<void>()
        waiting.set(seq, deferred)
      }
      return deferred
    }
    const fiber = yield* Effect.forkChild(
      log.follow(turnId, afterSeq, (entry) =>
        Effect.sync(() => {
          entries.push(entry)
          Deferred.doneUnsafe(signal(entry.seq), Effect.void)
        })
      )
    )
    return { entries, fiber, delivered: (seq: number) => Deferred.await(signal(seq)) }
  })

/** Retries `check` (which fails until the state it waits for is there) every 10 ms, for at most 10 s. */
const eventually = <A, E, R>(check: Effect.Effect<A, E, R>) =>
  Effect.retry(check, { schedule: Schedule.spaced("10 millis"), times: 1_000 })

/** Resolves once `log.current` shows the turn logged in Redis with `content` (another instance reads Redis). */
const logged = (log: TurnLog.Service, turn: TurnLog.TurnInfo, content: string, running = true) =>
  eventually(
    Effect.flatMap(log.current(turn.conversationId), (snapshot) =>
      Option.isSome(snapshot) &&
      snapshot.value.turn.turnId === turn.turnId &&
      snapshot.value.content === content &&
      snapshot.value.running === running
        ? Effect.succeed(snapshot.value)
        : Effect.fail("not logged yet")
    )
  )

describe.skipIf(!reachable)("RedisTurnLog", () => {
  it.live(
    "a reader on another instance gets exactly the events after its last one, in order, through done",
    () =>
      withRedis((prefix) =>
        Effect.gen(function* () {
          const a = yield* instance({ prefix })
          const b = yield* instance({ prefix })
          const run = Effect.runPromiseWith(yield* Effect.context<Scope.Scope>())
          const cases = fc
            .integer({ min: 1, max: 30 })
            .chain((logged) =>
              fc.tuple(
                fc.constant(logged),
                fc.integer({ min: 0, max: logged }),
                fc.integer({ min: 0, max: 10 })
              )
            )
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(cases, ([before, afterSeq, live]) =>
                run(
                  Effect.gen(function* () {
                    const turn = turnInfo()
                    const writer = yield* a.begin(turn)
                    let text = ""
                    for (let index = 1; index <= before; index++) {
                      writer.append(word(index))
                      text += `w${index} `
                    }
                    yield* logged(b, turn, text)
                    const follower = yield* reader(b, turn.turnId, afterSeq)
                    // Once the replay has delivered what was logged, what follows arrives live.
                    if (afterSeq < before) yield* follower.delivered(before)
                    for (let index = before + 1; index <= before + live; index++) writer.append(word(index))
                    writer.append(TurnLog.done)
                    yield* writer.end
                    assert.strictEqual(yield* Fiber.join(follower.fiber), "done")
                    const last = before + live + 1
                    assert.deepStrictEqual(
                      follower.entries.map((entry) => entry.seq),
                      Array.from({ length: last - afterSeq }, (_, index) => afterSeq + 1 + index)
                    )
                    assert.deepStrictEqual(
                      follower.entries.map((entry) => entry.event),
                      follower.entries.map((entry) => (entry.seq === last ? TurnLog.done : word(entry.seq)))
                    )
                  })
                )
              ),
              { numRuns: 25 }
            )
          )
        })
      )
  )

  it.live("a reader blocked on a quiet turn gets each new event as it is logged", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const a = yield* instance({ prefix })
        const b = yield* instance({ prefix })
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(word(1))
        yield* logged(b, turn, "w1 ")
        const follower = yield* reader(b, turn.turnId, 1)
        for (let seq = 2; seq <= 4; seq++) {
          writer.append(word(seq))
          yield* follower.delivered(seq)
        }
        writer.append(TurnLog.done)
        yield* writer.end
        assert.strictEqual(yield* Fiber.join(follower.fiber), "done")
        assert.deepStrictEqual(
          follower.entries.map((entry) => entry.seq),
          [2, 3, 4, 5]
        )
      })
    )
  )

  it.live("another instance reads a turn as ended once its done is in Redis, before its end is written", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const a = yield* instance({ prefix })
        const b = yield* instance({ prefix })
        const redis = yield* Redis.Redis
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(word(1))
        yield* logged(b, turn, "w1 ")
        // The writer waits 10 ms after a round before it takes more: after this it idles until the next
        // append, which it then writes in a round of its own, before `end` has been called.
        yield* Effect.sleep("50 millis")
        // What another instance sees the moment done is in Redis: a blocking read, then its current turn.
        const seen = yield* Effect.forkChild(
          Effect.gen(function* () {
            const connection = yield* redis.reserve
            yield* connection.send(
              "XREAD",
              "BLOCK",
              "5000",
              "STREAMS",
              `${prefix}${turn.turnId}:events`,
              "1-0"
            )
            return yield* b.current(turn.conversationId)
          }).pipe(Effect.scoped)
        )
        // As a turn ends (TurnRunner): done, then end, with nothing between.
        yield* Effect.suspend(() => {
          writer.append(TurnLog.done)
          return writer.end
        })
        const snapshot = yield* Fiber.join(seen)
        assert.isTrue(Option.isSome(snapshot))
        assert.include(Option.getOrThrow(snapshot), { lastSeq: 2, running: false })
      })
    )
  )

  it.live("writes many appends in few round trips", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        let calls = () => 0
        const a = yield* instance({ prefix }, (redis) => {
          const counted = counting(redis)
          calls = counted.calls
          return counted.redis
        })
        const b = yield* instance({ prefix })
        const turn = turnInfo()
        const before = calls()
        const writer = yield* a.begin(turn)
        for (let index = 1; index <= 1_000; index++) writer.append(word(index))
        writer.append(TurnLog.done)
        yield* writer.end
        // 1,001 events, at most 1,000 per round trip: two, plus perhaps a heartbeat.
        assert.isAtMost(calls() - before, 4)
        const follower = yield* reader(b, turn.turnId, 0)
        assert.strictEqual(yield* Fiber.join(follower.fiber), "done")
        assert.lengthOf(follower.entries, 1_001)
      })
    )
  )

  it.live(
    "current shows another instance's turn running, then ended, then none after the retention window",
    () =>
      withRedis((prefix) =>
        Effect.gen(function* () {
          const a = yield* instance({ prefix, retention: "300 millis" })
          const b = yield* instance({ prefix, retention: "300 millis" })
          const turn = turnInfo()
          const writer = yield* a.begin(turn)
          writer.append(ChatEvent.content("Hello"))
          // The instance that runs the turn knows it at once, before Redis does.
          const here = yield* a.current(turn.conversationId)
          assert.isTrue(Option.isSome(here) && here.value.content === "Hello" && here.value.running)
          const running = yield* logged(b, turn, "Hello")
          assert.deepStrictEqual(running.turn, turn)
          assert.strictEqual(running.firstSeq, 1)
          writer.append(ChatEvent.content(" world"))
          writer.append(TurnLog.done)
          yield* writer.end
          // `end` waited for Redis: the ended turn shows at once.
          const ended = yield* b.current(turn.conversationId)
          assert.isTrue(Option.isSome(ended))
          assert.deepStrictEqual(Option.getOrThrow(ended), {
            turn,
            running: false,
            firstSeq: 1,
            lastSeq: 3,
            content: "Hello world"
          })
          // A reader that saw everything, `done` included, has nothing more to wait for.
          assert.strictEqual(yield* b.follow(turn.turnId, 3, () => Effect.die("nothing to deliver")), "gone")
          yield* eventually(
            Effect.flatMap(b.current(turn.conversationId), (snapshot) =>
              Option.isNone(snapshot) ? Effect.void : Effect.fail("still kept")
            )
          )
          assert.strictEqual(yield* b.follow(turn.turnId, 0, () => Effect.void), "gone")
        })
      )
  )

  it.live("a stop asked for on another instance reaches the turn's writer by pub/sub", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        // The heartbeat, which also looks for stops, runs every third of the
        // lease. With a two-minute lease it does not run during the test, so
        // the stop can only arrive as a message.
        const a = yield* instance({ prefix, lease: "2 minutes" })
        const b = yield* instance({ prefix, lease: "2 minutes" })
        const redis = yield* Redis.Redis
        yield* eventually(
          Effect.flatMap(redis.send<[string, number]>("PUBSUB", "NUMSUB", `${prefix}stop`), ([, count]) =>
            count === 2 ? Effect.void : Effect.fail("not subscribed yet")
          )
        )
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(ChatEvent.content("Hello"))
        yield* logged(b, turn, "Hello")
        assert.isTrue(yield* b.requestStop(turn.turnId))
        yield* stopHeard(writer)
        writer.append(TurnLog.done)
        yield* writer.end
        assert.isFalse(yield* b.requestStop(turn.turnId))
        assert.isFalse(yield* b.requestStop(crypto.randomUUID()))
      })
    )
  )

  it.live("a stop whose message was missed is found by the lease renewal", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const a = yield* instance({ prefix, lease: "300 millis" })
        const b = yield* instance({ prefix, lease: "300 millis" })
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(ChatEvent.content("Hello"))
        yield* logged(b, turn, "Hello")
        // The stop key alone, as if the message had been published while A was not subscribed.
        const redis = yield* Redis.Redis
        yield* redis.send("SET", `${prefix}${turn.turnId}:stop`, "1", "PX", "60000")
        yield* stopHeard(writer)
      })
    )
  )

  it.live("counts the readers on every instance, and forgets those that left", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const a = yield* instance({ prefix })
        const b = yield* instance({ prefix })
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(ChatEvent.content("Hello"))
        yield* logged(b, turn, "Hello")
        assert.strictEqual(yield* writer.readers, 0)
        const remote = yield* reader(b, turn.turnId, 0)
        yield* remote.delivered(1)
        const local = yield* reader(a, turn.turnId, 0)
        yield* local.delivered(1)
        assert.strictEqual(yield* writer.readers, 2)
        yield* Fiber.interrupt(remote.fiber)
        assert.strictEqual(yield* writer.readers, 1)
        yield* Fiber.interrupt(local.fiber)
        assert.strictEqual(yield* writer.readers, 0)
        // A reader whose instance died without saying so counts until its presence expires.
        const redis = yield* Redis.Redis
        const now = yield* serverTime
        yield* redis.send("ZADD", `${prefix}${turn.turnId}:readers`, String(now + 300), "crashed-reader")
        assert.strictEqual(yield* writer.readers, 1)
        yield* eventually(
          Effect.flatMap(writer.readers, (count) =>
            count === 0 ? Effect.void : Effect.fail("still present")
          )
        )
      })
    )
  )

  it.live("a crashed instance's turn is claimed by exactly one instance, and its readers are ended", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const options: RedisTurnLog.Options = { prefix, lease: "300 millis" }
        // A's own scope, closed by the test, and by the test's scope if an assertion fails first.
        const crashed = yield* Scope.fork(yield* Effect.scope)
        const a = yield* instance(options).pipe(Scope.provide(crashed))
        const b = yield* instance(options)
        const c = yield* instance(options)
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(ChatEvent.content("Hello"))
        writer.append(ChatEvent.content(" world"))
        yield* logged(b, turn, "Hello world")
        const follower = yield* reader(b, turn.turnId, 0)
        yield* follower.delivered(2)
        // The instance goes away without ending its turn: nothing renews the lease any more.
        yield* Scope.close(crashed, Exit.void)
        assert.isTrue(Option.isSome(yield* b.current(turn.conversationId)))

        const claims: Array<{ readonly by: string; readonly lapsed: TurnLog.Lapsed }> = []
        const claimUntilClaimed = (by: string, log: TurnLog.Service) =>
          Effect.gen(function* () {
            while (claims.length === 0) {
              for (const lapsed of yield* log.claimLapsed) claims.push({ by, lapsed })
              if (claims.length === 0) yield* Effect.sleep("20 millis")
            }
          })
        yield* Effect.all([claimUntilClaimed("b", b), claimUntilClaimed("c", c)], {
          concurrency: "unbounded"
        })
        assert.lengthOf(claims, 1)
        assert.deepStrictEqual(claims[0]!.lapsed, { turn, content: "Hello world" })
        assert.deepStrictEqual(yield* b.claimLapsed, [])
        assert.deepStrictEqual(yield* c.claimLapsed, [])

        assert.strictEqual(yield* Fiber.join(follower.fiber), "done")
        assert.deepStrictEqual(
          follower.entries.map((entry) => entry.event.type),
          ["content", "content", "error", "done"]
        )
        const error = follower.entries[2]!.event
        assert.strictEqual(error.type === "error" && error.error.type, "interrupted")
        const ended = yield* b.current(turn.conversationId)
        assert.isTrue(Option.isSome(ended) && !ended.value.running)
      })
    )
  )

  it.live("a lapsed turn that already logged done is ended without an interrupted error", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const options: RedisTurnLog.Options = { prefix, lease: "300 millis" }
        // A's own scope, closed by the test, and by the test's scope if an assertion fails first.
        const crashed = yield* Scope.fork(yield* Effect.scope)
        const a = yield* instance(options).pipe(Scope.provide(crashed))
        const b = yield* instance(options)
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(ChatEvent.content("Hello"))
        writer.append(TurnLog.done)
        // Logged through done, but the instance went away before `end`: it reads as ended already.
        yield* logged(b, turn, "Hello", false)
        assert.strictEqual(yield* b.follow(turn.turnId, 0, () => Effect.void), "done")
        yield* Scope.close(crashed, Exit.void)
        const claimed = yield* eventually(
          Effect.flatMap(b.claimLapsed, (lapsed) =>
            lapsed.length > 0 ? Effect.succeed(lapsed) : Effect.fail("none")
          )
        )
        assert.deepStrictEqual(claimed, [{ turn, content: "Hello" }])
        const types: Array<string> = []
        assert.strictEqual(
          yield* b.follow(turn.turnId, 0, (entry) => Effect.sync(() => types.push(entry.event.type))),
          "done"
        )
        assert.deepStrictEqual(types, ["content", "done"])
        const ended = yield* b.current(turn.conversationId)
        assert.isTrue(Option.isSome(ended) && !ended.value.running)
      })
    )
  )

  it.live("keeps a turn in the documented keys, expiring after the retention window once ended", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const retention = 60_000
        const lease = 3_000
        const a = yield* instance({ prefix, retention: `${retention} millis`, lease: `${lease} millis` })
        const b = yield* instance({ prefix })
        const redis = yield* Redis.Redis
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(ChatEvent.content("Hello"))
        yield* logged(b, turn, "Hello")
        const events = `${prefix}${turn.turnId}:events`
        const info = `${prefix}${turn.turnId}:info`
        const conversation = `${prefix}conversation:${turn.conversationId}`
        assert.strictEqual(yield* redis.send("TYPE", events), "stream")
        assert.deepStrictEqual(yield* redis.send("XRANGE", events, "-", "+"), [
          ["1-0", ["event", JSON.stringify(ChatEvent.content("Hello"))]]
        ])
        assert.strictEqual(yield* redis.send("HGET", info, "state"), "running")
        assert.deepStrictEqual(JSON.parse(yield* redis.send<string>("HGET", info, "turn")), turn)
        assert.strictEqual(yield* redis.send("GET", conversation), turn.turnId)
        const leaseExpiry = Number(yield* redis.send<string>("ZSCORE", `${prefix}leases`, turn.turnId))
        assert.isAbove(leaseExpiry, yield* serverTime)
        // While the turn runs, its keys outlive the lease, so a turn nobody claims still goes away.
        for (const key of [events, info, conversation]) {
          const ttl = yield* redis.send<number>("PTTL", key)
          assert.isTrue(ttl > lease && ttl <= retention + lease, `${key}: ${ttl}`)
        }
        writer.append(TurnLog.done)
        yield* writer.end
        assert.strictEqual(yield* redis.send("HGET", info, "state"), "ended")
        assert.isNull(yield* redis.send("ZSCORE", `${prefix}leases`, turn.turnId))
        for (const key of [events, info, conversation]) {
          const ttl = yield* redis.send<number>("PTTL", key)
          assert.isTrue(ttl > 0 && ttl <= retention, `${key}: ${ttl}`)
        }
      })
    )
  )

  it.live("a running turn whose keys expired meanwhile is logged again from its next events", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const a = yield* instance({ prefix })
        const b = yield* instance({ prefix })
        const redis = yield* Redis.Redis
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        writer.append(ChatEvent.content("Hello"))
        yield* logged(b, turn, "Hello")
        // As if Redis had been out of reach for longer than the keys live.
        const info = `${prefix}${turn.turnId}:info`
        yield* redis.send(
          "DEL",
          info,
          `${prefix}${turn.turnId}:events`,
          `${prefix}conversation:${turn.conversationId}`
        )
        writer.append(ChatEvent.content(" world"))
        yield* eventually(
          Effect.flatMap(redis.send<number>("EXISTS", info), (exists) =>
            exists === 1 ? Effect.void : Effect.fail("not yet")
          )
        )
        writer.append(ChatEvent.content("!"))
        writer.append(TurnLog.done)
        yield* writer.end
        const snapshot = Option.getOrThrow(yield* b.current(turn.conversationId))
        assert.deepStrictEqual(snapshot, { turn, running: false, firstSeq: 3, lastSeq: 4, content: "!" })
        assert.strictEqual(yield* b.follow(turn.turnId, 0, () => Effect.void), "gone")
        const delivered: Array<number> = []
        const keep = (entry: TurnLog.Entry) => Effect.sync(() => delivered.push(entry.seq))
        assert.strictEqual(yield* b.follow(turn.turnId, 2, keep), "done")
        assert.deepStrictEqual(delivered, [3, 4])
      })
    )
  )

  it.live("a reader whose events were trimmed is told the turn is gone", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const a = yield* instance({ prefix, maxEventsPerTurn: 5 })
        const b = yield* instance({ prefix, maxEventsPerTurn: 5 })
        const turn = turnInfo()
        const writer = yield* a.begin(turn)
        for (let index = 1; index <= 11; index++) writer.append(word(index))
        writer.append(TurnLog.done)
        yield* writer.end
        const snapshot = Option.getOrThrow(yield* b.current(turn.conversationId))
        assert.strictEqual(snapshot.firstSeq, 8)
        assert.strictEqual(snapshot.content, "w8 w9 w10 w11 ")
        const delivered: Array<number> = []
        const keep = (entry: TurnLog.Entry) => Effect.sync(() => delivered.push(entry.seq))
        assert.strictEqual(yield* b.follow(turn.turnId, 0, keep), "gone")
        assert.deepStrictEqual(delivered, [])
        assert.strictEqual(yield* b.follow(turn.turnId, 7, keep), "done")
        assert.deepStrictEqual(delivered, [8, 9, 10, 11, 12])
      })
    )
  )

  // AWS Lambda freezes the process once an invocation returns, and its handlers return once the
  // app is settled: a turn whose end were still on its way to Redis would read as running, then lapse.
  it.live("an app is settled only once its turns' ends are in Redis", () =>
    withRedis((prefix) =>
      Effect.gen(function* () {
        const redis = yield* Redis.Redis
        const app = yield* Effect.acquireRelease(
          Effect.promise(() =>
            ChatHttp.makeApp(
              Layer.mergeAll(
                ConversationStore.layerMemory,
                EchoLanguageModel.layer({ delay: 0 }),
                Identity.layerAnonymous()
              ),
              {
                turnLog: RedisTurnLog.layer({ prefix }).pipe(
                  Layer.provide(NodeRedis.layer({ url: REDIS_URL })),
                  Layer.orDie
                )
              }
            )
          ),
          (app) => Effect.promise(() => app.dispose())
        )
        const text = yield* Effect.promise(async () => {
          const response = await app.handler(
            new Request(`http://127.0.0.1${ChatHttp.CHAT_PATH}`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ message: "hello there world", stream: true })
            })
          )
          return response.text()
        })
        const turnId = /"turn_id":"([^"]+)"/.exec(text)![1]!
        yield* Effect.promise(() => app.settled())
        assert.strictEqual(
          yield* redis.send<string | null>("HGET", `${prefix}${turnId}:info`, "state"),
          "ended"
        )
      })
    )
  )
})

/** Resolves once the writer hears a stop. */
const stopHeard = (writer: TurnLog.Writer) =>
  Effect.callback<void>((resume) => {
    writer.onStop(() => resume(Effect.void))
  })

describe("RedisTurnLog without an answering Redis", () => {
  // A Redis that accepts commands and never replies: a partitioned or overloaded server.
  const silent = silentRedis

  it.live("runs turns from memory: begin, append, local readers, current and end do not wait on it", () => {
    const warnings: Array<string> = []
    const recorder = Logger.make(({ message, logLevel }) => {
      if (logLevel === "Warn") warnings.push(String(Array.isArray(message) ? message[0] : message))
    })
    return Effect.gen(function* () {
      const log = yield* RedisTurnLog.make({ lease: "50 millis" })
      const turn = turnInfo()
      const writer = yield* log.begin(turn)
      const follower = yield* reader(log, turn.turnId, 0)
      writer.append(ChatEvent.content("Hello"))
      writer.append(TurnLog.done)
      yield* writer.end
      assert.strictEqual(yield* Fiber.join(follower.fiber), "done")
      assert.lengthOf(follower.entries, 2)
      const current = yield* log.current(turn.conversationId)
      assert.isTrue(Option.isSome(current) && current.value.content === "Hello")
      assert.deepStrictEqual(yield* log.claimLapsed, [])
      assert.isFalse(yield* log.requestStop(crypto.randomUUID()))
      assert.include(
        warnings,
        `Turn log: turn ${turn.turnId} ended before Redis had all of it; still writing`
      )
    }).pipe(Effect.provide(Layer.merge(silent, Logger.layer([recorder]))))
  })
})
