/**
 * The outbox over its persistences: on a journal, writes queued while the
 * store is down outlive the outbox that queued them — a new one replays
 * them, shows them to reads while they wait, and writes them in order — and
 * a write that cannot be persisted is refused rather than promised.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import { afterAll } from "vitest"
import { ConversationOutbox, ConversationStore, OutboxPersistence } from "../src/index.ts"
import * as OutboxJournal from "../src/OutboxJournal.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const directories: Array<string> = []
afterAll(() => Promise.all(directories.map((directory) => rm(directory, { recursive: true, force: true }))))

const at = new Date("2026-03-01T10:00:00.000Z")

const conversation = (id: string): ConversationStore.Conversation => ({
  id,
  userId: "alice",
  title: `about ${id}`,
  createdAt: at,
  updatedAt: at
})

const message = (
  id: string,
  role: ConversationStore.Role,
  content: string
): ConversationStore.NewMessage => ({
  id,
  role,
  content,
  status: "complete",
  createdAt: new Date(at.getTime() + (role === "user" ? 0 : 1000))
})

/** An outbox on `persistence` and `store`, in a scope of its own that `close` ends (undrained). */
const start = <E>(store: ConversationStore.Service, persistence: Layer.Layer<never, E>) =>
  Effect.gen(function* () {
    const scope = Scope.makeUnsafe()
    const context = yield* Layer.buildWithScope(
      ConversationOutbox.layer({ attemptTimeout: "1 second", maxBackoff: "20 millis" }).pipe(
        Layer.provide(Layer.merge(Layer.succeed(ConversationStore.ConversationStore, store), persistence))
      ),
      scope
    )
    return {
      outbox: Context.get(context, ConversationOutbox.ConversationOutbox),
      close: Scope.close(scope, Exit.void)
    }
  })

describe("ConversationOutbox on a journal", () => {
  it.live("a new outbox replays what an earlier one queued, shows it to reads, and writes it in order", () =>
    Effect.gen(function* () {
      const directory = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "convoke-outbox-")))
      directories.push(directory)
      const journal = OutboxJournal.layer({ directory })
      const store = TestStore.flaky()
      store.mode = "down"

      const first = yield* start(store.service, journal)
      const queued = [
        yield* first.outbox.enqueue({
          _tag: "Create",
          conversation: conversation("c1"),
          messages: [message("m1", "user", "hello")]
        }),
        yield* first.outbox.enqueue({
          _tag: "Append",
          userId: "alice",
          conversationId: "c1",
          messages: [message("m2", "assistant", "hi there")]
        }),
        yield* first.outbox.enqueue({ _tag: "Create", conversation: conversation("c2") })
      ]
      assert.deepStrictEqual(queued, [true, true, true])
      // Stopped with everything still waiting, as a crash would leave it.
      yield* first.close

      const second = yield* start(store.service, journal)
      assert.deepStrictEqual(second.outbox.stats(), {
        pending: 3,
        drained: 0,
        dropped: 0,
        recovered: 3,
        skipped: 0
      })
      assert.deepStrictEqual(second.outbox.held("alice", "c1"), conversation("c1"))
      assert.isUndefined(second.outbox.held("bob", "c1"))
      assert.isTrue(second.outbox.holds("c2"))
      assert.deepStrictEqual(second.outbox.pendingMessages("alice", "c1"), [
        { ...message("m1", "user", "hello"), conversationId: "c1" },
        { ...message("m2", "assistant", "hi there"), conversationId: "c1" }
      ])

      store.mode = "up"
      yield* second.outbox.drained
      assert.strictEqual(second.outbox.stats().drained, 3)
      assert.deepStrictEqual(store.created, ["c1", "c2"])
      assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", "c1"), [
        ["user", "complete", "hello"],
        ["assistant", "complete", "hi there"]
      ])
      const stored = yield* store.service.find({ userId: "alice", id: "c1" })
      assert.deepStrictEqual(
        Option.map(stored, (found) => found.createdAt),
        Option.some(at)
      )
      yield* second.close

      // Written entries are not replayed again.
      const third = yield* start(store.service, journal)
      assert.strictEqual(third.outbox.stats().recovered, 0)
      yield* third.close
    })
  )

  it.live("refuses an entry it cannot persist, as when it is full", () =>
    Effect.gen(function* () {
      const store = TestStore.flaky()
      store.mode = "down"
      // A disk that fails every write, as a full one does.
      const failing = Layer.succeed(OutboxPersistence.OutboxPersistence, {
        ...OutboxPersistence.makeMemory(),
        name: "journal",
        durable: true,
        append: () => Effect.fail(new OutboxPersistence.OutboxPersistenceError({ message: "ENOSPC" }))
      })
      const { outbox, close } = yield* start(store.service, failing)
      assert.isFalse(yield* outbox.enqueue({ _tag: "Create", conversation: conversation("c1") }))
      assert.isFalse(outbox.holds("c1"))
      assert.deepStrictEqual(outbox.stats(), { pending: 0, drained: 0, dropped: 1, recovered: 0, skipped: 0 })
      yield* close
    })
  )
})

describe("ConversationOutbox: whether the store is down", () => {
  /** Queues a conversation while `store` hangs, and gives the first write its whole attempt. */
  const attempt = (answersMeanwhile: number) =>
    Effect.gen(function* () {
      const store = TestStore.flaky()
      store.mode = "hang"
      const { outbox, close } = yield* start(store.service, OutboxPersistence.layerMemory)
      yield* outbox.enqueue({ _tag: "Create", conversation: conversation("c-1"), messages: [] })
      // Halfway through the write's attempt, other calls are answered (or not).
      yield* TestClock.adjust("500 millis")
      for (let answer = 0; answer < answersMeanwhile; answer++) outbox.storeAnswered(5)
      yield* TestClock.adjust("500 millis")
      const available = outbox.storeAvailable()
      yield* close
      return available
    })

  it.effect("a write that times out while the store answers other calls leaves it available", () =>
    Effect.gen(function* () {
      assert.isTrue(yield* attempt(3))
    })
  )

  it.effect("a write that times out while the store answers nothing marks it down", () =>
    Effect.gen(function* () {
      assert.isFalse(yield* attempt(0))
    })
  )
})
