import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  ChatConfig,
  ChatError,
  type ChatEvent,
  type ChatRequest,
  ChatService,
  ChatStream,
  ConversationOutbox,
  ConversationStore,
  StreamSink
} from "../src/index.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const alice = { userId: "alice" }
const bob = { userId: "bob" }
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** Runs `body` with a chat service (and its outbox) over the given model and a fresh test store. */
const withChat = <A, E>(
  model: TestModel.TestModel,
  body: (context: {
    readonly chat: ChatService.Service
    readonly store: TestStore.TestStore
    readonly outbox: ConversationOutbox.Service
  }) => Effect.Effect<A, E>,
  store: TestStore.TestStore = TestStore.make(),
  config: Partial<ChatConfig.Settings> = {}
) =>
  Effect.gen(function* () {
    const chat = yield* ChatService.ChatService
    const outbox = yield* ConversationOutbox.ConversationOutbox
    return yield* body({ chat, store, outbox })
  }).pipe(
    Effect.provide(ChatService.layer.pipe(Layer.provide(Layer.merge(model.layer, store.layer)))),
    Effect.provideService(ChatConfig.ChatConfig, ChatConfig.make(config))
  )

/** A frame without its `id:` line, and the id it had. */
const splitId = (frame: string): { readonly id: string | undefined; readonly data: string } => {
  const match = /^id: ([^\n]*)\n/.exec(frame)
  return match === null
    ? { id: undefined, data: frame }
    : { id: match[1], data: frame.slice(match[0].length) }
}

const request = (message: string, extra: Omit<ChatRequest.ChatRequest, "message"> = {}) => ({
  message,
  stream: true,
  ...extra
})

const collect = (chat: ChatService.Service, principal: { userId: string }, body: ChatRequest.ChatRequest) =>
  Effect.flatMap(chat.stream({ principal, request: body }), Stream.runCollect)

const metadataOf = (items: ReadonlyArray<ChatService.StreamItem>): ChatEvent.MetadataEvent => {
  const first = items[0]
  assert.isDefined(first)
  assert.strictEqual(first!.type, "metadata")
  return first as ChatEvent.MetadataEvent
}

const contents = (items: ReadonlyArray<ChatService.StreamItem>) =>
  items.flatMap((item) => (item.type === "content" ? [item.delta.content] : []))

describe("ChatService.stream", () => {
  it.effect("the first element is the metadata event, in wire key order", () => {
    const model = TestModel.make(() => TestModel.reply("Hi"))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        yield* TestClock.setTime(1_764_081_000_999)
        const items = yield* collect(chat, alice, request("hello"))
        const metadata = metadataOf(items)
        assert.match(metadata.conversation_id, UUID_V4)
        assert.match(metadata.turn_id!, UUID_V4)
        assert.strictEqual(
          JSON.stringify(metadata),
          `{"type":"metadata","conversation_id":"${metadata.conversation_id}","model":"unified-chat","timestamp":1764081000,"turn_id":"${metadata.turn_id}"}`
        )
        assert.isTrue(Number.isInteger(metadata.timestamp))
        // The metadata event is the only one of its kind.
        assert.strictEqual(items.filter((item) => item.type === "metadata").length, 1)
      })
    )
  })

  it.effect("the metadata event is pulled before the model is called", () => {
    const model = TestModel.make(() => TestModel.reply("Hi"))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.scoped(
          Effect.gen(function* () {
            const pull = yield* Stream.toPull(
              yield* chat.stream({ principal: alice, request: request("hello") })
            )
            const first = yield* pull
            assert.deepStrictEqual(
              first.map((item) => item.type),
              ["metadata"]
            )
            // Nothing has reached the model yet.
            assert.strictEqual(model.calls.length, 0)
            assert.isFalse(yield* Deferred.isDone(model.called))
            // The conversation exists already, with the user message stored in
            // the same write: the id the client holds is real.
            const id = (first[0] as ChatEvent.MetadataEvent).conversation_id
            assert.deepStrictEqual(store.created, [id])
            assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", id), [
              ["user", "complete", "hello"]
            ])
            const second = yield* pull
            assert.strictEqual(model.calls.length, 1)
            assert.deepStrictEqual(second, [{ type: "content", delta: { content: "Hi" } }])
          })
        ),
      store
    )
  })

  it.effect("the metadata event is available while the model has not produced anything", () => {
    const model = TestModel.make(() => TestModel.endless())
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const head = yield* (yield* chat.stream({ principal: alice, request: request("hello") })).pipe(
          Stream.take(1),
          Stream.runCollect
        )
        assert.strictEqual(head[0]?.type, "metadata")
      })
    )
  })

  it.effect("content events follow the model's deltas in order; empty deltas are not sent", () => {
    const model = TestModel.make(() => TestModel.reply("Hel", "", "lo", " there", "!"))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const items = yield* collect(chat, alice, request("hello"))
        assert.deepStrictEqual(
          items.slice(1).map((item) => JSON.stringify(item)),
          [
            '{"type":"content","delta":{"content":"Hel"}}',
            '{"type":"content","delta":{"content":"lo"}}',
            '{"type":"content","delta":{"content":" there"}}',
            '{"type":"content","delta":{"content":"!"}}'
          ]
        )
      })
    )
  })

  it.effect("passes the resolved provider model and the new user message to the model", () => {
    const model = TestModel.make(() => TestModel.reply("ok"))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        yield* collect(chat, alice, request("hello", { model: "test-model" }))
        assert.deepStrictEqual(model.calls, [
          { model: "provider-model", messages: [{ role: "user", content: "hello" }] }
        ])
      })
    )
  })

  it.effect("an unknown model fails before the stream starts, with nothing created", () => {
    const model = TestModel.make(() => TestModel.reply("ok"))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const error = yield* chat
            .stream({ principal: alice, request: request("hello", { model: "gpt-0" }) })
            .pipe(Effect.flip)
          assert.instanceOf(error, ChatError.InvalidRequest)
          assert.deepStrictEqual(store.created, [])
          assert.strictEqual(model.calls.length, 0)
        }),
      store
    )
  })

  it.effect("a model error after the start becomes one error event, then the stream ends", () => {
    const model = TestModel.make(() => TestModel.failAfter(["Hel", "lo"], TestModel.overloaded))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const items = yield* collect(chat, alice, request("hello"))
        assert.deepStrictEqual(
          items.map((item) => item.type),
          ["metadata", "content", "content", "error"]
        )
        assert.strictEqual(
          JSON.stringify(items.at(-1)),
          '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
        )
      })
    )
  })

  it.effect("sse frames the events and appends [DONE] after an error event", () => {
    const model = TestModel.make(() => TestModel.failAfter(["Hel"], TestModel.overloaded))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const chunks = yield* Stream.runCollect(
          yield* chat.sse({ principal: alice, request: request("hello") })
        )
        const decoder = new TextDecoder()
        const frames = chunks.map((chunk) => decoder.decode(chunk))
        const metadata = JSON.parse(frames[0]!.slice("data: ".length))
        const turn = metadata.turn_id
        assert.deepStrictEqual(frames, [
          `data: ${JSON.stringify(metadata)}\n\n`,
          `id: ${turn}:1\ndata: {"type":"content","delta":{"content":"Hel"}}\n\n`,
          `id: ${turn}:2\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n`,
          `id: ${turn}:3\ndata: [DONE]\n\n`
        ])
      })
    )
  })

  it.effect("stores the user message and the assistant reply as complete", () => {
    const model = TestModel.make(() => TestModel.reply("Hello", " there"))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const items = yield* collect(chat, alice, request("hi"))
          const id = metadataOf(items).conversation_id
          assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", id), [
            ["user", "complete", "hi"],
            ["assistant", "complete", "Hello there"]
          ])
          const history = yield* store.service.history({ userId: "alice", conversationId: id })
          assert.strictEqual(history[1]!.metadata?.model, "provider-model")
          assert.strictEqual(history[1]!.metadata?.stopReason, "end_turn")
        }),
      store
    )
  })

  it.effect("resuming passes the stored history to the model, oldest first, roles alternating", () => {
    const model = TestModel.make((_request, call) => TestModel.reply(`reply ${call}`))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const id = metadataOf(yield* collect(chat, alice, request("one"))).conversation_id
        const second = yield* collect(chat, alice, request("two", { conversation_id: id }))
        assert.strictEqual(metadataOf(second).conversation_id, id)
        yield* collect(chat, alice, request("three", { conversation_id: id.toUpperCase() }))
        assert.deepStrictEqual(model.calls[2]!.messages, [
          { role: "user", content: "one" },
          { role: "assistant", content: "reply 1" },
          { role: "user", content: "two" },
          { role: "assistant", content: "reply 2" },
          { role: "user", content: "three" }
        ])
      })
    )
  })

  it.effect("a resumed turn reads the history while it stores the user message", () => {
    const model = TestModel.make((_request, call) => TestModel.reply(`reply ${call}`))
    const inner = TestStore.make()
    // The history read waits for this turn's user message to be stored: it
    // ends only if both run at once, and then it already holds that message.
    let gate: Deferred.Deferred<void> | undefined
    const service: ConversationStore.Service = {
      ...inner.service,
      history: (input) =>
        gate === undefined
          ? inner.service.history(input)
          : Effect.andThen(Deferred.await(gate), inner.service.history(input)),
      append: (input) =>
        Effect.tap(inner.service.append(input), () =>
          gate !== undefined && input.messages.some((message) => message.role === "user")
            ? Deferred.succeed(gate, undefined)
            : Effect.void
        )
    }
    const store = TestStore.withService(inner, service)
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const id = metadataOf(yield* collect(chat, alice, request("one"))).conversation_id
          gate = yield* Deferred.make<void>()
          const second = yield* collect(chat, alice, request("two", { conversation_id: id }))
          assert.deepStrictEqual(contents(second), ["reply 2"])
          // The new message reaches the model once, after the history.
          assert.deepStrictEqual(model.calls[1]!.messages, [
            { role: "user", content: "one" },
            { role: "assistant", content: "reply 1" },
            { role: "user", content: "two" }
          ])
        }),
      store
    )
  })

  it.effect(
    "a user message stored while the history could not be read gets its failed reply after it",
    () => {
      const model = TestModel.make((_request, call) => TestModel.reply(`reply ${call}`))
      const inner = TestStore.make()
      let historyDown = false
      const service: ConversationStore.Service = {
        ...inner.service,
        history: (input) =>
          historyDown
            ? Effect.fail(ConversationStore.unavailable(new Error("timeout")))
            : inner.service.history(input)
      }
      const store = TestStore.withService(inner, service)
      return withChat(
        model,
        ({ chat }) =>
          Effect.gen(function* () {
            const id = metadataOf(yield* collect(chat, alice, request("one"))).conversation_id
            historyDown = true
            const second = yield* collect(chat, alice, request("two", { conversation_id: id }))
            assert.strictEqual(second.at(-1)!.type, "error")
            // The model was not called without the history.
            assert.strictEqual(model.calls.length, 1)
            historyDown = false
            assert.deepStrictEqual(yield* TestStore.transcript(inner.service, "alice", id), [
              ["user", "complete", "one"],
              ["assistant", "complete", "reply 1"],
              ["user", "complete", "two"],
              ["assistant", "error", ""]
            ])
          }),
        store
      )
    }
  )

  it.effect(
    "a turn cancelled while its user message is being written still stores its reply after it",
    () => {
      const model = TestModel.make((_request, call) =>
        call === 1 ? TestModel.reply("first") : TestModel.endless("never seen")
      )
      const inner = TestStore.make()
      const gate = Deferred.makeUnsafe<void>()
      const writing = Deferred.makeUnsafe<void>()
      let gated = false
      const service: ConversationStore.Service = {
        ...inner.service,
        // A database write in flight commits whatever happens to the fiber waiting for it.
        append: (input) =>
          gated && input.messages[0]?.role === "user"
            ? Effect.flatMap(
                Effect.forkDetach(Effect.andThen(Deferred.await(gate), inner.service.append(input))),
                (write) => Effect.andThen(Deferred.succeed(writing, undefined), Fiber.join(write))
              )
            : inner.service.append(input)
      }
      return withChat(
        model,
        ({ chat }) =>
          Effect.gen(function* () {
            const id = metadataOf(yield* collect(chat, alice, request("one"))).conversation_id
            gated = true
            const reader = yield* Effect.forkChild(
              Stream.runDrain(
                yield* chat.stream({ principal: alice, request: request("two", { conversation_id: id }) })
              )
            )
            yield* Deferred.await(writing)
            // The client leaves (no grace window) while the user message is on its way to the database.
            yield* Fiber.interrupt(reader)
            yield* Deferred.succeed(gate, undefined)
            for (let turn = 0; turn < 200; turn++) yield* Effect.yieldNow
            assert.deepStrictEqual((yield* TestStore.transcript(inner.service, "alice", id)).slice(2), [
              ["user", "complete", "two"],
              ["assistant", "cancelled", ""]
            ])
          }),
        TestStore.withService(inner, service),
        { disconnectGrace: Duration.zero }
      )
    }
  )

  it.effect("a failed turn is excluded from the model's history", () => {
    const model = TestModel.make((_request, call) =>
      call === 2
        ? TestModel.failAfter(["half a rep"], TestModel.overloaded)
        : TestModel.reply(`reply ${call}`)
    )
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const id = metadataOf(yield* collect(chat, alice, request("one"))).conversation_id
          yield* collect(chat, alice, request("two", { conversation_id: id }))
          yield* collect(chat, alice, request("three", { conversation_id: id }))
          // The failed turn is kept in the store, marked as such…
          assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", id), [
            ["user", "complete", "one"],
            ["assistant", "complete", "reply 1"],
            ["user", "complete", "two"],
            ["assistant", "error", "half a rep"],
            ["user", "complete", "three"],
            ["assistant", "complete", "reply 3"]
          ])
          // …but the model never sees it, and roles still alternate.
          assert.deepStrictEqual(model.calls[2]!.messages, [
            { role: "user", content: "one" },
            { role: "assistant", content: "reply 1" },
            { role: "user", content: "three" }
          ])
        }),
      store
    )
  })

  it.effect(
    "with no grace window, interrupting the stream mid-reply cancels the turn and stores the partial reply",
    () => {
      const model = TestModel.make(() => TestModel.endless("Hel", "lo"))
      const store = TestStore.make()
      return withChat(
        model,
        ({ chat }) =>
          Effect.gen(function* () {
            const received: Array<ChatService.StreamItem> = []
            const twoContents = yield* Deferred.make<void>()
            const events = yield* chat.stream({ principal: alice, request: request("hi") })
            const fiber = yield* events.pipe(
              Stream.runForEach((item) =>
                Effect.suspend(() => {
                  received.push(item)
                  return contents(received).length === 2
                    ? Deferred.succeed(twoContents, undefined)
                    : Effect.void
                })
              ),
              Effect.forkChild
            )
            yield* Deferred.await(twoContents)
            yield* Fiber.interrupt(fiber)
            yield* Deferred.await(model.interrupted)
            const stored = yield* Deferred.await(store.assistantStored)
            assert.strictEqual(stored.status, "cancelled")
            assert.strictEqual(stored.content, "Hello")
            const id = metadataOf(received).conversation_id
            assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", id), [
              ["user", "complete", "hi"],
              ["assistant", "cancelled", "Hello"]
            ])
          }),
        store,
        { disconnectGrace: Duration.zero }
      )
    }
  )

  it.effect("a model error mid-stream stores the partial text with status error", () => {
    const model = TestModel.make(() => TestModel.failAfter(["Hel", "lo"], TestModel.overloaded))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const id = metadataOf(yield* collect(chat, alice, request("hi"))).conversation_id
          assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", id), [
            ["user", "complete", "hi"],
            ["assistant", "error", "Hello"]
          ])
        }),
      store
    )
  })

  it.live("a store failure after the start queues the messages; the reply streams and lands later", () => {
    const model = TestModel.make(() => TestModel.reply("Hel", "lo"))
    const store = TestStore.flaky()
    return withChat(
      model,
      ({ chat, outbox }) =>
        Effect.gen(function* () {
          const pull = yield* Stream.toPull(yield* chat.stream({ principal: alice, request: request("hi") }))
          const metadata = (yield* pull)[0] as ChatEvent.MetadataEvent
          assert.isUndefined(metadata.temporary)
          store.mode = "down"
          const rest: Array<ChatService.StreamItem> = []
          for (;;) {
            const items = yield* pull.pipe(Effect.catchCause(() => Effect.succeed(undefined)))
            if (items === undefined) break
            rest.push(...items)
          }
          assert.deepStrictEqual(
            rest.map((item) => item.type),
            ["content", "content"]
          )
          assert.isAbove(outbox.stats().pending, 0)
          store.mode = "up"
          yield* outbox.drained
          assert.deepStrictEqual(
            yield* TestStore.transcript(store.service, "alice", metadata.conversation_id),
            [
              ["user", "complete", "hi"],
              ["assistant", "complete", "Hello"]
            ]
          )
        }).pipe(Effect.scoped),
      store
    )
  })

  it.effect("sends heartbeats while the model is silent", () => {
    const model = TestModel.make(() => TestModel.endless())
    return withChat(model, ({ chat }) =>
      Effect.scoped(
        Effect.gen(function* () {
          const pull = yield* Stream.toPull(yield* chat.stream({ principal: alice, request: request("hi") }))
          yield* pull
          const next = yield* Effect.forkChild(pull)
          yield* Deferred.await(model.called)
          for (let second = 0; second < 60 && next.pollUnsafe() === undefined; second++) {
            yield* TestClock.adjust("1 second")
          }
          const items = yield* Fiber.join(next)
          assert.deepStrictEqual(items, [{ type: "heartbeat" }])
          const sse = new TextDecoder().decode(ChatStream.sseFrame({ type: "heartbeat" }))
          assert.strictEqual(sse, ": ping\n\n")
        })
      )
    )
  })

  it.effect("sends no heartbeat while the model keeps talking", () => {
    // One delta every 5 s for a minute: never 15 s of silence, so never a ping.
    const model = TestModel.make(() =>
      TestModel.reply(...Array.from({ length: 12 }, (_, index) => `w${index} `)).pipe(
        Stream.tap(() => Effect.sleep("5 seconds"))
      )
    )
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const fiber = yield* Effect.forkChild(collect(chat, alice, request("hi")))
        for (let second = 0; second < 90 && fiber.pollUnsafe() === undefined; second++) {
          yield* TestClock.adjust("1 second")
        }
        const items = yield* Fiber.join(fiber)
        assert.strictEqual(items.filter((item) => item.type === "heartbeat").length, 0)
        assert.strictEqual(items.filter((item) => item.type === "content").length, 12)
      })
    )
  })

  it.effect("shutdown ends an open stream with a shutdown error event; new requests then fail", () => {
    const model = TestModel.make(() => TestModel.endless("Hel", "lo"))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const received: Array<string> = []
          const twoContents = yield* Deferred.make<void>()
          const frames = yield* chat.sse({ principal: alice, request: request("hi") })
          const fiber = yield* frames.pipe(
            Stream.runForEach((chunk) =>
              Effect.suspend(() => {
                received.push(new TextDecoder().decode(chunk))
                return received.length === 3 ? Deferred.succeed(twoContents, undefined) : Effect.void
              })
            ),
            Effect.forkChild
          )
          yield* Deferred.await(twoContents)
          yield* chat.shutdown
          // The stream ends by itself: no interruption from the test.
          yield* Fiber.join(fiber)
          const split = received.map(splitId)
          const turn = JSON.parse(received[0]!.slice("data: ".length)).turn_id
          const contentFrames = split.slice(1, -2)
          assert.isAtLeast(contentFrames.length, 2)
          assert.deepStrictEqual(
            contentFrames.map((frame) => frame.data),
            contentFrames.map((_, index) =>
              index % 2 === 0
                ? 'data: {"type":"content","delta":{"content":"Hel"}}\n\n'
                : 'data: {"type":"content","delta":{"content":"lo"}}\n\n'
            )
          )
          assert.match(
            split.at(-2)!.data,
            /^data: \{"type":"error","error":\{"type":"shutdown","message":"[^"]+"\}\}\n\n$/
          )
          assert.deepStrictEqual(split.at(-1), {
            id: `${turn}:${received.length - 1}`,
            data: "data: [DONE]\n\n"
          })
          const stored = yield* Deferred.await(store.assistantStored)
          assert.strictEqual(stored.status, "interrupted")
          assert.strictEqual(
            stored.content,
            contentFrames.map((frame) => JSON.parse(frame.data.slice("data: ".length)).delta.content).join("")
          )
          const streamError = yield* chat
            .stream({ principal: alice, request: request("again") })
            .pipe(Effect.flip)
          assert.strictEqual(streamError._tag, "ServerShutdown")
          const completeError = yield* chat
            .complete({ principal: alice, request: request("again", { stream: false }) })
            .pipe(Effect.flip)
          assert.strictEqual(completeError._tag, "ServerShutdown")
          assert.strictEqual(model.calls.length, 1)
        }),
      store
    )
  })

  it.effect("a reader a whole buffer behind at shutdown still gets the error event and [DONE]", () => {
    const model = TestModel.make(() =>
      TestModel.endless(...Array.from({ length: 40 }, (_, index) => `w${index}`))
    )
    return withChat(model, ({ chat }) =>
      Effect.scoped(
        Effect.gen(function* () {
          const pull = yield* Stream.toPull(yield* chat.sse({ principal: alice, request: request("hi") }))
          yield* pull
          // The model fills the buffer and waits for the reader, which is not reading.
          while (model.pulled() < 16) yield* Effect.yieldNow
          yield* chat.shutdown
          const frames: Array<string> = []
          for (;;) {
            const chunks = yield* pull.pipe(Effect.catchCause(() => Effect.succeed(undefined)))
            if (chunks === undefined) break
            frames.push(...chunks.map((chunk) => new TextDecoder().decode(chunk)))
          }
          assert.isAtLeast(frames.length, 16)
          assert.match(splitId(frames.at(-2)!).data, /^data: \{"type":"error","error":\{"type":"shutdown"/)
          assert.strictEqual(splitId(frames.at(-1)!).data, "data: [DONE]\n\n")
        })
      )
    )
  })

  it.effect("a reader that takes no more frames holds the model back within a few events", () => {
    const model = TestModel.make(() => TestModel.forever("x"))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const produce = StreamSink.producerOf(yield* chat.sse({ principal: alice, request: request("hi") }))!
        const stuck = yield* Deferred.make<void>()
        let sent = 0
        // Takes the metadata event and two content events, then never another.
        yield* Effect.forkChild(
          produce({
            send: () =>
              ++sent <= 2 ? Effect.void : Effect.andThen(Deferred.succeed(stuck, undefined), Effect.never),
            trySend: () => true,
            close: () => Effect.void
          })
        )
        yield* Deferred.await(stuck)
        for (let turn = 0; turn < 200; turn++) yield* Effect.yieldNow
        // Two taken, one held by the reader, and a few more logged before the model waits.
        assert.isAtMost(model.pulled(), 16)
      })
    )
  })

  it.effect("sse carries its producer, which writes the same frames into a sink", () => {
    const model = TestModel.make(() => TestModel.reply("Hel", "lo"))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const stream = yield* chat.sse({ principal: alice, request: request("hi") })
        const produce = StreamSink.producerOf(stream)
        assert.isDefined(produce)
        const frames: Array<string> = []
        let closed = false
        const decoder = new TextDecoder()
        yield* produce!({
          send: (frame) => Effect.sync(() => void frames.push(decoder.decode(frame))),
          trySend: (frame) => {
            frames.push(decoder.decode(frame))
            return true
          },
          close: (last) =>
            Effect.sync(() => {
              for (const frame of last) frames.push(decoder.decode(frame))
              closed = true
            })
        })
        assert.isTrue(closed)
        assert.match(frames[0]!, /^data: \{"type":"metadata"/)
        const turn = JSON.parse(frames[0]!.slice("data: ".length)).turn_id
        assert.deepStrictEqual(frames.slice(1), [
          `id: ${turn}:1\ndata: {"type":"content","delta":{"content":"Hel"}}\n\n`,
          `id: ${turn}:2\ndata: {"type":"content","delta":{"content":"lo"}}\n\n`,
          `id: ${turn}:3\ndata: [DONE]\n\n`
        ])
        // The item stream has no producer to take over: it is only read.
        const items = yield* chat.stream({ principal: alice, request: request("hi") })
        assert.isUndefined(StreamSink.producerOf(items))
      })
    )
  })

  describe("never fails with ConversationNotFound", () => {
    it.effect.each([
      { label: "a malformed id", requested: () => "nope", principal: alice },
      { label: "an unknown UUID", requested: () => "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d", principal: alice },
      { label: "another user's id", requested: (own: string) => own, principal: bob }
    ])("$label starts a new conversation", ({ requested, principal }) => {
      const model = TestModel.make(() => TestModel.reply("ok"))
      return withChat(model, ({ chat }) =>
        Effect.gen(function* () {
          const own = metadataOf(yield* collect(chat, alice, request("mine"))).conversation_id
          const items = yield* collect(chat, principal, request("hi", { conversation_id: requested(own) }))
          const id = metadataOf(items).conversation_id
          assert.match(id, UUID_V4)
          assert.notStrictEqual(id, own)
          assert.notStrictEqual(id, requested(own))
          assert.deepStrictEqual(contents(items), ["ok"])
          // The new conversation starts with no history.
          assert.deepStrictEqual(model.calls[1]!.messages, [{ role: "user", content: "hi" }])
        })
      )
    })
  })
})

describe("ChatService.complete", () => {
  it.effect("returns the whole reply and stores the turn", () => {
    const model = TestModel.make(() => TestModel.reply("Hello", " ", "there"))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          yield* TestClock.setTime(Date.UTC(2026, 10, 25, 12, 0, 0))
          const completion = yield* chat.complete({
            principal: alice,
            request: request("hi", { stream: false })
          })
          assert.match(completion.conversation_id, UUID_V4)
          assert.deepStrictEqual(completion, {
            conversation_id: completion.conversation_id,
            model: "unified-chat",
            message: { role: "assistant", content: "Hello there" },
            created_at: "2026-11-25T12:00:00.000Z"
          })
          assert.deepStrictEqual(
            yield* TestStore.transcript(store.service, "alice", completion.conversation_id),
            [
              ["user", "complete", "hi"],
              ["assistant", "complete", "Hello there"]
            ]
          )
        }),
      store
    )
  })

  it.effect("resumes the user's conversation with its history", () => {
    const model = TestModel.make((_request, call) => TestModel.reply(`reply ${call}`))
    return withChat(model, ({ chat }) =>
      Effect.gen(function* () {
        const first = yield* chat.complete({ principal: alice, request: request("one", { stream: false }) })
        const second = yield* chat.complete({
          principal: alice,
          request: request("two", { stream: false, conversation_id: first.conversation_id })
        })
        assert.strictEqual(second.conversation_id, first.conversation_id)
        assert.strictEqual(second.message.content, "reply 2")
        assert.deepStrictEqual(model.calls[1]!.messages, [
          { role: "user", content: "one" },
          { role: "assistant", content: "reply 1" },
          { role: "user", content: "two" }
        ])
      })
    )
  })

  it.effect.each([
    { label: "a malformed id", requested: () => "nope", principal: alice },
    { label: "an unknown UUID", requested: () => "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d", principal: alice },
    { label: "another user's id", requested: (own: string) => own, principal: bob }
  ])("$label fails with ConversationNotFound before the model is called", ({ requested, principal }) => {
    const model = TestModel.make(() => TestModel.reply("ok"))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const own = (yield* chat.complete({
            principal: alice,
            request: request("mine", { stream: false })
          })).conversation_id
          const error = yield* chat
            .complete({
              principal,
              request: request("hi", { stream: false, conversation_id: requested(own) })
            })
            .pipe(Effect.flip)
          assert.instanceOf(error, ChatError.ConversationNotFound)
          assert.strictEqual(model.calls.length, 1)
          assert.deepStrictEqual(store.created, [own])
          // Alice's conversation gained nothing.
          assert.strictEqual((yield* TestStore.transcript(store.service, "alice", own)).length, 2)
        }),
      store
    )
  })

  it.effect("a model error fails the call and stores the partial text with status error", () => {
    const model = TestModel.make(() => TestModel.failAfter(["Hel"], TestModel.overloaded))
    const store = TestStore.make()
    return withChat(
      model,
      ({ chat }) =>
        Effect.gen(function* () {
          const error = yield* chat
            .complete({ principal: alice, request: request("hi", { stream: false }) })
            .pipe(Effect.flip)
          assert.instanceOf(error, ChatError.ModelError)
          const id = store.created[0]!
          assert.deepStrictEqual(yield* TestStore.transcript(store.service, "alice", id), [
            ["user", "complete", "hi"],
            ["assistant", "error", "Hel"]
          ])
        }),
      store
    )
  })
})

describe("ChatService.toModelMessages", () => {
  const message = (
    role: "user" | "assistant",
    content: string,
    status: ConversationStore.MessageStatus = "complete"
  ): ConversationStore.Message => ({
    id: `${role}-${content}`,
    conversationId: "c",
    role,
    content,
    status,
    createdAt: new Date(0)
  })

  it("keeps complete and partial turns, oldest first", () => {
    assert.deepStrictEqual(
      ChatService.toModelMessages([
        message("user", "one"),
        message("assistant", "reply 1"),
        message("user", "two"),
        message("assistant", "repl", "partial")
      ]),
      [
        { role: "user", content: "one" },
        { role: "assistant", content: "reply 1" },
        { role: "user", content: "two" },
        { role: "assistant", content: "repl" }
      ]
    )
  })

  it("drops a trailing user message that never got a reply", () => {
    assert.deepStrictEqual(
      ChatService.toModelMessages([
        message("user", "one"),
        message("assistant", "reply 1"),
        message("user", "two")
      ]),
      [
        { role: "user", content: "one" },
        { role: "assistant", content: "reply 1" }
      ]
    )
  })

  it("drops a failed turn and a turn that produced nothing, so roles alternate", () => {
    assert.deepStrictEqual(
      ChatService.toModelMessages([
        message("user", "one"),
        message("assistant", "reply 1"),
        message("user", "two"),
        message("assistant", "half", "error"),
        message("user", "three"),
        message("assistant", "", "partial"),
        message("user", "four"),
        message("assistant", "reply 4")
      ]),
      [
        { role: "user", content: "one" },
        { role: "assistant", content: "reply 1" },
        { role: "user", content: "four" },
        { role: "assistant", content: "reply 4" }
      ]
    )
  })
})
