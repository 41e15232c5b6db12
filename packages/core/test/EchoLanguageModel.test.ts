import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import { ChatError, EchoLanguageModel, type LanguageModel } from "../src/index.ts"

const texts = (parts: ReadonlyArray<LanguageModel.ModelPart>) =>
  parts.flatMap((part) => (part._tag === "TextDelta" ? [part.text] : []))

describe("EchoLanguageModel", () => {
  it.effect("echoes the last message word by word, numbered by user turn, then finishes", () =>
    Effect.gen(function* () {
      const model = EchoLanguageModel.make({ delay: 0 })
      const parts = yield* Stream.runCollect(
        model.streamText({
          model: "echo",
          messages: [
            { role: "user", content: "one" },
            { role: "assistant", content: "Echo #1: one" },
            { role: "user", content: "Hello  there\nfriend" }
          ]
        })
      )
      assert.deepStrictEqual(texts(parts), ["Echo #2:", " Hello", "  there", "\nfriend"])
      assert.deepStrictEqual(parts.at(-1), {
        _tag: "Finish",
        stopReason: "end_turn",
        usage: { inputTokens: 0, outputTokens: 4 }
      })
    })
  )

  it.live("gives the same parts each time its stream is run, with a delay or without", () =>
    Effect.gen(function* () {
      for (const delay of [0, "1 millis"] as const) {
        const stream = EchoLanguageModel.make({ delay }).streamText({
          model: "echo",
          messages: [{ role: "user", content: "once more" }]
        })
        const first = yield* Stream.runCollect(stream)
        const second = yield* Stream.runCollect(stream)
        assert.deepStrictEqual(texts(first), ["Echo #1:", " once", " more"])
        assert.deepStrictEqual(second, first)
      }
    })
  )

  it.effect("echoes a message of blanks as it is", () =>
    Effect.gen(function* () {
      const parts = yield* Stream.runCollect(
        EchoLanguageModel.make({ delay: 0 }).streamText({
          model: "echo",
          messages: [{ role: "user", content: "  " }]
        })
      )
      assert.deepStrictEqual(texts(parts), ["Echo #1:", "   "])
      assert.deepStrictEqual(parts.at(-1), {
        _tag: "Finish",
        stopReason: "end_turn",
        usage: { inputTokens: 0, outputTokens: 2 }
      })
    })
  )

  it.effect("waits the configured delay before each word (virtual time)", () =>
    Effect.gen(function* () {
      const model = EchoLanguageModel.make({ delay: "1 second" })
      const received: Array<string> = []
      const fiber = yield* model
        .streamText({ model: "echo", messages: [{ role: "user", content: "a b" }] })
        .pipe(
          Stream.runForEach((part) =>
            Effect.sync(() => part._tag === "TextDelta" && received.push(part.text))
          ),
          Effect.forkChild
        )
      yield* Effect.yieldNow
      assert.deepStrictEqual(received, [])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(received, ["Echo #1:"])
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(received, ["Echo #1:", " a", " b"])
    })
  )

  it.effect("accepts any model by default, and only the allowed ones when configured", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* EchoLanguageModel.make().resolveModel("anything"), "echo")
      assert.strictEqual(yield* EchoLanguageModel.make().resolveModel(undefined), "echo")
      const strict = EchoLanguageModel.make({ models: ["claude-sonnet-4-5"] })
      assert.strictEqual(yield* strict.resolveModel("claude-sonnet-4-5"), "echo")
      assert.strictEqual(yield* strict.resolveModel(undefined), "echo")
      const error = yield* Effect.flip(strict.resolveModel("gpt-0"))
      assert.instanceOf(error, ChatError.InvalidRequest)
      assert.include(error.message, "gpt-0")
    })
  )
})
