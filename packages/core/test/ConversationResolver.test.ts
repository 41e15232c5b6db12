import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { ChatError, ConversationOutbox, ConversationResolver, ConversationStore } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const alice = { userId: "alice" }
const bob = { userId: "bob" }
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** A resolver on a fresh store holding one conversation of alice's. */
const setup = Effect.gen(function* () {
  const store = TestStore.make()
  const context = yield* Layer.build(
    ConversationResolver.layer.pipe(
      Layer.provideMerge(ConversationOutbox.layer()),
      Layer.provide(Layer.succeed(ConversationStore.ConversationStore, store.service))
    )
  )
  const { resolve } = Context.get(context, ConversationResolver.ConversationResolver)
  const existing = yield* resolve({
    principal: alice,
    conversationId: undefined,
    stream: true,
    message: "first"
  })
  store.created.length = 0
  return { store, existingId: existing.conversation.id, resolve }
})

const UNKNOWN = "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d"

describe("ConversationResolver resolve", () => {
  describe.each([true, false])("stream: %s", (stream) => {
    it.effect.each([
      { label: "omitted", conversationId: undefined, source: "absent" },
      { label: "null", conversationId: null, source: "absent" },
      { label: "empty string", conversationId: "", source: "absent" },
      { label: '"new"', conversationId: "new", source: "new" }
    ] as const)("$label creates a new conversation owned by the user", ({ conversationId, source }) =>
      Effect.gen(function* () {
        const { store, existingId, resolve } = yield* setup
        const resolution = yield* resolve({ principal: alice, conversationId, stream, message: "hello" })
        assert.strictEqual(resolution.source, source)
        assert.match(resolution.conversation.id, UUID_V4)
        assert.notStrictEqual(resolution.conversation.id, existingId)
        assert.strictEqual(resolution.conversation.userId, "alice")
        assert.strictEqual(resolution.conversation.title, "hello")
        assert.deepStrictEqual(store.created, [resolution.conversation.id])
        const found = yield* store.service.find({ userId: "alice", id: resolution.conversation.id })
        assert.isTrue(Option.isSome(found))
      })
    )

    it.effect("the UUID of the user's own conversation resumes it", () =>
      Effect.gen(function* () {
        const { store, existingId, resolve } = yield* setup
        const resolution = yield* resolve({
          principal: alice,
          conversationId: existingId,
          stream,
          message: "again"
        })
        assert.strictEqual(resolution.source, "resumed")
        assert.strictEqual(resolution.conversation.id, existingId)
        assert.strictEqual(resolution.conversation.title, "first")
        assert.deepStrictEqual(store.created, [])
      })
    )

    it.effect("an upper-case UUID resumes the same conversation", () =>
      Effect.gen(function* () {
        const { store, existingId, resolve } = yield* setup
        const resolution = yield* resolve({
          principal: alice,
          conversationId: existingId.toUpperCase(),
          stream,
          message: "again"
        })
        assert.strictEqual(resolution.source, "resumed")
        assert.strictEqual(resolution.conversation.id, existingId)
        assert.deepStrictEqual(store.created, [])
      })
    )
  })

  describe("stream: true — ids that do not resolve start a new conversation", () => {
    it.effect.each([
      {
        label: "a malformed string",
        conversationId: () => "not-a-uuid",
        principal: alice,
        source: "invalid_id"
      },
      {
        label: "a UUID without dashes",
        conversationId: () => UNKNOWN.replaceAll("-", ""),
        principal: alice,
        source: "invalid_id"
      },
      { label: "an unknown UUID", conversationId: () => UNKNOWN, principal: alice, source: "unknown_id" },
      {
        label: "another user's UUID",
        conversationId: (existingId: string) => existingId,
        principal: bob,
        source: "unknown_id"
      }
    ] as const)(
      "$label creates a new conversation (source $source)",
      ({ conversationId, principal, source }) =>
        Effect.gen(function* () {
          const { store, existingId, resolve } = yield* setup
          const requested = conversationId(existingId)
          const resolution = yield* resolve({
            principal,
            conversationId: requested,
            stream: true,
            message: "hi"
          })
          assert.strictEqual(resolution.source, source)
          assert.match(resolution.conversation.id, UUID_V4)
          // A fresh id: never the requested one, never alice's.
          assert.notStrictEqual(resolution.conversation.id, requested)
          assert.notStrictEqual(resolution.conversation.id, existingId)
          assert.strictEqual(resolution.conversation.userId, principal.userId)
          assert.deepStrictEqual(store.created, [resolution.conversation.id])
          // Alice's conversation is untouched.
          const original = yield* store.service.find({ userId: "alice", id: existingId })
          assert.isTrue(Option.isSome(original) && original.value.title === "first")
        })
    )
  })

  describe("stream: false — ids that do not resolve are ConversationNotFound", () => {
    it.effect.each([
      { label: "a malformed string", conversationId: () => "not-a-uuid", principal: alice },
      { label: "an unknown UUID", conversationId: () => UNKNOWN, principal: alice },
      { label: "another user's UUID", conversationId: (existingId: string) => existingId, principal: bob },
      {
        label: "another user's UUID in upper case",
        conversationId: (existingId: string) => existingId.toUpperCase(),
        principal: bob
      }
    ] as const)(
      "$label fails with ConversationNotFound and creates nothing",
      ({ conversationId, principal }) =>
        Effect.gen(function* () {
          const { store, existingId, resolve } = yield* setup
          const error = yield* resolve({
            principal,
            conversationId: conversationId(existingId),
            stream: false,
            message: "hi"
          }).pipe(Effect.flip)
          assert.instanceOf(error, ChatError.ConversationNotFound)
          assert.deepStrictEqual(store.created, [])
        })
    )

    it.effect("another user's conversation fails exactly like an unknown one", () =>
      Effect.gen(function* () {
        const { existingId, resolve } = yield* setup
        const othersError = yield* resolve({
          principal: bob,
          conversationId: existingId,
          stream: false,
          message: "x"
        }).pipe(Effect.flip)
        const unknownError = yield* resolve({
          principal: bob,
          conversationId: UNKNOWN,
          stream: false,
          message: "x"
        }).pipe(Effect.flip)
        assert.deepStrictEqual(JSON.stringify(othersError), JSON.stringify(unknownError))
        assert.strictEqual(othersError._tag, unknownError._tag)
      })
    )
  })
})

describe("ConversationResolver.titleFrom", () => {
  const graphemes = (text: string) =>
    [...new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(text)].length
  const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

  it("51 characters become the first 50 followed by ...", () => {
    const message = `${"abcdefghij".repeat(5)}Z`
    assert.strictEqual(message.length, 51)
    assert.strictEqual(ConversationResolver.titleFrom(message), `${"abcdefghij".repeat(5)}...`)
  })

  it("exactly 50 characters stay unchanged", () => {
    const message = "x".repeat(50)
    assert.strictEqual(ConversationResolver.titleFrom(message), message)
  })

  it("short messages stay unchanged", () => {
    assert.strictEqual(ConversationResolver.titleFrom("Hello"), "Hello")
  })

  it("50 emoji (100 UTF-16 units) count as 50 characters and stay unchanged", () => {
    const message = "😀".repeat(50)
    assert.strictEqual(ConversationResolver.titleFrom(message), message)
  })

  it("an emoji (surrogate pair) straddling the 50th UTF-16 unit is kept whole", () => {
    // UTF-16 units 49 and 50 hold the emoji: slicing 50 units would split it.
    const message = `${"a".repeat(49)}😀bcd`
    const title = ConversationResolver.titleFrom(message)
    assert.strictEqual(title, `${"a".repeat(49)}😀...`)
    assert.notMatch(title, LONE_SURROGATE)
    assert.strictEqual(graphemes(title.slice(0, -3)), 50)
  })

  it("a 51st character that is an emoji is dropped whole", () => {
    const title = ConversationResolver.titleFrom(`${"a".repeat(50)}😀`)
    assert.strictEqual(title, `${"a".repeat(50)}...`)
    assert.notMatch(title, LONE_SURROGATE)
  })

  it("a ZWJ family emoji straddling the 50th character is never split", () => {
    const family = "👨‍👩‍👧‍👦"
    assert.strictEqual(family.length, 11)
    // The family is the 50th character: kept whole.
    const kept = ConversationResolver.titleFrom(`${"a".repeat(49)}${family}bc`)
    assert.strictEqual(kept, `${"a".repeat(49)}${family}...`)
    // The family is the 51st character: dropped whole.
    const dropped = ConversationResolver.titleFrom(`${"a".repeat(50)}${family}`)
    assert.strictEqual(dropped, `${"a".repeat(50)}...`)
    // The family starts inside the first 50 UTF-16 units and ends past them.
    const straddling = ConversationResolver.titleFrom(`${"a".repeat(45)}${family}${"b".repeat(10)}`)
    assert.strictEqual(straddling, `${"a".repeat(45)}${family}bbbb...`)
    for (const title of [kept, dropped, straddling]) {
      assert.notMatch(title, LONE_SURROGATE)
      assert.isFalse(title.replace("...", "").endsWith("\u200d"))
    }
  })

  it("exactly 50 characters including a family emoji stay unchanged", () => {
    const message = `${"a".repeat(49)}👨‍👩‍👧‍👦`
    assert.strictEqual(ConversationResolver.titleFrom(message), message)
  })
})
