import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import { ChatConfig, ChatHooks, ChatService, ConversationStore } from "../src/index.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestStore from "../src/testing/TestStore.ts"

/** Records every hook call as `name:detail`. */
const recorder = () => {
  const seen: Array<string> = []
  const hooks: ChatHooks.Service = {
    conversationResolved: (event) =>
      Effect.sync(() => seen.push(`resolved:${event.source}:${event.created}:${event.requestId}`)),
    conversationFailed: (event) => Effect.sync(() => seen.push(`failed:${event.reason}`)),
    metadataSent: (event) => Effect.sync(() => seen.push(`metadata:${event.temporary}`)),
    firstToken: () => Effect.sync(() => seen.push("firstToken")),
    turnEnded: (event) => Effect.sync(() => seen.push(`ended:${event.outcome}`)),
    turnResumed: (event) => Effect.sync(() => seen.push(`resumed:${event.outcome}`)),
    stopRequested: (event) => Effect.sync(() => seen.push(`stop:${event.running}`)),
    turnLogSize: () => Effect.void,
    requestRefused: () => Effect.void,
    socketChanged: () => Effect.void,
    socketChatAnswered: () => Effect.void
  }
  return { seen, hooks }
}

const run = <A, E>(
  model: TestModel.TestModel,
  hooks: ChatHooks.Service,
  body: (chat: ChatService.Service) => Effect.Effect<A, E>,
  store: Layer.Layer<ConversationStore.ConversationStore> = TestStore.make().layer
) =>
  Effect.gen(function* () {
    return yield* body(yield* ChatService.ChatService)
  }).pipe(
    Effect.provide(
      ChatService.layer.pipe(
        Layer.provide(Layer.mergeAll(model.layer, store, Layer.succeed(ChatHooks.ChatHooks, hooks)))
      )
    )
  )

const input = (message: string, extra: Record<string, unknown> = {}) => ({
  principal: { userId: "alice" },
  request: { message, stream: true, ...extra },
  requestId: "req-1"
})

describe("ChatHooks", () => {
  it.effect("reports a complete streamed turn in order", () => {
    const { seen, hooks } = recorder()
    const model = TestModel.make(() => TestModel.reply("Hel", "lo"))
    return run(model, hooks, (chat) =>
      Effect.gen(function* () {
        yield* Stream.runCollect(yield* chat.stream(input("hi")))
        assert.deepStrictEqual(seen, [
          "resolved:absent:true:req-1",
          "metadata:false",
          "firstToken",
          "ended:complete"
        ])
      })
    )
  })

  it.effect("reports model errors and resumes", () => {
    const { seen, hooks } = recorder()
    const model = TestModel.make((_, call) =>
      call === 1 ? TestModel.reply("ok") : TestModel.failAfter(["par"], TestModel.overloaded)
    )
    return run(model, hooks, (chat) =>
      Effect.gen(function* () {
        const first = yield* Stream.runCollect(yield* chat.stream(input("one")))
        const id = (first[0] as { conversation_id: string }).conversation_id
        yield* Stream.runCollect(yield* chat.stream(input("two", { conversation_id: id })))
        assert.deepStrictEqual(seen.slice(4), [
          "resolved:resumed:false:req-1",
          "metadata:false",
          "firstToken",
          "ended:model_error"
        ])
      })
    )
  })

  it.effect("reports a client that leaves and is not back within the grace window as client_closed", () => {
    const { seen, hooks } = recorder()
    const model = TestModel.make(() => TestModel.endless("a", "b"))
    return run(model, hooks, (chat) =>
      Effect.gen(function* () {
        yield* Stream.runCollect(Stream.take(yield* chat.stream(input("hi")), 2))
        // The turn goes on while the window is open.
        assert.notInclude(seen, "ended:client_closed")
        yield* TestClock.adjust(ChatConfig.defaults.disconnectGrace)
        yield* Deferred.await(model.interrupted)
        while (!seen.includes("ended:client_closed")) yield* Effect.yieldNow
        assert.strictEqual(seen.at(-1), "ended:client_closed")
      })
    )
  })

  it.effect("reports a store that fails to create the conversation (non-streaming)", () => {
    const { seen, hooks } = recorder()
    const model = TestModel.make(() => TestModel.reply("x"))
    const memory = ConversationStore.makeMemory()
    const broken = Layer.succeed(ConversationStore.ConversationStore, {
      ...memory,
      create: () => Effect.fail(ConversationStore.unavailable(new Error("down")))
    })
    return run(
      model,
      hooks,
      (chat) =>
        Effect.gen(function* () {
          const error = yield* Effect.flip(
            chat.complete({ ...input("hi"), request: { message: "hi", stream: false } })
          )
          assert.strictEqual(error._tag, "StoreUnavailable")
          assert.deepStrictEqual(seen, ["failed:store_unavailable"])
        }),
      broken
    )
  })

  it.effect("combine runs every observer and survives a failing one", () => {
    const first = recorder()
    const second = recorder()
    const failing: Partial<ChatHooks.Service> = { turnEnded: () => Effect.die(new Error("boom")) }
    const combined = ChatHooks.combine(first.hooks, failing, second.hooks)
    const model = TestModel.make(() => TestModel.reply("x"))
    return run(model, combined, (chat) =>
      Effect.gen(function* () {
        yield* Stream.runCollect(yield* chat.stream(input("hi")))
        assert.include(first.seen, "ended:complete")
        assert.deepStrictEqual(second.seen, first.seen)
      })
    )
  })
})
