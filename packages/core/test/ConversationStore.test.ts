import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { ChatError, ConversationStore } from "../src/index.ts"

const ID = "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d"
const at = (seconds: number) => new Date(seconds * 1000)

const message = (id: string, role: ConversationStore.Role, content: string, createdAt = at(2)) => ({
  id,
  role,
  content,
  status: "complete" as const,
  createdAt
})

describe("ConversationStore.makeMemory", () => {
  it.effect("creates a conversation and finds it for its owner only", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      const created = yield* store.create({ id: ID, userId: "alice", title: "Hi", now: at(1) })
      assert.deepStrictEqual(created, {
        id: ID,
        userId: "alice",
        title: "Hi",
        createdAt: at(1),
        updatedAt: at(1)
      })
      assert.deepStrictEqual(yield* store.find({ userId: "alice", id: ID }), Option.some(created))
      assert.isTrue(Option.isNone(yield* store.find({ userId: "bob", id: ID })))
      assert.isTrue(
        Option.isNone(yield* store.find({ userId: "alice", id: "1b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d" }))
      )
    })
  )

  it.effect("creating the same id again for the same user succeeds and keeps the first", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      const first = yield* store.create({ id: ID, userId: "alice", title: "Hi", now: at(1) })
      const again = yield* store.create({ id: ID, userId: "alice", title: "Other", now: at(5) })
      assert.deepStrictEqual(again, first)
    })
  )

  it.effect("stores the first messages with the conversation; a retry adds only new ones", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      const hello = message("m1", "user", "hello", at(2))
      const created = yield* store.create({
        id: ID,
        userId: "alice",
        title: "Hi",
        now: at(1),
        messages: [hello]
      })
      assert.deepStrictEqual(created.updatedAt, at(2))
      const again = message("m2", "user", "again", at(3))
      yield* store.create({ id: ID, userId: "alice", title: "Other", now: at(3), messages: [hello, again] })
      const history = yield* store.history({ userId: "alice", conversationId: ID })
      assert.deepStrictEqual(
        history.map((stored) => stored.content),
        ["hello", "again"]
      )
      // Another user's create stores nothing in it.
      yield* Effect.flip(
        store.create({
          id: ID,
          userId: "bob",
          title: "Hi",
          now: at(4),
          messages: [message("m3", "user", "x")]
        })
      )
      assert.strictEqual((yield* store.history({ userId: "alice", conversationId: ID })).length, 2)
    })
  )

  it.effect("creating an id another user owns never returns that user's conversation", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      yield* store.create({ id: ID, userId: "alice", title: "Alice's secret", now: at(1) })
      const error = yield* store.create({ id: ID, userId: "bob", title: "Hi", now: at(2) }).pipe(Effect.flip)
      assert.instanceOf(error, ChatError.StoreUnavailable)
      assert.notInclude(JSON.stringify(error), "secret")
      // Alice's conversation is unchanged; bob still has nothing.
      const alices = yield* store.find({ userId: "alice", id: ID })
      assert.isTrue(Option.isSome(alices) && alices.value.title === "Alice's secret")
      assert.isTrue(Option.isNone(yield* store.find({ userId: "bob", id: ID })))
    })
  )

  it.effect("appends messages oldest first and touches updatedAt", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      yield* store.create({ id: ID, userId: "alice", title: "Hi", now: at(1) })
      assert.isTrue(
        yield* store.append({
          userId: "alice",
          conversationId: ID,
          messages: [message("m1", "user", "hello", at(2)), message("m2", "assistant", "hi there", at(3))]
        })
      )
      const history = yield* store.history({ userId: "alice", conversationId: ID })
      assert.deepStrictEqual(
        history.map(({ id, conversationId, role, content }) => [id, conversationId, role, content]),
        [
          ["m1", ID, "user", "hello"],
          ["m2", ID, "assistant", "hi there"]
        ]
      )
      const found = yield* store.find({ userId: "alice", id: ID })
      assert.isTrue(Option.isSome(found))
      assert.deepStrictEqual(Option.getOrThrow(found).updatedAt, at(3))
      assert.deepStrictEqual(Option.getOrThrow(found).createdAt, at(1))
    })
  )

  it.effect("appending a message id twice stores it once", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      yield* store.create({ id: ID, userId: "alice", title: "Hi", now: at(1) })
      yield* store.append({ userId: "alice", conversationId: ID, messages: [message("m1", "user", "hello")] })
      yield* store.append({ userId: "alice", conversationId: ID, messages: [message("m1", "user", "hello")] })
      assert.strictEqual((yield* store.history({ userId: "alice", conversationId: ID })).length, 1)
    })
  )

  it.effect("another user can neither read nor extend a conversation", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      yield* store.create({ id: ID, userId: "alice", title: "Hi", now: at(1) })
      yield* store.append({
        userId: "alice",
        conversationId: ID,
        messages: [message("m1", "user", "secret")]
      })
      assert.deepStrictEqual(yield* store.history({ userId: "bob", conversationId: ID }), [])
      assert.isFalse(
        yield* store.append({
          userId: "bob",
          conversationId: ID,
          messages: [message("m2", "user", "injected")]
        })
      )
      assert.deepStrictEqual(
        (yield* store.history({ userId: "alice", conversationId: ID })).map((stored) => stored.content),
        ["secret"]
      )
    })
  )

  it.effect("appending to an unknown conversation returns false", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      assert.isFalse(
        yield* store.append({ userId: "alice", conversationId: ID, messages: [message("m1", "user", "x")] })
      )
      assert.deepStrictEqual(yield* store.history({ userId: "alice", conversationId: ID }), [])
    })
  )

  it.effect("the history is a copy: changing it does not change the store", () =>
    Effect.gen(function* () {
      const store = ConversationStore.makeMemory()
      yield* store.create({ id: ID, userId: "alice", title: "Hi", now: at(1) })
      yield* store.append({ userId: "alice", conversationId: ID, messages: [message("m1", "user", "x")] })
      const history = (yield* store.history({ userId: "alice", conversationId: ID })) as Array<unknown>
      history.length = 0
      assert.strictEqual((yield* store.history({ userId: "alice", conversationId: ID })).length, 1)
    })
  )

  it.effect("each layerMemory build is a fresh, empty store", () =>
    Effect.gen(function* () {
      const createIn = Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        yield* store.create({ id: ID, userId: "alice", title: "Hi", now: at(1) })
      }).pipe(Effect.provide(ConversationStore.layerMemory))
      const findIn = Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        assert.strictEqual(store.name, "memory")
        return yield* store.find({ userId: "alice", id: ID })
      }).pipe(Effect.provide(ConversationStore.layerMemory))
      yield* createIn
      assert.isTrue(Option.isNone(yield* findIn))
    })
  )
})
