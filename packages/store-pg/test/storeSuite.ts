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

    it.effect("create stores the first messages with the conversation, in order", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const id = randomUUID()
        const userId = user()
        const question = message("user", "Hello\u0000?", at(2))
        const note = message("assistant", "Hi", at(2), { metadata: { model: "echo" } })
        const created = yield* store.create({
          id,
          userId,
          title: "Hello",
          now: at(1),
          messages: [question, note]
        })
        // Touched by its messages, as `append` would.
        expect(created).toEqual({ id, userId, title: "Hello", createdAt: at(1), updatedAt: at(2) })
        expect(yield* store.find({ userId, id })).toEqual(Option.some(created))
        const history = yield* store.history({ userId, conversationId: id })
        expect(history.map((stored) => [stored.id, stored.role, stored.content, stored.metadata])).toEqual([
          [question.id, "user", "Hello\uFFFD?", undefined],
          [note.id, "assistant", "Hi", { model: "echo" }]
        ])
      })
    )

    it.effect("a retried create stores each message once and adds the new ones", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const id = randomUUID()
        const userId = user()
        const first = message("user", "first", at(2))
        const created = yield* store.create({ id, userId, title: "Retried", now: at(1), messages: [first] })
        yield* Effect.forEach(
          Array.from({ length: 4 }, (_, index) => index),
          () => store.create({ id, userId, title: "Again", now: at(3), messages: [first] }),
          { concurrency: "unbounded" }
        )
        const second = message("user", "second", at(4))
        const again = yield* store.create({
          id,
          userId,
          title: "Again",
          now: at(4),
          messages: [first, second]
        })
        expect(again).toEqual({ ...created, updatedAt: at(4) })
        const history = yield* store.history({ userId, conversationId: id })
        expect(history.map((stored) => stored.content)).toEqual(["first", "second"])
      })
    )

    it.effect("create with messages on another user's id stores none of them", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const owner = user()
        const original = yield* newConversation(owner, "Owner's")
        const exit = yield* Effect.exit(
          store.create({
            id: original.id,
            userId: user(),
            title: "Intruder's",
            now: at(9),
            messages: [message("user", "planted", at(9))]
          })
        )
        expect(Exit.isFailure(exit)).toBe(true)
        expect(yield* store.history({ userId: owner, conversationId: original.id })).toEqual([])
        expect(yield* store.find({ userId: owner, id: original.id })).toEqual(Option.some(original))
      })
    )

    it.effect("a create whose message cannot be stored leaves no conversation behind", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const taken = message("user", "taken", at(2))
        yield* store.create({ id: randomUUID(), userId, title: "First", now: at(1), messages: [taken] })
        // The message id exists already: the statement fails as a whole.
        const id = randomUUID()
        const exit = yield* Effect.exit(
          store.create({ id, userId, title: "Second", now: at(1), messages: [taken] })
        )
        expect(Exit.isFailure(exit)).toBe(true)
        expect(yield* store.find({ userId, id })).toEqual(Option.none())
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
        // One append of twelve (more than the statement texts kept per count), then fours.
        const batches = [messages.slice(0, 12)]
        for (let index = 12; index < messages.length; index += 4)
          batches.push(messages.slice(index, index + 4))
        for (const batch of batches) {
          yield* store.append({ userId, conversationId: conversation.id, messages: batch })
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

    it.effect("list pages through a user's conversations, newest first, ties by id", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        expect(yield* store.list({ userId, limit: 3 })).toEqual({ conversations: [] })
        // Seven conversations over four instants: ties in updatedAt must be broken by id.
        const created: Array<ConversationStore.Conversation> = []
        for (const second of [1, 2, 2, 2, 3, 4, 4])
          created.push(yield* newConversation(userId, "t", at(second)))
        const expected = [...created].sort(ConversationStore.newestFirst)
        const seen: Array<ConversationStore.Conversation> = []
        let after: ConversationStore.Cursor | undefined
        let pages = 0
        do {
          const page = yield* store.list({ userId, limit: 3, after })
          seen.push(...page.conversations)
          after = page.next
          pages++
          if (after !== undefined) {
            expect(after).toEqual({
              updatedAt: page.conversations.at(-1)!.updatedAt,
              id: page.conversations.at(-1)!.id
            })
          }
        } while (after !== undefined && pages < 10)
        expect(pages).toBe(3)
        expect(seen).toEqual(expected)
        // A limit of exactly the count is one page with no next; one less leaves one behind.
        expect(yield* store.list({ userId, limit: 7 })).toEqual({ conversations: expected })
        const almost = yield* store.list({ userId, limit: 6 })
        expect(almost.conversations).toEqual(expected.slice(0, 6))
        expect(yield* store.list({ userId, limit: 6, after: almost.next })).toEqual({
          conversations: expected.slice(6)
        })
        // A cursor after the last item (or past everything) is an empty last page.
        const last = expected.at(-1)!
        expect(
          yield* store.list({ userId, limit: 3, after: { updatedAt: last.updatedAt, id: last.id } })
        ).toEqual({
          conversations: []
        })
        expect(
          yield* store.list({
            userId,
            limit: 3,
            after: { updatedAt: at(0), id: "00000000-0000-0000-0000-000000000000" }
          })
        ).toEqual({ conversations: [] })
        // A cursor that names no conversation still resumes at its position.
        expect(
          (yield* store.list({
            userId,
            limit: 10,
            after: { updatedAt: at(2), id: "ffffffff-ffff-ffff-ffff-ffffffffffff" }
          })).conversations
        ).toEqual(expected.filter((item) => item.updatedAt <= at(2)))
      })
    )

    it.effect("list orders by the latest activity and refuses a bad limit or cursor", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const older = yield* newConversation(userId, "older", at(1))
        const newer = yield* newConversation(userId, "newer", at(2))
        yield* store.append({ userId, conversationId: older.id, messages: [message("user", "again", at(9))] })
        const page = yield* store.list({ userId, limit: 10 })
        expect(page.conversations.map((item) => item.id)).toEqual([older.id, newer.id])
        expect(page.conversations[0]!.updatedAt).toEqual(at(9))
        for (const limit of [0, -1, 1.5, Number.NaN]) {
          expect(Exit.isFailure(yield* Effect.exit(store.list({ userId, limit })))).toBe(true)
        }
        const exit = yield* Effect.exit(
          store.list({ userId, limit: 1, after: { updatedAt: at(1), id: "' OR 1=1 --" } })
        )
        expect(Exit.isFailure(exit)).toBe(true)
      })
    )

    it.effect("isolates users on list, rename and remove", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const alice = user()
        const bob = user()
        const conversation = yield* newConversation(alice, "Alice's", at(1))
        yield* store.append({
          userId: alice,
          conversationId: conversation.id,
          messages: [message("user", "secret", at(2)), message("assistant", "reply", at(3))]
        })
        const before = yield* store.find({ userId: alice, id: conversation.id })
        const history = yield* store.history({ userId: alice, conversationId: conversation.id })

        expect(yield* store.list({ userId: bob, limit: 10 })).toEqual({ conversations: [] })
        expect(
          yield* store.list({ userId: bob, limit: 10, after: { updatedAt: at(59), id: conversation.id } })
        ).toEqual({ conversations: [] })
        expect(
          yield* store.rename({ userId: bob, id: conversation.id, title: "Bob's now", now: at(30) })
        ).toEqual(Option.none())
        expect(yield* store.remove({ userId: bob, id: conversation.id })).toBe(false)

        expect(yield* store.find({ userId: alice, id: conversation.id })).toEqual(before)
        expect(yield* store.history({ userId: alice, conversationId: conversation.id })).toEqual(history)
        expect((yield* store.list({ userId: alice, limit: 10 })).conversations).toEqual([
          Option.getOrThrow(before)
        ])
      })
    )

    it.effect("rename changes the title and touches updatedAt", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId, "Before", at(1))
        const renamed = yield* store.rename({
          userId,
          id: conversation.id,
          title: "After \u0000 ✓",
          now: at(5)
        })
        expect(renamed).toEqual(Option.some({ ...conversation, title: "After \uFFFD ✓", updatedAt: at(5) }))
        expect(yield* store.find({ userId, id: conversation.id })).toEqual(renamed)
        for (const id of [randomUUID(), "not-a-uuid"]) {
          expect(yield* store.rename({ userId, id, title: "x", now: at(6) })).toEqual(Option.none())
        }
      })
    )

    it.effect("remove deletes the conversation with its messages, once", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = user()
        const conversation = yield* newConversation(userId)
        const kept = yield* newConversation(userId)
        const messages = [message("user", "q", at(1)), message("assistant", "a", at(2))]
        yield* store.append({ userId, conversationId: conversation.id, messages })
        yield* store.append({ userId, conversationId: kept.id, messages: [message("user", "other", at(1))] })

        expect(yield* store.remove({ userId, id: conversation.id })).toBe(true)
        expect(yield* store.remove({ userId, id: conversation.id })).toBe(false)
        expect(yield* store.remove({ userId, id: "not-a-uuid" })).toBe(false)
        expect(yield* store.find({ userId, id: conversation.id })).toEqual(Option.none())
        expect(yield* store.history({ userId, conversationId: conversation.id })).toEqual([])
        expect(yield* store.exists(conversation.id)).toBe(false)
        expect(
          (yield* store.history({ userId, conversationId: kept.id })).map((item) => item.content)
        ).toEqual(["other"])
        // The cascade really removed the rows: the same message ids can be written again.
        const again = yield* newConversation(userId)
        yield* store.append({ userId, conversationId: again.id, messages })
        expect((yield* store.history({ userId, conversationId: again.id })).map((item) => item.id)).toEqual(
          messages.map((item) => item.id)
        )
      })
    )

    it.effect("exists tells whether any user owns an id", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const conversation = yield* newConversation(user())
        expect(yield* store.exists(conversation.id)).toBe(true)
        expect(yield* store.exists(conversation.id.toUpperCase())).toBe(true)
        for (const id of [randomUUID(), "", "new", "' OR 1=1 --"]) expect(yield* store.exists(id)).toBe(false)
      })
    )

    it.effect("deleteAbandoned removes exactly the old conversations without a reply, in batches", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        // Cleanup is global: this test takes a year no other test writes to and
        // earlier than every year they do, so it only sees its own rows.
        const era = (minute: number) => new Date(Date.UTC(1960, 0, 1, 0, minute))
        const cutoff = era(30)
        const alice = user()
        const bob = user()
        const make = Effect.fnUntraced(function* (
          userId: string,
          minute: number,
          messages: ReadonlyArray<ConversationStore.NewMessage>
        ) {
          const conversation = yield* newConversation(userId, "t", era(minute))
          if (messages.length > 0) yield* store.append({ userId, conversationId: conversation.id, messages })
          return conversation
        })
        const abandoned = [
          yield* make(alice, 1, []),
          yield* make(bob, 2, [message("user", "hello?", era(2))]),
          // A reply cut before any text counts as no reply.
          yield* make(alice, 3, [
            message("user", "q", era(3)),
            message("assistant", "", era(3), { status: "partial" })
          ]),
          yield* make(bob, 4, [
            message("user", "q", era(4)),
            message("assistant", "", era(4), { status: "error" })
          ]),
          yield* make(alice, 5, [message("user", "q", era(5))])
        ]
        const live = [
          // Old, but touched after the cutoff: a turn may be in progress.
          yield* make(alice, 8, [message("user", "late question", era(50))]),
          yield* make(alice, 6, [message("user", "q", era(6)), message("assistant", "a", era(6))]),
          yield* make(bob, 7, [message("assistant", "x", era(7), { status: "partial" })]),
          // Newer than the cutoff: too young to judge, with or without a reply.
          yield* make(alice, 30, []),
          yield* make(bob, 45, [message("user", "q", era(45))])
        ]
        const batches: Array<ReadonlyArray<{ readonly id: string; readonly userId: string }>> = []
        for (let round = 0; round < 5; round++) {
          const batch = yield* store.deleteAbandoned({ createdBefore: cutoff, limit: 2 })
          batches.push(batch)
          if (batch.length === 0) break
        }
        expect(batches.map((batch) => batch.length)).toEqual([2, 2, 1, 0])
        expect(new Set(batches.flat())).toEqual(
          new Set(abandoned.map((conversation) => ({ id: conversation.id, userId: conversation.userId })))
        )
        for (const conversation of abandoned) expect(yield* store.exists(conversation.id)).toBe(false)
        for (const conversation of live) {
          expect(yield* store.find({ userId: conversation.userId, id: conversation.id })).toEqual(
            Option.some(expect.objectContaining({ id: conversation.id }))
          )
        }
        expect(
          Exit.isFailure(yield* Effect.exit(store.deleteAbandoned({ createdBefore: cutoff, limit: 0 })))
        ).toBe(true)
      })
    )

    it.effect("abandonment counts the conversations created in a window and the abandoned ones", () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const era = (minute: number) => new Date(Date.UTC(1980, 0, 1, 0, minute))
        const userId = user()
        expect(yield* store.abandonment({ createdFrom: era(0), createdBefore: era(60) })).toEqual({
          created: 0,
          abandoned: 0
        })
        for (const [minute, reply] of [
          [1, ""],
          [2, "answer"],
          [3, undefined],
          [10, "answer"],
          [10, undefined],
          [20, undefined]
        ] as const) {
          const conversation = yield* newConversation(userId, "t", era(minute))
          const messages = [message("user", "q", era(minute))]
          if (reply !== undefined) messages.push(message("assistant", reply, era(minute)))
          yield* store.append({ userId, conversationId: conversation.id, messages })
        }
        // The window includes its start and excludes its end.
        expect(yield* store.abandonment({ createdFrom: era(1), createdBefore: era(10) })).toEqual({
          created: 3,
          abandoned: 2
        })
        expect(yield* store.abandonment({ createdFrom: era(10), createdBefore: era(21) })).toEqual({
          created: 3,
          abandoned: 2
        })
        expect(yield* store.abandonment({ createdFrom: era(0), createdBefore: era(60) })).toEqual({
          created: 6,
          abandoned: 4
        })
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
