/**
 * The Claude model against a fake Anthropic API on loopback, driven by the
 * real SDK through `baseUrl`: streaming, the request it sends, retries before
 * the first delta, errors after it, stalls and cancellation.
 */
import { ChatError, LanguageModel } from "@convoke/core"
import { Cause, ConfigProvider, Effect, Exit, Fiber, Layer, Stream } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import * as FakeAnthropic from "../src/FakeAnthropic.ts"
import { AnthropicLanguageModel } from "../src/index.ts"

const API_KEY = "sk-ant-test-0123456789abcdefghijklmnop"

let fake: FakeAnthropic.FakeAnthropic
beforeAll(async () => {
  fake = await FakeAnthropic.start()
})
afterAll(async () => {
  await fake.close()
})
let firstRequest = 0
beforeEach(() => {
  firstRequest = fake.requests.length
})
/** Requests made by the current test. */
const received = () => fake.requests.slice(firstRequest)

const model = (options: Partial<AnthropicLanguageModel.Options> = {}) =>
  AnthropicLanguageModel.make({
    apiKey: API_KEY,
    baseUrl: fake.url,
    retry: { baseDelay: "1 millis", maxDelay: "5 millis" },
    ...options
  })

const hello: LanguageModel.ModelRequest = {
  model: "claude-sonnet-5-5",
  messages: [{ role: "user", content: "Hello" }]
}

const run = (stream: Stream.Stream<LanguageModel.ModelPart, ChatError.ModelError>) =>
  Effect.runPromise(Effect.exit(Stream.runCollect(stream)))

const text = (parts: ReadonlyArray<LanguageModel.ModelPart>) =>
  parts.flatMap((part) => (part._tag === "TextDelta" ? [part.text] : [])).join("")

const failure = (exit: Exit.Exit<unknown, ChatError.ModelError>): ChatError.ModelError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = Cause.findErrorOption(exit.cause)
  if (error._tag === "None") throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return error.value
}

const statusReply = (status: number, body: string, headers?: Record<string, string>): FakeAnthropic.Reply =>
  headers === undefined ? { status, body } : { status, body, headers }

describe("AnthropicLanguageModel", () => {
  it("streams the text deltas in order, then a Finish with stop reason and usage", async () => {
    const exit = await run(model().streamText(hello))
    expect(Exit.isSuccess(exit)).toBe(true)
    const parts = Exit.isSuccess(exit) ? exit.value : []
    expect(parts).toEqual([
      { _tag: "TextDelta", text: "Hello" },
      { _tag: "TextDelta", text: " there" },
      { _tag: "TextDelta", text: ", how can I help?" },
      { _tag: "Finish", stopReason: "end_turn", usage: { inputTokens: 25, outputTokens: 12 } }
    ])
  })

  it("sends the model, the history, the system prompt and max_tokens, with the key as a header", async () => {
    const history: LanguageModel.ModelRequest = {
      model: "claude-haiku-5-5",
      messages: [
        { role: "user", content: "My name is Ada." },
        { role: "assistant", content: "Hello Ada." },
        { role: "user", content: "What is my name?" }
      ]
    }
    await run(model({ system: "Answer in one sentence.", maxTokens: 321 }).streamText(history))
    const [request] = received()
    expect(request!.path).toBe("/v1/messages")
    expect(request!.body).toEqual({
      model: "claude-haiku-5-5",
      max_tokens: 321,
      stream: true,
      system: "Answer in one sentence.",
      messages: history.messages
    })
    const auth = request!.headers["x-api-key"] ?? request!.headers.authorization
    expect(String(auth)).toContain(API_KEY)
    expect(request!.headers["anthropic-version"]).toBeDefined()
  })

  it("reports max_tokens as the stop reason", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("max-tokens.sse") })
    const exit = await run(model().streamText(hello))
    expect(Exit.isSuccess(exit) ? exit.value.at(-1) : undefined).toEqual({
      _tag: "Finish",
      stopReason: "max_tokens",
      usage: { inputTokens: 9, outputTokens: 2 }
    })
  })

  it("retries 529 and 429 before the first delta, honouring retry-after, then streams", async () => {
    fake.enqueue(
      statusReply(529, FakeAnthropic.fixture("overloaded.json")),
      statusReply(429, FakeAnthropic.fixture("rate-limit.json"), { "retry-after": "0" })
    )
    const exit = await run(model().streamText(hello))
    expect(Exit.isSuccess(exit) ? text(exit.value) : "").toBe("Hello there, how can I help?")
    expect(received()).toHaveLength(3)
  })

  it("retries 500 and 503 as api_error before the first delta", async () => {
    const apiError = JSON.stringify({
      type: "error",
      error: { type: "api_error", message: "Internal server error" }
    })
    fake.enqueue(statusReply(500, apiError), statusReply(503, "upstream unavailable"))
    const exit = await run(model().streamText(hello))
    expect(Exit.isSuccess(exit) ? text(exit.value) : "").toBe("Hello there, how can I help?")
    expect(received()).toHaveLength(3)
  })

  it("surfaces a non-JSON 5xx as a retryable api_error once retries are spent", async () => {
    fake.enqueue(statusReply(502, "<html>bad gateway</html>"))
    const error = failure(await run(model({ retry: { maxRetries: 0 } }).streamText(hello)))
    expect(error).toMatchObject({ type: "api_error", retryable: true })
  })

  it("waits at least the retry-after the API asks for before the next attempt", async () => {
    fake.enqueue(statusReply(429, FakeAnthropic.fixture("rate-limit.json"), { "retry-after-ms": "250" }))
    const exit = await run(model().streamText(hello))
    expect(Exit.isSuccess(exit)).toBe(true)
    const [first, second] = received()
    // A lower bound only: a slow machine can make the gap longer, never shorter.
    expect(second!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(240)
  })

  it("retries an overload that arrives as the first SSE event of a 200 response", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("overloaded-first.sse") })
    const exit = await run(model().streamText(hello))
    expect(Exit.isSuccess(exit) ? text(exit.value) : "").toBe("Hello there, how can I help?")
    expect(received()).toHaveLength(2)
  })

  it("gives up after maxRetries with the API's error type, marked retryable", async () => {
    const overloaded = statusReply(529, FakeAnthropic.fixture("overloaded.json"))
    fake.enqueue(overloaded, overloaded, overloaded)
    const error = failure(
      await run(model({ retry: { maxRetries: 2, baseDelay: "1 millis" } }).streamText(hello))
    )
    expect(error).toMatchObject({
      _tag: "ModelError",
      type: "overloaded_error",
      message: "The model is overloaded; try again later",
      detail: "Overloaded",
      retryable: true
    })
    expect(received()).toHaveLength(3)
  })

  it("does not wait out a retry-after longer than maxRetryAfter: the error carries it", async () => {
    fake.enqueue(statusReply(429, FakeAnthropic.fixture("rate-limit.json"), { "retry-after": "30" }))
    const error = failure(await run(model().streamText(hello)))
    expect(error).toMatchObject({ type: "rate_limit_error", retryable: true, retryAfterSeconds: 30 })
    expect(received()).toHaveLength(1)
  })

  it("does not retry an authentication error, and never puts the key in an error", async () => {
    const echoingKey = JSON.stringify({
      type: "error",
      error: { type: "authentication_error", message: `invalid x-api-key ${API_KEY}` }
    })
    fake.enqueue(statusReply(401, echoingKey))
    const error = failure(await run(model().streamText(hello)))
    expect(error.type).toBe("authentication_error")
    expect(error.retryable).toBe(false)
    expect(received()).toHaveLength(1)
    expect(JSON.stringify(error)).not.toContain(API_KEY)
    expect(String(error)).not.toContain(API_KEY)
    expect(error.message).toBe("The server could not authenticate with the model API")
    expect(error.detail).toContain("[redacted]")
  })

  it("ends with the SSE error after the first delta, without retrying", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("error-mid-stream.sse") })
    const parts: Array<LanguageModel.ModelPart> = []
    const exit = await run(
      model()
        .streamText(hello)
        .pipe(Stream.tap((part) => Effect.sync(() => parts.push(part))))
    )
    expect(text(parts)).toBe("The first half")
    expect(failure(exit)).toMatchObject({
      type: "overloaded_error",
      message: "The model is overloaded; try again later",
      detail: "Overloaded",
      retryable: true
    })
    expect(received()).toHaveLength(1)
  })

  it("fails with api_error when the stream ends before message_stop", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("hello.sse").slice(0, 5) })
    const exit = await run(model().streamText(hello))
    expect(failure(exit)).toMatchObject({ type: "api_error" })
  })

  it("ends a stalled stream with timeout_error and closes the connection", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("hello.sse").slice(0, 4), afterwards: "stall" })
    const exit = await run(model({ idleTimeout: "300 millis" }).streamText(hello))
    expect(failure(exit)).toMatchObject({ type: "timeout_error", retryable: true })
    expect(received()).toHaveLength(1)
    await received()[0]!.connectionClosed
  })

  it("ends with timeout_error when the API never answers, and closes the connection", async () => {
    fake.enqueue({ hang: true })
    const exit = await run(model({ idleTimeout: "300 millis", retry: { maxRetries: 0 } }).streamText(hello))
    expect(failure(exit)).toMatchObject({ type: "timeout_error" })
    await received()[0]!.connectionClosed
  })

  it("counts pings as signs of life: a slow model that pings is not a stall", async () => {
    const [start, blockStart, ping, ...rest] = FakeAnthropic.frames("hello.sse")
    // 1.5 s of pings, 100 ms apart, against an idle timeout of 1 s.
    const pings = Array.from({ length: 15 }, () => ping!)
    fake.enqueue({ frames: [start!, blockStart!, ...pings, ...rest], frameDelayMs: 100 })
    const exit = await run(model({ idleTimeout: "1 second" }).streamText(hello))
    expect(Exit.isSuccess(exit) ? text(exit.value) : Cause.pretty((exit as any).cause)).toBe(
      "Hello there, how can I help?"
    )
  })

  it("aborts the upstream request when the stream is interrupted", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("hello.sse").slice(0, 4), afterwards: "stall" })
    const parts: Array<LanguageModel.ModelPart> = []
    let firstDelta!: () => void
    const gotFirstDelta = new Promise<void>((resolve) => {
      firstDelta = resolve
    })
    const fiber = Effect.runFork(
      model()
        .streamText(hello)
        .pipe(
          Stream.tap((part) =>
            Effect.sync(() => {
              parts.push(part)
              firstDelta()
            })
          ),
          Stream.runDrain
        )
    )
    await gotFirstDelta
    const request = received()[0]!
    let closed = false
    void request.connectionClosed.then(() => {
      closed = true
    })
    expect(closed).toBe(false)
    await Effect.runPromise(Fiber.interrupt(fiber))
    await request.connectionClosed
    expect(text(parts)).toBe("Hello")
  })

  it("fails with invalid_request_error when there is no user message", async () => {
    const exit = await run(model().streamText({ model: "claude-sonnet-5-5", messages: [] }))
    expect(failure(exit)).toMatchObject({ type: "invalid_request_error", retryable: false })
    expect(received()).toHaveLength(0)
  })
})

describe("layerConfig", () => {
  it("reads the key, base URL, model, max tokens and system prompt from the configuration", async () => {
    const provider = ConfigProvider.fromEnvRecord({
      ANTHROPIC_API_KEY: API_KEY,
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_MODEL: "claude-opus-5-5",
      ANTHROPIC_MAX_TOKENS: "77",
      ANTHROPIC_SYSTEM_PROMPT: "Be brief."
    })
    const program = Effect.gen(function* () {
      const languageModel = yield* LanguageModel.LanguageModel
      const provider = yield* languageModel.resolveModel(undefined)
      yield* Stream.runDrain(languageModel.streamText({ ...hello, model: provider }))
      return languageModel.name
    })
    const name = await Effect.runPromise(
      program.pipe(
        Effect.provide(
          AnthropicLanguageModel.layerConfig({ maxTokens: 1000 }).pipe(
            Layer.provide(ConfigProvider.layer(provider))
          )
        )
      )
    )
    expect(name).toBe("anthropic")
    expect(received()[0]!.body).toMatchObject({
      model: "claude-opus-5-5",
      max_tokens: 77,
      system: "Be brief."
    })
  })

  it("fails to build without ANTHROPIC_API_KEY", async () => {
    const exit = await Effect.runPromise(
      Effect.exit(
        Layer.build(AnthropicLanguageModel.layerConfig()).pipe(
          Effect.scoped,
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnvRecord({})))
        )
      )
    )
    expect(Exit.isFailure(exit)).toBe(true)
  })
})

describe("resolveModel", () => {
  const resolve = (requested: string | undefined, options: Partial<AnthropicLanguageModel.Options> = {}) =>
    Effect.runPromise(Effect.exit(model(options).resolveModel(requested)))

  it("maps no model and the retiring claude-sonnet-4-5 to the current default", async () => {
    expect(await resolve(undefined)).toEqual(Exit.succeed("claude-sonnet-5-5"))
    expect(await resolve("claude-sonnet-4-5")).toEqual(Exit.succeed("claude-sonnet-5-5"))
    expect(await resolve("claude-sonnet-5-5")).toEqual(Exit.succeed("claude-sonnet-5-5"))
  })

  it("rejects an unknown model with InvalidRequest naming the accepted ones", async () => {
    const exit = await resolve("gpt-4")
    expect(Exit.isFailure(exit)).toBe(true)
    const error = failureOf(exit)
    expect(error).toBeInstanceOf(ChatError.InvalidRequest)
    expect(error.message).toContain("claude-sonnet-4-5")
    expect(Exit.isFailure(await resolve("constructor"))).toBe(true)
    expect(await resolve("")).toEqual(Exit.succeed("claude-sonnet-5-5"))
  })

  it("follows the configured mapping", async () => {
    const options = { model: "claude-opus-5-5", models: { fast: "claude-haiku-5-5" } }
    expect(await resolve(undefined, options)).toEqual(Exit.succeed("claude-opus-5-5"))
    expect(await resolve("claude-sonnet-4-5", options)).toEqual(Exit.succeed("claude-opus-5-5"))
    expect(await resolve("fast", options)).toEqual(Exit.succeed("claude-haiku-5-5"))
    expect(Exit.isFailure(await resolve("claude-sonnet-5-5", options))).toBe(true)
  })
})

const failureOf = <E>(exit: Exit.Exit<unknown, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = Cause.findErrorOption(exit.cause)
  if (error._tag === "None") throw new Error("expected a typed failure")
  return error.value
}
