import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer } from "effect"
import { ChatConfig, ChatExtension, type ChatHooks, ChatHttp, Identity, TurnLog } from "../src/index.ts"
import * as Sse from "../src/testing/Sse.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const BASE = "http://localhost/api/v0.3"

/** An app whose model replies are driven by the test, one `Controlled` per model call. */
const setup = async (
  options: {
    readonly config?: Partial<ChatConfig.Settings>
    readonly turnLog?: TurnLog.Options
    /** Another layer of the log in place of the plain in-memory one. */
    readonly turnLogLayer?: Layer.Layer<TurnLog.TurnLog>
    /** An extension merged into the app (hooks that hold a turn back, say). */
    readonly extension?: Layer.Layer<never>
  } = {}
) => {
  const store = TestStore.make()
  // Made up front, so the test can speak for the model before it is called.
  const replies = Array.from({ length: 4 }, TestModel.controlled)
  const model = TestModel.make((_request, call) => replies[call - 1]!.stream)
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      store.layer,
      model.layer,
      Identity.layerApiKeys(
        [
          { key: "k1", userId: "alice" },
          { key: "k2", userId: "bob" }
          // Short keys keep these tests readable: key strength is Identity.test's.
        ],
        { minKeyLength: 0 }
      ),
      Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make(options.config)),
      options.extension ?? Layer.empty
    ),
    { turnLog: options.turnLogLayer ?? TurnLog.layerMemory(options.turnLog) }
  )
  return { app, store, model, replies }
}

const auth = (key: string) => ({ authorization: `Bearer ${key}` })

const startChat = async (app: ChatHttp.App, body: Record<string, unknown> = {}, key = "k1") => {
  const response = await app.handler(
    new Request(`${BASE}/chat`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth(key) },
      body: JSON.stringify({ message: "hello", stream: true, ...body })
    })
  )
  assert.strictEqual(response.status, 200)
  const reader = Sse.reader(response.body!)
  const metadata = Sse.data((await reader.next())!)
  return { reader, metadata }
}

const resume = (
  app: ChatHttp.App,
  conversationId: string,
  options: { readonly lastEventId?: string; readonly query?: string; readonly key?: string } = {}
) =>
  app.handler(
    new Request(`${BASE}/conversations/${conversationId}/stream${options.query ?? ""}`, {
      headers: {
        ...auth(options.key ?? "k1"),
        ...(options.lastEventId === undefined ? {} : { "last-event-id": options.lastEventId })
      }
    })
  )

const stop = (app: ChatHttp.App, conversationId: string, key = "k1") =>
  app.handler(
    new Request(`${BASE}/conversations/${conversationId}/stop`, { method: "POST", headers: auth(key) })
  )

/** Reads the rest of a stream's frames, to its end. */
const rest = async (reader: ReturnType<typeof Sse.reader>) => {
  const frames: Array<string> = []
  for (let frame = await reader.next(); frame !== undefined; frame = await reader.next()) frames.push(frame)
  return frames
}

/** Reads frames until one whose data satisfies `until`. */
const readUntil = async (reader: ReturnType<typeof Sse.reader>, until: (frame: string) => boolean) => {
  const frames: Array<string> = []
  for (;;) {
    const frame = await reader.next()
    assert.isDefined(frame, "the stream ended early")
    frames.push(frame!)
    if (until(frame!)) return frames
  }
}

const contentOf = (frames: ReadonlyArray<string>) =>
  frames
    .map((frame) => Sse.data(Sse.withoutId(frame) === "data: [DONE]" ? 'data: {"type":"done"}' : frame))
    .filter((event) => event.type === "content")
    .map((event) => event.delta.content)
    .join("")

const run = <A>(effect: Effect.Effect<A>) => Effect.runPromise(effect)

describe("resuming a turn (GET /api/v0.3/conversations/:id/stream)", () => {
  it("a reader that left comes back with its last event id and gets exactly the rest, once, to [DONE]", async () => {
    const { app, store, replies } = await setup()
    try {
      const { reader, metadata } = await startChat(app)
      const turn = metadata.turn_id
      replies[0]!.say("one ")
      replies[0]!.say("two ")
      const seen = [(await reader.next())!, (await reader.next())!]
      assert.deepStrictEqual(seen.map(Sse.id), [`${turn}:1`, `${turn}:2`])
      await reader.cancel()
      // The turn goes on while nobody reads.
      replies[0]!.say("three ")
      const response = await resume(app, metadata.conversation_id, { lastEventId: `${turn}:2` })
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers.get("content-type"), "text/event-stream; charset=utf-8")
      const again = Sse.reader(response.body!)
      const first = (await again.next())!
      assert.strictEqual(first, `data: ${JSON.stringify({ ...metadata, resumed: true })}`)
      assert.strictEqual(
        (await again.next())!,
        `id: ${turn}:3\ndata: {"type":"content","delta":{"content":"three "}}`
      )
      replies[0]!.say("four")
      replies[0]!.finish()
      const tail = await rest(again)
      assert.deepStrictEqual(tail, [
        `id: ${turn}:4\ndata: {"type":"content","delta":{"content":"four"}}`,
        `id: ${turn}:5\ndata: [DONE]`
      ])
      const stored = await run(Deferred.await(store.assistantStored))
      assert.strictEqual(stored.status, "complete")
      assert.strictEqual(stored.content, `${contentOf(seen)}three ${contentOf(tail)}`)
    } finally {
      await app.dispose()
    }
  })

  it("without Last-Event-ID replays the turn from the start; ?last_event_id= works like the header", async () => {
    const { app, replies } = await setup()
    try {
      const { reader, metadata } = await startChat(app)
      const turn = metadata.turn_id
      replies[0]!.say("a")
      replies[0]!.say("b")
      replies[0]!.finish()
      const original = await rest(reader)
      const fromStart = await rest(Sse.reader((await resume(app, metadata.conversation_id)).body!))
      assert.strictEqual(Sse.data(fromStart[0]!).resumed, true)
      assert.deepStrictEqual(fromStart.slice(1), original)
      const fromQuery = await rest(
        Sse.reader((await resume(app, metadata.conversation_id, { query: `?last_event_id=${turn}:1` })).body!)
      )
      assert.deepStrictEqual(fromQuery.slice(1), original.slice(1))
    } finally {
      await app.dispose()
    }
  })

  it("204 when nothing is left to replay: another turn's id, a finished turn read to its end, the window over", async () => {
    const { app, replies } = await setup({ turnLog: { retention: Duration.zero } })
    try {
      const { reader, metadata } = await startChat(app)
      replies[0]!.say("a")
      const other = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b:1"
      assert.strictEqual((await resume(app, metadata.conversation_id, { lastEventId: other })).status, 204)
      replies[0]!.finish()
      await rest(reader)
      // Ended, and kept for no time at all.
      const after = await resume(app, metadata.conversation_id, { lastEventId: `${metadata.turn_id}:1` })
      assert.strictEqual(after.status, 204)
      assert.strictEqual(await after.text(), "")
    } finally {
      await app.dispose()
    }
  })

  it("a malformed Last-Event-ID is a 400 with the common body", async () => {
    const { app } = await setup()
    try {
      const { metadata } = await startChat(app)
      for (const bad of ["nonsense", `${metadata.turn_id}:x`, `${metadata.turn_id}:-1`, ":1"]) {
        const response = await resume(app, metadata.conversation_id, { lastEventId: bad })
        assert.strictEqual(response.status, 400, bad)
        assert.strictEqual((await response.json()).error.type, "invalid_request")
      }
    } finally {
      await app.dispose()
    }
  })

  it("another user's conversation answers exactly like a missing one (404)", async () => {
    const { app } = await setup()
    try {
      const { metadata } = await startChat(app)
      const theirs = await resume(app, metadata.conversation_id, { key: "k2" })
      const missing = await resume(app, "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d", { key: "k2" })
      const malformed = await resume(app, "not-a-uuid", { key: "k2" })
      assert.strictEqual(theirs.status, 404)
      const body = await theirs.text()
      assert.strictEqual(body, await missing.text())
      assert.strictEqual(body, await malformed.text())
      assert.strictEqual(missing.status, 404)
      const stopTheirs = await stop(app, metadata.conversation_id, "k2")
      assert.strictEqual(stopTheirs.status, 404)
      assert.strictEqual(await stopTheirs.text(), body)
      const unauthenticated = await app.handler(
        new Request(`${BASE}/conversations/${metadata.conversation_id}/stream`)
      )
      assert.strictEqual(unauthenticated.status, 401)
    } finally {
      await app.dispose()
    }
  })

  it("the conversation shows its running turn and the reply so far as a streaming message", async () => {
    const { app, replies } = await setup()
    try {
      const { reader, metadata } = await startChat(app)
      replies[0]!.say("so far")
      await reader.next()
      const show = () =>
        app.handler(new Request(`${BASE}/conversations/${metadata.conversation_id}`, { headers: auth("k1") }))
      const running = await (await show()).json()
      assert.strictEqual(running.running_turn.turn_id, metadata.turn_id)
      assert.deepStrictEqual(
        running.messages.map((message: { role: string; status: string; content: string }) => [
          message.role,
          message.status,
          message.content
        ]),
        [
          ["user", "complete", "hello"],
          ["assistant", "streaming", "so far"]
        ]
      )
      replies[0]!.finish()
      await rest(reader)
      const ended = await (await show()).json()
      assert.isNull(ended.running_turn)
      assert.deepStrictEqual(ended.messages.at(-1).status, "complete")
      assert.strictEqual(ended.messages.at(-1).id, running.messages.at(-1).id)
    } finally {
      await app.dispose()
    }
  })
})

describe("stopping a turn (POST /api/v0.3/conversations/:id/stop)", () => {
  it("ends the running turn: 202 with its id, every reader gets cancelled and [DONE], the reply is stored cancelled", async () => {
    const { app, store, model, replies } = await setup()
    try {
      const { reader, metadata } = await startChat(app)
      replies[0]!.say("partial")
      await reader.next()
      const second = Sse.reader((await resume(app, metadata.conversation_id)).body!)
      await readUntil(second, (frame) => Sse.id(frame) === `${metadata.turn_id}:1`)
      const response = await stop(app, metadata.conversation_id)
      assert.strictEqual(response.status, 202)
      assert.deepStrictEqual(await response.json(), { turn_id: metadata.turn_id })
      await run(Deferred.await(model.interrupted))
      for (const frames of [await rest(reader), await rest(second)]) {
        assert.deepStrictEqual(frames.map(Sse.id), [`${metadata.turn_id}:2`, `${metadata.turn_id}:3`])
        assert.strictEqual(Sse.data(frames[0]!).error.type, "cancelled")
        assert.strictEqual(Sse.withoutId(frames[1]!), "data: [DONE]")
      }
      const stored = await run(Deferred.await(store.assistantStored))
      assert.strictEqual(stored.status, "cancelled")
      assert.strictEqual(stored.content, "partial")
      // Nothing runs any more.
      const again = await stop(app, metadata.conversation_id)
      assert.strictEqual(again.status, 204)
      assert.strictEqual(await again.text(), "")
    } finally {
      await app.dispose()
    }
  })
})

describe("a stop that comes as the turn begins", () => {
  /** The in-memory log, where a stop is asked for the moment each turn is logged: before its fiber has run. */
  const stoppedAtOnce = Layer.effect(
    TurnLog.TurnLog,
    Effect.gen(function* () {
      const log = yield* TurnLog.TurnLog
      return {
        ...log,
        begin: (turn: TurnLog.TurnInfo) => Effect.tap(log.begin(turn), () => log.requestStop(turn.turnId))
      }
    })
  ).pipe(Layer.provide(TurnLog.layerMemory()))

  it("ends the turn all the same: cancelled then [DONE], the model stopped, the reply stored cancelled", async () => {
    const { app, store, model } = await setup({ turnLogLayer: stoppedAtOnce })
    try {
      const { reader, metadata } = await startChat(app)
      const frames = await rest(reader)
      assert.deepStrictEqual(frames.map(Sse.id), [`${metadata.turn_id}:1`, `${metadata.turn_id}:2`])
      assert.strictEqual(Sse.data(frames[0]!).error.type, "cancelled")
      assert.strictEqual(Sse.withoutId(frames[1]!), "data: [DONE]")
      await run(Deferred.await(model.interrupted))
      assert.strictEqual((await run(Deferred.await(store.assistantStored))).status, "cancelled")
      // Nothing runs any more.
      assert.strictEqual((await stop(app, metadata.conversation_id)).status, 204)
    } finally {
      await app.dispose()
    }
  })
})

describe("the disconnect grace window", () => {
  it("a reader back within the window gets the whole reply", async () => {
    const { app, store, model, replies } = await setup({ config: { disconnectGrace: Duration.minutes(5) } })
    try {
      const { reader, metadata } = await startChat(app)
      replies[0]!.say("kept ")
      await reader.next()
      await reader.cancel()
      replies[0]!.say("going")
      replies[0]!.finish()
      const frames = await rest(Sse.reader((await resume(app, metadata.conversation_id)).body!))
      assert.strictEqual(contentOf(frames.slice(1)), "kept going")
      assert.strictEqual((await run(Deferred.await(store.assistantStored))).status, "complete")
      assert.isFalse(await run(Deferred.isDone(model.interrupted)))
    } finally {
      await app.dispose()
    }
  })

  /**
   * Holds every new turn after its metadata event went out, before it starts,
   * until `release`; `hooks`: the extension's other hooks.
   */
  const heldAfterMetadata = (hooks: Partial<ChatHooks.Service> = {}) => {
    const release = Deferred.makeUnsafe<void>()
    const extension = ChatExtension.layer({
      hooks: { ...hooks, metadataSent: () => Deferred.await(release) }
    })
    return { extension, release: () => run(Deferred.succeed(release, undefined)) }
  }

  it("a client holding the metadata event finds the turn before it started: resume follows it", async () => {
    const held = heldAfterMetadata()
    const { app, replies } = await setup({ extension: held.extension })
    try {
      const { reader, metadata } = await startChat(app)
      const response = await resume(app, metadata.conversation_id)
      assert.strictEqual(response.status, 200)
      const again = Sse.reader(response.body!)
      assert.strictEqual(await again.next(), `data: ${JSON.stringify({ ...metadata, resumed: true })}`)
      await held.release()
      replies[0]!.say("both ")
      replies[0]!.say("read")
      replies[0]!.finish()
      assert.strictEqual(contentOf(await rest(again)), "both read")
      assert.strictEqual(contentOf(await rest(reader)), "both read")
    } finally {
      await app.dispose()
    }
  })

  it("a stop before the turn started ends it: 202 with its id, then cancelled and [DONE], stored cancelled", async () => {
    const held = heldAfterMetadata()
    const { app, store } = await setup({ extension: held.extension })
    try {
      const { reader, metadata } = await startChat(app)
      const stopped = await stop(app, metadata.conversation_id)
      assert.strictEqual(stopped.status, 202)
      assert.deepStrictEqual(await stopped.json(), { turn_id: metadata.turn_id })
      await held.release()
      const frames = await rest(reader)
      assert.strictEqual(Sse.data(frames.at(-2)!).error.type, "cancelled")
      assert.strictEqual(Sse.withoutId(frames.at(-1)!), "data: [DONE]")
      assert.strictEqual((await run(Deferred.await(store.assistantStored))).status, "cancelled")
    } finally {
      await app.dispose()
    }
  })

  it("a shutdown before the turn started ends it as one: shutdown error and [DONE], reported ended", async () => {
    const ended = Deferred.makeUnsafe<string>()
    const held = heldAfterMetadata({
      turnEnded: (event) => Deferred.succeed(ended, event.outcome).pipe(Effect.asVoid)
    })
    const { app, model, store } = await setup({ extension: held.extension })
    try {
      const { reader } = await startChat(app)
      await app.shutdown()
      await held.release()
      const frames = await rest(reader)
      assert.strictEqual(Sse.data(frames.at(-2)!).error.type, "shutdown")
      assert.strictEqual(Sse.withoutId(frames.at(-1)!), "data: [DONE]")
      // Every stream that sent its metadata event reports its end (`streams_active` counts on it).
      assert.strictEqual(await run(Deferred.await(ended)), "shutdown")
      assert.strictEqual(model.calls.length, 0)
      // The conversation says what became of the turn, as for one the shutdown cut short.
      const stored = await run(Deferred.await(store.assistantStored))
      assert.deepStrictEqual([stored.status, stored.content], ["interrupted", ""])
    } finally {
      await app.dispose()
    }
  })

  it("a reader that leaves right after the metadata event still has a reply to come back to", async () => {
    const { app, store, model, replies } = await setup({ config: { disconnectGrace: Duration.minutes(5) } })
    try {
      // Gone before the turn started: the client holds the conversation and turn ids all the same.
      const { reader, metadata } = await startChat(app)
      await reader.cancel()
      replies[0]!.say("still ")
      replies[0]!.say("here")
      replies[0]!.finish()
      const response = await resume(app, metadata.conversation_id)
      assert.strictEqual(response.status, 200)
      const frames = await rest(Sse.reader(response.body!))
      assert.strictEqual(frames[0], `data: ${JSON.stringify({ ...metadata, resumed: true })}`)
      assert.strictEqual(contentOf(frames.slice(1)), "still here")
      const stored = await run(Deferred.await(store.assistantStored))
      assert.deepStrictEqual([stored.status, stored.content], ["complete", "still here"])
      assert.isFalse(await run(Deferred.isDone(model.interrupted)))
    } finally {
      await app.dispose()
    }
  })

  it("a turn whose reader left before it started is cancelled too when no reader comes back", async () => {
    const { app, store, model, replies } = await setup({ config: { disconnectGrace: Duration.millis(50) } })
    try {
      const { reader } = await startChat(app)
      await reader.cancel()
      replies[0]!.say("unread")
      await run(Deferred.await(model.interrupted))
      const stored = await run(Deferred.await(store.assistantStored))
      assert.strictEqual(stored.status, "cancelled")
    } finally {
      await app.dispose()
    }
  })

  it("with no reader back in time the turn is cancelled: the model is stopped and the reply stored cancelled", async () => {
    const { app, store, model, replies } = await setup({ config: { disconnectGrace: Duration.millis(50) } })
    try {
      const { reader, metadata } = await startChat(app)
      replies[0]!.say("left behind")
      await reader.next()
      await reader.cancel()
      await run(Deferred.await(model.interrupted))
      const stored = await run(Deferred.await(store.assistantStored))
      assert.strictEqual(stored.status, "cancelled")
      assert.strictEqual(stored.content, "left behind")
      // A late reader still reads how it ended, within the retention window.
      const frames = await rest(Sse.reader((await resume(app, metadata.conversation_id)).body!))
      assert.strictEqual(Sse.data(frames.at(-2)!).error.type, "cancelled")
      assert.strictEqual(Sse.withoutId(frames.at(-1)!), "data: [DONE]")
    } finally {
      await app.dispose()
    }
  })
})
