/**
 * The outbox on a real Redis (127.0.0.1:6379, or `REDIS_URL`), two outboxes
 * sharing one key prefix as two instances would: what one queues the other
 * writes, once each and in order; what an outbox left undrained when its
 * scope was dropped is found and written by one started later; and a writer
 * that stalls past its lease hands over without an entry being lost.
 */
import { randomUUID } from "node:crypto"
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, type Duration, Effect, Exit, Layer, Scope } from "effect"
import { Redis } from "effect/persistence"
import { afterAll } from "vitest"
import { ConversationOutbox, ConversationStore, OutboxRedis } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"
import { deleteKeys, isRedisReachable, REDIS_URL, requireService } from "../src/testing.ts"

const reachable = requireService(it, `Redis at ${new URL(REDIS_URL).host}`, await isRedisReachable(REDIS_URL))

const redisLayer = NodeRedis.layer({ url: REDIS_URL })
const prefixes: Array<string> = []
const freshPrefix = () => {
  const prefix = `convoke:test:outbox:${randomUUID()}:`
  prefixes.push(prefix)
  return prefix
}

afterAll(() =>
  Effect.runPromise(
    Effect.gen(function* () {
      for (const prefix of prefixes) yield* deleteKeys(prefix)
    }).pipe(Effect.provide(redisLayer), Effect.ignore)
  )
)

const at = new Date("2026-03-01T10:00:00.000Z")

const create = (id: string): ConversationOutbox.Entry => ({
  _tag: "Create",
  conversation: { id, userId: "alice", title: id, createdAt: at, updatedAt: at },
  messages: [{ id: `${id}-user`, role: "user", content: `hello ${id}`, status: "complete", createdAt: at }]
})

const append = (id: string): ConversationOutbox.Entry => ({
  _tag: "Append",
  userId: "alice",
  conversationId: id,
  messages: [
    {
      id: `${id}-assistant`,
      role: "assistant",
      content: `reply ${id}`,
      status: "complete",
      createdAt: new Date(at.getTime() + 1000)
    }
  ]
})

/** A store that logs every write reaching it, and signals once `expected` have. */
const loggingStore = (inner: ConversationStore.Service, expected: number) => {
  const writes: Array<string> = []
  const done = Deferred.makeUnsafe<void>()
  const logged = (write: string) =>
    Effect.sync(() => {
      writes.push(write)
      if (writes.length >= expected) Deferred.doneUnsafe(done, Exit.void)
    })
  const service: ConversationStore.Service = {
    ...inner,
    create: (input) => Effect.tap(inner.create(input), () => logged(`create ${input.id}`)),
    append: (input) =>
      Effect.tap(inner.append(input), () =>
        logged(`append ${input.conversationId} ${input.messages.map((message) => message.id).join(",")}`)
      )
  }
  return { service, writes, done: Deferred.await(done) }
}

/** One instance: an outbox on `store` and on Redis under `prefix`, in a scope that `close` ends undrained. */
const instance = (
  prefix: string,
  store: ConversationStore.Service,
  options: { readonly lease?: Duration.Input; readonly attemptTimeout?: Duration.Input } = {}
) =>
  Effect.gen(function* () {
    const scope = Scope.makeUnsafe()
    const context = yield* Layer.buildWithScope(
      ConversationOutbox.layer({
        attemptTimeout: options.attemptTimeout ?? "1 second",
        maxBackoff: "40 millis"
      }).pipe(
        Layer.provide(
          Layer.merge(
            Layer.succeed(ConversationStore.ConversationStore, store),
            OutboxRedis.layer({ prefix, lease: options.lease ?? "2 seconds", pollInterval: "20 millis" })
          )
        )
      ),
      scope
    )
    return {
      outbox: Context.get(context, ConversationOutbox.ConversationOutbox),
      close: Scope.close(scope, Exit.void)
    }
  })

const waitingInRedis = (prefix: string) =>
  Effect.flatMap(Redis.Redis, (redis) => redis.send<number>("ZCARD", `${prefix}queue`))

describe.skipIf(!reachable)("OutboxRedis", () => {
  it.live("entries one instance queues, another writes, once each and in order", () =>
    Effect.gen(function* () {
      const prefix = freshPrefix()
      const shared = TestStore.make()
      const logging = loggingStore(shared.service, 6)
      // The first instance cannot reach the store; the second can.
      const cutOff = TestStore.flaky(TestStore.withService(shared, logging.service))
      cutOff.mode = "down"
      const reaching = TestStore.flaky(TestStore.withService(shared, logging.service))
      const a = yield* instance(prefix, cutOff.service)
      const b = yield* instance(prefix, reaching.service)

      for (const entry of [
        create("c1"),
        create("c2"),
        append("c1"),
        create("c3"),
        append("c2"),
        append("c3")
      ]) {
        assert.isTrue(yield* a.outbox.enqueue(entry))
      }
      yield* logging.done
      // The queuing instance learns they are written, and lets go of them.
      yield* a.outbox.drained
      assert.deepStrictEqual(logging.writes, [
        "create c1",
        "create c2",
        "append c1 c1-assistant",
        "create c3",
        "append c2 c2-assistant",
        "append c3 c3-assistant"
      ])
      assert.strictEqual(a.outbox.stats().drained, 0)
      assert.isFalse(a.outbox.holds("c1"))
      assert.strictEqual(yield* waitingInRedis(prefix), 0)
      assert.deepStrictEqual(yield* TestStore.transcript(shared.service, "alice", "c3"), [
        ["user", "complete", "hello c3"],
        ["assistant", "complete", "reply c3"]
      ])
      yield* a.close
      yield* b.close
    }).pipe(Effect.provide(redisLayer))
  )

  it.live(
    "what an instance left undrained is found at the next start, shown to reads, and written in order",
    () =>
      Effect.gen(function* () {
        const prefix = freshPrefix()
        const store = TestStore.flaky()
        store.mode = "down"
        const crashed = yield* instance(prefix, store.service)
        for (const entry of [create("c1"), append("c1"), create("c2")]) {
          assert.isTrue(yield* crashed.outbox.enqueue(entry))
        }
        // Its scope dropped without draining: the entries stay in Redis.
        yield* crashed.close
        assert.strictEqual(yield* waitingInRedis(prefix), 3)

        const next = yield* instance(prefix, store.service)
        assert.deepStrictEqual(next.outbox.stats(), {
          pending: 3,
          drained: 0,
          dropped: 0,
          recovered: 3,
          skipped: 0
        })
        assert.deepStrictEqual(next.outbox.held("alice", "c2")?.createdAt, at)
        assert.deepStrictEqual(
          next.outbox.pendingMessages("alice", "c1").map((message) => message.id),
          ["c1-user", "c1-assistant"]
        )
        store.mode = "up"
        yield* next.outbox.drained
        assert.deepStrictEqual(store.created, ["c1", "c2"])
        assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", "c1"), [
          ["user", "complete", "hello c1"],
          ["assistant", "complete", "reply c1"]
        ])
        assert.strictEqual(yield* waitingInRedis(prefix), 0)
        yield* next.close
      }).pipe(Effect.provide(redisLayer))
  )

  it.live(
    "a writer that stalls past its lease hands over, and its late acknowledgement removes nothing",
    () =>
      Effect.gen(function* () {
        const prefix = freshPrefix()
        const shared = TestStore.make()
        // The first instance's first write stalls until the test lets it finish.
        const stalled = Deferred.makeUnsafe<void>()
        const resume = Deferred.makeUnsafe<void>()
        let stalls = 1
        const slow: ConversationStore.Service = {
          ...shared.service,
          create: (input) =>
            Effect.suspend(() =>
              stalls-- > 0
                ? Effect.andThen(Deferred.succeed(stalled, undefined), Deferred.await(resume))
                : Effect.void
            ).pipe(Effect.andThen(shared.service.create(input)))
        }
        const logging = loggingStore(shared.service, 2)
        const other = TestStore.flaky(TestStore.withService(shared, logging.service))
        const a = yield* instance(prefix, slow, { lease: "200 millis", attemptTimeout: "30 seconds" })
        const b = yield* instance(prefix, other.service, { lease: "200 millis" })

        yield* a.outbox.enqueue(create("c1"))
        yield* a.outbox.enqueue(append("c1"))
        yield* Deferred.await(stalled)
        // Once the stalled lease lapses, the other instance writes both entries.
        yield* logging.done
        assert.deepStrictEqual(logging.writes, ["create c1", "append c1 c1-assistant"])
        // Now it cannot reach the store: a new entry waits, oldest in Redis.
        other.mode = "down"
        yield* a.outbox.enqueue(create("c2"))
        // The stalled write finishes; its acknowledgement must not remove c2's entry.
        yield* Deferred.succeed(resume, undefined)
        yield* a.outbox.drained
        assert.deepStrictEqual(
          shared.created.filter((id) => id === "c2"),
          ["c2"]
        )
        assert.deepStrictEqual(yield* TestStore.transcript(shared.service, "alice", "c1"), [
          ["user", "complete", "hello c1"],
          ["assistant", "complete", "reply c1"]
        ])
        assert.strictEqual(yield* waitingInRedis(prefix), 0)
        yield* a.close
        yield* b.close
      }).pipe(Effect.provide(redisLayer))
  )
})
