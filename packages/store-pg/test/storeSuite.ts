/**
 * The behaviour every `ConversationStore` layer of this package must have, as
 * one suite run against each database.
 */
import { randomUUID } from "node:crypto"
import { ConversationStore } from "@convoke/core"
import { expect, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Option } from "effect"

type Store = ConversationStore.ConversationStore

const at = (second: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, second))

const user = (): string => `user-${randomUUID()}`

const message = (
  role: ConversationStore.Role,
  content: string,
  createdAt: Date,
  extra: Partial<ConversationStore.NewMessage> = {}
): ConversationStore.NewMessage => ({
  id: randomUUID(),
  role,
  content,
  status: "complete",
  createdAt,
  ...extra
})

const newConversation = Effect.fnUntraced(function* (userId: string, title = "A conversation", now = at(0)) {
  const store = yield* ConversationStore.ConversationStore
  return yield* store.create({ id: randomUUID(), userId, title, now })
})

/**
 * Registers the suite. `makeLayer` is called once, when the first test runs,
 * so it may read values set by `beforeAll` hooks.
 */
export const storeSuite = (
  name: string,
  expectedName: string,
  makeLayer: () => Layer.Layer<Store, unknown>
) =>
  layer(Layer.suspend(makeLayer), { excludeTestServices: true, timeout: "60 seconds" })(name, (it) => {
    it.effect("has the expected name", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        expect(store.name).toBe(expectedName)
      })
    )

    it.effect("creates a conversation and finds it for its owner", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const id = randomUUID()
        const userId = user()
        const created = yield* store.create({ id, userId, title: "Hello 👋🏽 wörld", now: at(1) })
        expect(created).toEqual({ id, userId, title: "Hello 👋🏽 wörld", createdAt: at(1), updatedAt: at(1) })
        expect(created.createdAt).toBeInstanceOf(Date)
        const found = yield* store.find({ userId, id })
        expect(found).toEqual(Option.some(created))
      })
    )

    it.effect("create is idempotent for the same id and user", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const id = randomUUID()
        const userId = user()
        const first = yield* store.create({ id, userId, title: "First", now: at(1) })
        const again = yield* store.create({ id, userId, title: "Second", now: at(2) })
        expect(again).toEqual(first)
        const concurrent = yield* Effect.forEach(
          Array.from({ length: 8 }, (_, index) => index),
          (index) => store.create({ id, userId, title: `Retry ${index}`, now: at(3) }),
          { concurrency: "unbounded" }
        )
        for (const conversation of concurrent) expect(conversation).toEqual(first)
      })
    )

    it.effect("concurrent creates of one new id by its user all return the same row", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const id = randomUUID()
        const userId = user()
        const results = yield* Effect.forEach(
          Array.from({ length: 16 }, (_, index) => index),
          (index) => store.create({ id, userId, title: `Title ${index}`, now: at(index) }),
          { concurrency: "unbounded" }
        )
        for (const conversation of results) expect(conversation).toEqual(results[0])
      })
    )

    it.effect("create fails for an id another user owns, without revealing or changing it", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const owner = user()
        const original = yield* newConversation(owner, "Owner's")
        const exit = yield* Effect.exit(
          store.create({ id: original.id, userId: user(), title: "Intruder's", now: at(9) })
        )
        expect(Exit.isFailure(exit)).toBe(true)
        expect(JSON.stringify(exit)).not.toContain("Owner's")
        expect(yield* store.find({ userId: owner, id: original.id })).toEqual(Option.some(original))
      })
    )

    it.effect("find is empty for unknown and malformed ids", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        yield* newConversation(userId)
        for (const id of [
          randomUUID(),
          "",
          "new",
          "not-a-uuid",
          "00000000-0000-0000-0000-00000000000g",
          "' OR 1=1 --"
        ]) {
          expect(yield* store.find({ userId, id })).toEqual(Option.none())
          expect(yield* store.history({ userId, conversationId: id })).toEqual([])
          expect(
            yield* store.append({ userId, conversationId: id, messages: [message("user", "Hi", at(1))] })
          ).toBe(false)
        }
      })
    )

    it.effect("appends messages and returns them oldest first", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId)
        expect(yield* store.history({ userId, conversationId: conversation.id })).toEqual([])

        // Identical timestamps: the order must come from the order of appending.
        const batches = [
          [message("user", "one", at(5)), message("assistant", "two", at(5))],
          [message("user", "three", at(5))],
          [message("assistant", "four", at(5), { status: "partial" }), message("user", "five", at(5))]
        ]
        for (const batch of batches) {
          expect(yield* store.append({ userId, conversationId: conversation.id, messages: batch })).toBe(true)
        }
        const history = yield* store.history({ userId, conversationId: conversation.id })
        expect(history.map((item) => item.content)).toEqual(["one", "two", "three", "four", "five"])
        expect(history).toEqual(batches.flat().map((item) => ({ ...item, conversationId: conversation.id })))
        expect(history[3]!.status).toBe("partial")
        expect(history[0]!.createdAt).toBeInstanceOf(Date)
        expect("metadata" in history[0]!).toBe(false)
      })
    )

    it.effect("keeps a long conversation in order", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId)
        const messages = Array.from({ length: 40 }, (_, index) =>
          message(index % 2 === 0 ? "user" : "assistant", `message ${index}`, at(59 - index))
        )
        for (let index = 0; index < messages.length; index += 4) {
          yield* store.append({
            userId,
            conversationId: conversation.id,
            messages: messages.slice(index, index + 4)
          })
        }
        const history = yield* store.history({ userId, conversationId: conversation.id })
        expect(history.map((item) => item.id)).toEqual(messages.map((item) => item.id))
      })
    )

    it.effect("append touches updatedAt, never backwards", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId, "Title", at(1))
        yield* store.append({
          userId,
          conversationId: conversation.id,
          messages: [message("user", "a", at(10)), message("assistant", "b", at(12))]
        })
        const touched = yield* store.find({ userId, id: conversation.id })
        expect(Option.map(touched, (item) => item.updatedAt)).toEqual(Option.some(at(12)))
        expect(Option.map(touched, (item) => item.createdAt)).toEqual(Option.some(at(1)))
        yield* store.append({
          userId,
          conversationId: conversation.id,
          messages: [message("user", "late", at(11))]
        })
        const after = yield* store.find({ userId, id: conversation.id })
        expect(Option.map(after, (item) => item.updatedAt)).toEqual(Option.some(at(12)))
      })
    )

    it.effect("append with no messages reports ownership and writes nothing", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId)
        expect(yield* store.append({ userId, conversationId: conversation.id, messages: [] })).toBe(true)
        expect(yield* store.append({ userId: user(), conversationId: conversation.id, messages: [] })).toBe(
          false
        )
        expect(yield* store.find({ userId, id: conversation.id })).toEqual(Option.some(conversation))
      })
    )

    it.effect("retrying an append does not duplicate messages", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId)
        const messages = [message("user", "question", at(1)), message("assistant", "answer", at(2))]
        expect(yield* store.append({ userId, conversationId: conversation.id, messages })).toBe(true)
        expect(yield* store.append({ userId, conversationId: conversation.id, messages })).toBe(true)
        expect(
          yield* store.append({
            userId,
            conversationId: conversation.id,
            messages: [messages[1]!, message("user", "next", at(3))]
          })
        ).toBe(true)
        const history = yield* store.history({ userId, conversationId: conversation.id })
        expect(history.map((item) => item.content)).toEqual(["question", "answer", "next"])
      })
    )

    it.effect("isolates users: another user cannot find, read or extend a conversation", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const alice = user()
        const bob = user()
        const conversation = yield* newConversation(alice, "Alice's secret", at(1))
        yield* store.append({
          userId: alice,
          conversationId: conversation.id,
          messages: [message("user", "secret", at(2))]
        })
        const before = yield* store.history({ userId: alice, conversationId: conversation.id })
        const touchedBefore = yield* store.find({ userId: alice, id: conversation.id })

        expect(yield* store.find({ userId: bob, id: conversation.id })).toEqual(Option.none())
        expect(yield* store.history({ userId: bob, conversationId: conversation.id })).toEqual([])
        expect(
          yield* store.append({
            userId: bob,
            conversationId: conversation.id,
            messages: [message("user", "intrusion", at(30)), message("assistant", "reply", at(31))]
          })
        ).toBe(false)

        expect(yield* store.history({ userId: alice, conversationId: conversation.id })).toEqual(before)
        expect(yield* store.find({ userId: alice, id: conversation.id })).toEqual(touchedBefore)
        // Same characters, different case or padding: a different user.
        expect(yield* store.find({ userId: alice.toUpperCase(), id: conversation.id })).toEqual(Option.none())
        expect(yield* store.find({ userId: `${alice} `, id: conversation.id })).toEqual(Option.none())
      })
    )

    it.effect("a message id used by another user's conversation is not written", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const alice = user()
        const bob = user()
        const aliceConversation = yield* newConversation(alice)
        const bobConversation = yield* newConversation(bob)
        const shared = message("user", "alice wrote this", at(1))
        yield* store.append({ userId: alice, conversationId: aliceConversation.id, messages: [shared] })
        expect(
          yield* store.append({
            userId: bob,
            conversationId: bobConversation.id,
            messages: [{ ...shared, content: "bob's copy" }]
          })
        ).toBe(true)
        expect(yield* store.history({ userId: bob, conversationId: bobConversation.id })).toEqual([])
        const aliceHistory = yield* store.history({ userId: alice, conversationId: aliceConversation.id })
        expect(aliceHistory.map((item) => item.content)).toEqual(["alice wrote this"])
      })
    )

    it.effect("round-trips metadata", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId)
        const metadata = {
          model: "claude-sonnet-4-5",
          stopReason: "end_turn",
          usage: { inputTokens: 12, outputTokens: 345, cacheRead: 0 },
          ratio: 0.125,
          flags: [true, false, null],
          nested: { deeper: { text: "ünïcødé ✓ 🎉", empty: "" } },
          nothing: null
        }
        yield* store.append({
          userId,
          conversationId: conversation.id,
          messages: [
            message("user", "Hi", at(1)),
            message("assistant", "Hello", at(2), { metadata }),
            message("assistant", "Oops", at(3), { status: "error", metadata: {} })
          ]
        })
        const history = yield* store.history({ userId, conversationId: conversation.id })
        expect(history[0]!.metadata).toBeUndefined()
        expect(history[1]!.metadata).toEqual(metadata)
        expect(history[2]).toMatchObject({ status: "error", metadata: {} })
      })
    )

    it.effect("stores text PostgreSQL cannot hold, replacing NUL and lone surrogates", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId, "nul\u0000title")
        expect(conversation.title).toBe("nul\uFFFDtitle")
        yield* store.append({
          userId,
          conversationId: conversation.id,
          messages: [
            message("user", "a\u0000b\ud800c", at(1), {
              metadata: { "k\u0000": "v\udc00", list: ["\u0000"] }
            })
          ]
        })
        const [stored] = yield* store.history({ userId, conversationId: conversation.id })
        expect(stored!.content).toBe("a\uFFFDb\uFFFDc")
        expect(stored!.metadata).toEqual({ "k\uFFFD": "v\uFFFD", list: ["\uFFFD"] })
      })
    )

    it.effect("a user id PostgreSQL cannot hold owns nothing", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(`${userId}\uFFFD`)
        const odd = `${userId}\u0000`
        expect(yield* store.find({ userId: odd, id: conversation.id })).toEqual(Option.none())
        expect(yield* store.history({ userId: odd, conversationId: conversation.id })).toEqual([])
        expect(
          yield* store.append({
            userId: odd,
            conversationId: conversation.id,
            messages: [message("user", "x", at(1))]
          })
        ).toBe(false)
        const exit = yield* Effect.exit(
          store.create({ id: randomUUID(), userId: odd, title: "x", now: at(1) })
        )
        expect(Exit.isFailure(exit)).toBe(true)
      })
    )

    it.effect("64 concurrent creates all succeed", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const ids = Array.from({ length: 64 }, () => randomUUID())
        const created = yield* Effect.forEach(
          ids,
          (id, index) => store.create({ id, userId, title: `Conversation ${index}`, now: at(index % 60) }),
          { concurrency: "unbounded" }
        )
        expect(created.map((conversation) => conversation.id)).toEqual(ids)
        const found = yield* Effect.forEach(ids, (id) => store.find({ userId, id }), {
          concurrency: "unbounded"
        })
        expect(found.every(Option.isSome)).toBe(true)
      })
    )

    it.effect("64 concurrent appends to one conversation are all kept", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId)
        const messages = Array.from({ length: 64 }, (_, index) =>
          message("user", `m${index}`, at(index % 60))
        )
        const results = yield* Effect.forEach(
          messages,
          (item) => store.append({ userId, conversationId: conversation.id, messages: [item] }),
          { concurrency: "unbounded" }
        )
        expect(results.every((owned) => owned)).toBe(true)
        const history = yield* store.history({ userId, conversationId: conversation.id })
        expect(new Set(history.map((item) => item.id))).toEqual(new Set(messages.map((item) => item.id)))
      })
    )
  })
