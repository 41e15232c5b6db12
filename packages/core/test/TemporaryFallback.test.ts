/**
 * The temporary-id fallback: streams start at once while the store is down or
 * slow, their conversation and messages wait in the outbox under the same id,
 * and everything lands once the store is back.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  AuditLog,
  ChatConfig,
  type ChatEvent,
  type ChatRequest,
  ChatService,
  ConversationOutbox,
  type ConversationStore
} from "../src/index.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const alice = { userId: "alice" }
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const settings = ChatConfig.make({
  creationBudget: Duration.millis(20),
  storeTimeout: Duration.millis(50)
})

/** The budget of `settings`, with a ceiling long enough that only silence ends a wait. */
const patient = ChatConfig.make({ creationBudget: Duration.millis(20), storeTimeout: Duration.seconds(2) })

/** The stream started on a durable id: the store holds its conversation. */
const assertDurable = (items: ReadonlyArray<ChatService.StreamItem>, store: TestStore.TestStore) => {
  assert.isUndefined(metadataOf(items).temporary)
  assert.include(store.created, metadataOf(items).conversation_id)
}

const withChat = <A, E>(
  store: TestStore.TestStore,
  body: (
    chat: ChatService.Service,
    outbox: ConversationOutbox.Service,
    audit: ReturnType<typeof AuditLog.makeMemory>
  ) => Effect.Effect<A, E>,
  options: {
    readonly capacity?: number
    readonly userCapacity?: number
    readonly model?: TestModel.TestModel
    readonly config?: ChatConfig.Settings
  } = {}
) => {
  const audit = AuditLog.makeMemory()
  const model = options.model ?? TestModel.make((request) => TestModel.reply(`#${request.messages.length}`))
  return Effect.gen(function* () {
    return yield* body(yield* ChatService.ChatService, yield* ConversationOutbox.ConversationOutbox, audit)
  }).pipe(
    Effect.provide(
      ChatService.layerWith({
        outbox: {
          capacity: options.capacity,
          userCapacity: options.userCapacity,
          attemptTimeout: Duration.millis(50),
          maxBackoff: Duration.millis(20)
        }
      }).pipe(
        Layer.provide(
          Layer.mergeAll(
            model.layer,
            store.layer,
            Layer.succeed(ChatConfig.ChatConfig, options.config ?? settings),
            Layer.succeed(AuditLog.AuditLog, audit)
          )
        )
      )
    )
  )
}

const request = (message: string, extra: Omit<ChatRequest.ChatRequest, "message"> = {}) => ({
  message,
  stream: true,
  ...extra
})

const collect = (chat: ChatService.Service, body: ChatRequest.ChatRequest) =>
  Effect.flatMap(chat.stream({ principal: alice, request: body }), Stream.runCollect)

const metadataOf = (items: ReadonlyArray<ChatService.StreamItem>) => items[0] as ChatEvent.MetadataEvent
const textOf = (items: ReadonlyArray<ChatService.StreamItem>) =>
  items
    .filter((item): item is ChatEvent.ContentEvent => item.type === "content")
    .map((item) => item.delta.content)
    .join("")

describe("temporary-id fallback", () => {
  for (const mode of ["down", "hang"] as const) {
    it.live(`starts the stream on a temporary id when the store is ${mode}, and stores it all later`, () => {
      const store = TestStore.flaky()
      store.mode = mode
      return withChat(store, (chat, outbox, audit) =>
        Effect.gen(function* () {
          const items = yield* collect(chat, request("hello"))
          const metadata = metadataOf(items)
          assert.strictEqual(metadata.type, "metadata")
          assert.isTrue(metadata.temporary)
          assert.match(metadata.conversation_id, UUID_V4)
          assert.strictEqual(
            JSON.stringify(metadata),
            `{"type":"metadata","conversation_id":"${metadata.conversation_id}","model":"unified-chat","timestamp":${metadata.timestamp},"turn_id":"${metadata.turn_id}","temporary":true}`
          )
          assert.strictEqual(textOf(items), "#1")
          assert.isAbove(outbox.stats().pending, 0)

          store.mode = "up"
          yield* outbox.drained
          assert.deepStrictEqual(outbox.stats(), {
            pending: 0,
            drained: 2,
            dropped: 0,
            recovered: 0,
            skipped: 0
          })
          const stored = yield* store.service.find({ userId: "alice", id: metadata.conversation_id })
          assert.strictEqual(stored._tag, "Some")
          assert.deepStrictEqual(
            yield* TestStore.transcript(store.service, "alice", metadata.conversation_id),
            [
              ["user", "complete", "hello"],
              ["assistant", "complete", "#1"]
            ]
          )
          // The id the client already holds now resumes like any other.
          const next = yield* collect(chat, request("again", { conversation_id: metadata.conversation_id }))
          assert.strictEqual(metadataOf(next).conversation_id, metadata.conversation_id)
          assert.isUndefined(metadataOf(next).temporary)
          assert.strictEqual(textOf(next), "#3")
          const causes = audit.entries.flatMap((entry) =>
            entry.action === "conversation.created" ? [entry.cause] : []
          )
          assert.deepStrictEqual(causes, ["temporary", "reconciled"])
        })
      )
    })
  }

  it.live("resumes a temporary conversation from the outbox while the store is still down", () => {
    const store = TestStore.flaky()
    store.mode = "down"
    return withChat(store, (chat, outbox) =>
      Effect.gen(function* () {
        const first = yield* collect(chat, request("one"))
        const id = metadataOf(first).conversation_id
        const second = yield* collect(chat, request("two", { conversation_id: id }))
        assert.strictEqual(metadataOf(second).conversation_id, id)
        assert.isTrue(metadataOf(second).temporary)
        // The model saw the first turn: one, #1, two.
        assert.strictEqual(textOf(second), "#3")
        store.mode = "up"
        yield* outbox.drained
        assert.deepStrictEqual(
          (yield* TestStore.transcript(store.service, "alice", id)).map(
            ([role, , content]) => `${role}:${content}`
          ),
          ["user:one", "assistant:#1", "user:two", "assistant:#3"]
        )
      })
    )
  })

  it.live("another user cannot resume someone's temporary conversation", () => {
    const store = TestStore.flaky()
    store.mode = "down"
    return withChat(store, (chat) =>
      Effect.gen(function* () {
        const id = metadataOf(yield* collect(chat, request("mine"))).conversation_id
        const theirs = yield* Effect.flatMap(
          chat.stream({ principal: { userId: "bob" }, request: request("peek", { conversation_id: id }) }),
          Stream.runCollect
        )
        assert.notStrictEqual(metadataOf(theirs).conversation_id, id)
        assert.strictEqual(textOf(theirs), "#1")
      })
    )
  })

  it.live("starts a new temporary conversation when asked to resume one the store cannot check", () => {
    const store = TestStore.flaky()
    return withChat(store, (chat) =>
      Effect.gen(function* () {
        const id = metadataOf(yield* collect(chat, request("stored"))).conversation_id
        store.mode = "down"
        const items = yield* collect(chat, request("while down", { conversation_id: id }))
        assert.notStrictEqual(metadataOf(items).conversation_id, id)
        assert.isTrue(metadataOf(items).temporary)
      })
    )
  })

  it.live("answers non-streaming requests with StoreUnavailable while the store is down", () => {
    const store = TestStore.flaky()
    store.mode = "hang"
    return withChat(store, (chat, outbox) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(chat.complete({ principal: alice, request: { message: "hi" } }))
        assert.strictEqual(error._tag, "StoreUnavailable")
        assert.strictEqual(outbox.stats().pending, 0)
      })
    )
  })

  it.live("refuses new streams with StoreUnavailable when the outbox is full", () => {
    const store = TestStore.flaky()
    store.mode = "down"
    return withChat(
      store,
      (chat) =>
        Effect.gen(function* () {
          yield* collect(chat, request("fills the outbox"))
          const error = yield* Effect.flip(
            chat.stream({ principal: alice, request: request("one too many") })
          )
          assert.strictEqual(error._tag, "StoreUnavailable")
        }),
      // The conversation with its user message, then the reply: two writes.
      { capacity: 2 }
    )
  })

  it.live(
    "one user cannot fill the outbox for everyone: another user's stream still starts on a temporary id",
    () => {
      const store = TestStore.flaky()
      store.mode = "down"
      return withChat(
        store,
        (chat, outbox) =>
          Effect.gen(function* () {
            // Alice streams until the outbox turns her away.
            let refused: string | undefined
            for (let turn = 0; turn < 10 && refused === undefined; turn++) {
              const attempt = yield* Effect.result(collect(chat, request(`alice ${turn}`)))
              if (attempt._tag === "Failure") refused = attempt.failure._tag
            }
            assert.strictEqual(refused, "StoreUnavailable")
            // Her share: one turn (its conversation with the user message, and the reply).
            assert.strictEqual(outbox.stats().pending, 2)
            const items = yield* Effect.flatMap(
              chat.stream({ principal: { userId: "bob" }, request: request("bob too") }),
              Stream.runCollect
            )
            assert.isTrue(metadataOf(items).temporary)
            assert.strictEqual(textOf(items), "#1")
            // Bob's writes were kept: two more.
            assert.strictEqual(outbox.stats().pending, 4)
          }),
        { capacity: 6, userCapacity: 2 }
      )
    }
  )

  it.effect("waits for a busy store that keeps answering others: no temporary id", () => {
    // The first creation queues (behind a busy pool, say) for five budgets,
    // while other turns' calls are answered all along: the store is slow, not
    // down, so the first stream waits its turn and starts on a durable id.
    const inner = TestStore.make()
    const release = Deferred.makeUnsafe<void>()
    let slowCreates = 1
    const busy: ConversationStore.Service = {
      ...inner.service,
      create: (input) =>
        slowCreates-- > 0
          ? Effect.andThen(Deferred.await(release), inner.service.create(input))
          : inner.service.create(input)
    }
    const store = TestStore.withService(inner, busy)
    return withChat(
      store,
      (chat) =>
        Effect.gen(function* () {
          const first = yield* Effect.forkChild(collect(chat, request("queued")), { startImmediately: true })
          for (let budget = 0; budget < 5; budget++) {
            const other = metadataOf(yield* collect(chat, request(`other ${budget}`)))
            assert.isUndefined(other.temporary)
            yield* TestClock.adjust("20 millis")
          }
          yield* Deferred.succeed(release, undefined)
          assertDurable(yield* Fiber.join(first), inner)
        }),
      { config: patient }
    )
  })

  it.effect("waits for a store whose writes are held up while it still answers: no temporary id", () => {
    // Every write waits (a lock, a disk that stalls on fsync) and nothing else
    // is asked of the store, but it answers its liveness check at once: the
    // database is there, and the stream waits for its conversation.
    const inner = TestStore.make()
    const release = Deferred.makeUnsafe<void>()
    let pings = 0
    const held: ConversationStore.Service = {
      ...inner.service,
      create: (input) => Effect.andThen(Deferred.await(release), inner.service.create(input)),
      alive: Effect.sync(() => {
        pings++
      })
    }
    const store = TestStore.withService(inner, held)
    return withChat(
      store,
      (chat) =>
        Effect.gen(function* () {
          const first = yield* Effect.forkChild(collect(chat, request("held up")), { startImmediately: true })
          for (let step = 0; step < 20; step++) yield* TestClock.adjust("10 millis")
          assert.isUndefined(first.pollUnsafe())
          assert.isAbove(pings, 10)
          yield* Deferred.succeed(release, undefined)
          assertDurable(yield* Fiber.join(first), inner)
        }),
      { config: patient }
    )
  })

  it.effect("gives up within one budget when the liveness check goes unanswered too", () => {
    const store = TestStore.flaky()
    const hanging: ConversationStore.Service = { ...store.service, alive: Effect.never }
    store.mode = "hang"
    return withChat(
      TestStore.withService(store, hanging),
      (chat) =>
        Effect.gen(function* () {
          const first = yield* Effect.forkChild(collect(chat, request("hello")), { startImmediately: true })
          yield* TestClock.adjust("20 millis")
          const items = yield* Fiber.join(first)
          assert.isTrue(metadataOf(items).temporary)
        }),
      { config: patient }
    )
  })

  it.effect("gives up on a store that answers nothing within one budget, however long the ceiling", () => {
    const store = TestStore.flaky()
    store.mode = "hang"
    return withChat(
      store,
      (chat) =>
        Effect.gen(function* () {
          const first = yield* Effect.forkChild(collect(chat, request("hello")), { startImmediately: true })
          yield* TestClock.adjust("20 millis")
          const items = yield* Fiber.join(first)
          assert.isTrue(metadataOf(items).temporary)
        }),
      { config: patient }
    )
  })

  it.effect(
    "gives a store that has been slow lately a few times its latency before taking it for down",
    () => {
      const store = TestStore.flaky()
      return withChat(
        store,
        (chat, outbox) =>
          Effect.gen(function* () {
            // The store has been answering in about 100 ms: a silence of 20 ms says nothing.
            for (let answer = 0; answer < 200; answer++) outbox.storeAnswered(100)
            assert.approximately(outbox.storeLatency(), 100, 1)
            store.mode = "hang"
            const first = yield* Effect.forkChild(collect(chat, request("hello")), { startImmediately: true })
            yield* TestClock.adjust("20 millis")
            assert.isUndefined(first.pollUnsafe())
            yield* TestClock.adjust("380 millis")
            const items = yield* Fiber.join(first)
            assert.isTrue(metadataOf(items).temporary)
          }),
        { config: patient }
      )
    }
  )

  it.live("a creation that commits after the budget is not duplicated", () => {
    // The insert is slow, not lost: it commits after the stream already
    // started on the same id as a temporary conversation, and after the
    // outbox stored that conversation again.
    const inner = TestStore.make()
    const commit = Deferred.makeUnsafe<void>()
    const committed = Deferred.makeUnsafe<void>()
    let slowCreates = 1
    const slow: ConversationStore.Service = {
      ...inner.service,
      create: (input) =>
        slowCreates-- > 0
          ? // The caller gives up at its budget; the insert goes on, detached, until `commit`.
            Effect.andThen(
              Effect.forkDetach(
                Deferred.await(commit).pipe(
                  Effect.andThen(inner.service.create(input)),
                  Effect.ensuring(Deferred.succeed(committed, undefined))
                )
              ),
              Effect.never
            )
          : inner.service.create(input)
    }
    const store = TestStore.withService(inner, slow)
    return withChat(store, (chat, outbox) =>
      Effect.gen(function* () {
        const metadata = metadataOf(yield* collect(chat, request("slow")))
        assert.isTrue(metadata.temporary)
        yield* outbox.drained
        yield* Deferred.succeed(commit, undefined)
        yield* Deferred.await(committed)
        assert.deepStrictEqual(inner.created, [metadata.conversation_id, metadata.conversation_id])
        const page = yield* inner.service.list({ userId: "alice", limit: 10 })
        assert.strictEqual(page.conversations.length, 1)
        assert.strictEqual(
          (yield* TestStore.transcript(inner.service, "alice", metadata.conversation_id)).length,
          2
        )
      })
    )
  })
})
