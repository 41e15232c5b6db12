/**
 * Claude as Convoke's `LanguageModel`, on the official `@anthropic-ai/sdk`
 * Messages streaming API.
 *
 * - `resolveModel` maps the request's `model` through the allow-list in
 *   `AnthropicModels` (unknown → `InvalidRequest`, a 400 before the stream).
 * - `streamText` sends the history (shaped and bounded by `AnthropicHistory`)
 *   with the system prompt and `max_tokens`, and streams `TextDelta`s and a
 *   final `Finish` with the stop reason and token usage.
 * - Interrupting the stream aborts the HTTP request at once: the upstream
 *   connection is closed, the model stops generating (and billing).
 * - Overloaded, rate-limited and 5xx failures before the first delta are
 *   retried with backoff, honouring `retry-after`; after the first delta a
 *   failure — an HTTP error, a dropped connection, an SSE `event: error` —
 *   ends the stream with a `ModelError`, which core turns into an error event
 *   and stores the partial reply with status `error`.
 * - A stall — no event, pings included, for `idleTimeout` — ends the stream
 *   with a `timeout_error`.
 * - The API key is held as `Redacted` and never appears in errors or logs.
 * - An error the API sends reaches the client as its type and a fixed
 *   message; the API's own text is logged (a warning), never sent on.
 *
 * @since 0.1.0
 */
import Anthropic, { type ClientOptions } from "@anthropic-ai/sdk"
import { Stream as SdkStream, type ServerSentEvent } from "@anthropic-ai/sdk/core/streaming"
import type {
  MessageCreateParamsStreaming,
  RawMessageStreamEvent
} from "@anthropic-ai/sdk/resources/messages"
import { type ChatError, LanguageModel } from "@convoke/core"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as AnthropicError from "./AnthropicError.ts"
import * as AnthropicHistory from "./AnthropicHistory.ts"
import * as AnthropicModels from "./AnthropicModels.ts"

/** Retries before the first delta. */
export interface RetryOptions {
  /** Retries after the first attempt (default 2, as the SDK). `0` turns retries off. */
  readonly maxRetries?: number | undefined
  /** First backoff delay, doubled on each retry, with jitter (default 500 ms). */
  readonly baseDelay?: Duration.Input | undefined
  /** Longest backoff delay (default 8 s). */
  readonly maxDelay?: Duration.Input | undefined
  /**
   * Longest `retry-after` the model waits for (default 20 s). When the API
   * asks for a longer pause the error surfaces at once, with its
   * `retryAfterSeconds`, so the client can decide.
   */
  readonly maxRetryAfter?: Duration.Input | undefined
}

/** Options of the Claude model. */
export interface Options {
  /** The Anthropic API key; kept `Redacted`. */
  readonly apiKey: Redacted.Redacted<string> | string
  /** API base URL, for gateways and tests (default `https://api.anthropic.com`). */
  readonly baseUrl?: string | undefined
  /** Provider model for requests that name none (default `AnthropicModels.defaultModel`). */
  readonly model?: string | undefined
  /** Extra request aliases → provider models, merged over the defaults. */
  readonly models?: Readonly<Record<string, string>> | undefined
  /** `max_tokens` of each reply (default 4096). */
  readonly maxTokens?: number | undefined
  /** System prompt sent with every request (default none). */
  readonly system?: string | undefined
  /**
   * Longest silence from the API — no response headers, no event, not even a
   * `ping` — before the stream ends with a `timeout_error` (default 60 s).
   */
  readonly idleTimeout?: Duration.Input | undefined
  /** Retries before the first delta. */
  readonly retry?: RetryOptions | undefined
  /** How much history one request carries (default `AnthropicHistory.defaultBudget`). */
  readonly history?: Partial<AnthropicHistory.Budget> | undefined
  /**
   * Further SDK client options (`defaultHeaders`, `fetch`, `fetchOptions`, …).
   * Credentials, base URL, retries and timeout are set by the options above.
   */
  readonly client?:
    | Omit<ClientOptions, "apiKey" | "authToken" | "baseURL" | "maxRetries" | "timeout">
    | undefined
}

const defaults = {
  maxTokens: 4096,
  idleTimeout: Duration.seconds(60),
  maxRetries: 2,
  baseDelay: Duration.millis(500),
  maxDelay: Duration.seconds(8),
  maxRetryAfter: Duration.seconds(20)
}

/** Builds the Claude model service. */
export const make = (options: Options): LanguageModel.Service => {
  const apiKey = Redacted.isRedacted(options.apiKey)
    ? (options.apiKey as Redacted.Redacted<string>)
    : Redacted.make(options.apiKey as string)
  const secret = Redacted.value(apiKey)
  const models = AnthropicModels.make({ model: options.model, models: options.models })
  const maxTokens = options.maxTokens ?? defaults.maxTokens
  const idleTimeout = Duration.fromInputUnsafe(options.idleTimeout ?? defaults.idleTimeout)
  const idleMillis = Duration.toMillis(idleTimeout)
  const budget = { ...AnthropicHistory.defaultBudget, ...options.history }
  const retry = {
    maxRetries: options.retry?.maxRetries ?? defaults.maxRetries,
    baseDelay: Duration.fromInputUnsafe(options.retry?.baseDelay ?? defaults.baseDelay),
    maxDelay: Duration.fromInputUnsafe(options.retry?.maxDelay ?? defaults.maxDelay),
    maxRetryAfter: Duration.fromInputUnsafe(options.retry?.maxRetryAfter ?? defaults.maxRetryAfter)
  }

  const client = new Anthropic({
    ...options.client,
    // A function, so the key is read per request and never stored as a plain
    // option on the client object.
    apiKey: async () => Redacted.value(apiKey),
    baseURL: options.baseUrl ?? null,
    // Retries are Effect's (below), not the SDK's: the SDK retries only an
    // HTTP error status, while an overload can also arrive as the first SSE
    // event of a 200 response (`event: error` before any text), which is just
    // as safe to retry; its backoff (0.5 s doubling to 8 s) cannot be tuned,
    // and it would wait out any `retry-after`, however long, while a user
    // watches a silent stream.
    maxRetries: 0,
    // Bounds the wait for response headers; the stream's idle timeout bounds
    // every wait after that (and this one too). Timers cannot exceed 2^31-1 ms.
    timeout: Math.min(2 ** 31 - 1, Math.max(1, Math.ceil(idleMillis)))
  })

  const stall = () => Stream.fail(AnthropicError.stalled(idleMillis))

  /**
   * One HTTP request: the raw SSE events of its response. The request is
   * aborted when the stream ends for any reason, so an interrupted or failed
   * stream closes the upstream connection. Raw events (not the SDK's parsed
   * iterator) because the parsed iterator swallows `ping`, and pings are what
   * tell a slow model from a stalled connection.
   */
  const events = (
    params: MessageCreateParamsStreaming
  ): Stream.Stream<ServerSentEvent, ChatError.ModelError> =>
    Stream.unwrap(
      Effect.gen(function* () {
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort())
        )
        const response = yield* Effect.tryPromise({
          try: () => client.messages.create(params, { signal: controller.signal }).asResponse(),
          catch: (error) => AnthropicError.fromUnknown(error, secret)
        })
        return Stream.fromAsyncIterable(SdkStream.rawEvents(response, controller), (error) =>
          AnthropicError.fromUnknown(error, secret)
        )
      })
    ).pipe(Stream.timeoutOrElse({ duration: idleTimeout, orElse: stall }))

  /** Turns raw events into model parts; fails on `event: error` and on a stream cut before `message_stop`. */
  const decode = (source: Stream.Stream<ServerSentEvent, ChatError.ModelError>) =>
    Stream.suspend(() => {
      let stopReason: string | undefined
      let inputTokens = 0
      let outputTokens = 0
      let stopped = false
      const parts = source.pipe(
        Stream.mapEffect((sse): Effect.Effect<Array<LanguageModel.ModelPart>, ChatError.ModelError> => {
          if (sse.event === "error") return Effect.fail(AnthropicError.fromEventData(sse.data, secret))
          if (sse.event === null || sse.event === "ping" || sse.data === "") return Effect.succeed([])
          let event: RawMessageStreamEvent
          try {
            event = JSON.parse(sse.data)
          } catch {
            return Effect.fail(AnthropicError.make("api_error", "The model sent an unreadable event"))
          }
          switch (event.type) {
            case "message_start":
              inputTokens = event.message.usage.input_tokens ?? 0
              outputTokens = event.message.usage.output_tokens ?? 0
              return Effect.succeed([])
            case "content_block_start":
              return Effect.succeed(
                event.content_block.type === "text" && event.content_block.text !== ""
                  ? [{ _tag: "TextDelta", text: event.content_block.text }]
                  : []
              )
            case "content_block_delta":
              return Effect.succeed(
                event.delta.type === "text_delta" && event.delta.text !== ""
                  ? [{ _tag: "TextDelta", text: event.delta.text }]
                  : []
              )
            case "message_delta":
              stopReason = event.delta.stop_reason ?? stopReason
              outputTokens = event.usage.output_tokens ?? outputTokens
              inputTokens = event.usage.input_tokens ?? inputTokens
              return Effect.succeed([])
            case "message_stop":
              stopped = true
              return Effect.succeed([{ _tag: "Finish", stopReason, usage: { inputTokens, outputTokens } }])
            default:
              return Effect.succeed([])
          }
        }),
        Stream.flattenIterable
      )
      const unfinished = Stream.suspend(() =>
        stopped
          ? Stream.empty
          : Stream.fail(
              AnthropicError.make("api_error", "The model stream ended before the reply was complete")
            )
      )
      return Stream.concat(parts, unfinished)
    })

  const streamText = (
    request: LanguageModel.ModelRequest
  ): Stream.Stream<LanguageModel.ModelPart, ChatError.ModelError> =>
    Stream.suspend(() => {
      const messages = AnthropicHistory.toTurns(request.messages, budget)
      if (messages.length === 0) {
        return Stream.fail(AnthropicError.make("invalid_request_error", "There is no user message to answer"))
      }
      const params: MessageCreateParamsStreaming = {
        model: request.model,
        max_tokens: maxTokens,
        messages,
        stream: true,
        ...(options.system === undefined || options.system === "" ? {} : { system: options.system })
      }
      // Nothing reached the caller yet: a failure can be retried without
      // repeating text. Once a part is out, failures end the stream.
      let delivered = false
      const schedule = Schedule.min([
        Schedule.exponential(retry.baseDelay),
        Schedule.spaced(retry.maxDelay)
      ]).pipe(
        Schedule.jittered,
        Schedule.setInputType<ChatError.ModelError>(),
        Schedule.while(
          ({ input, attempt }) =>
            attempt <= retry.maxRetries &&
            !delivered &&
            isTransient(input) &&
            (input.retryAfterSeconds ?? 0) <= Duration.toSeconds(retry.maxRetryAfter)
        ),
        Schedule.modifyDelay(({ input, duration }) =>
          Effect.succeed(
            input.retryAfterSeconds === undefined
              ? duration
              : Duration.max(duration, Duration.seconds(input.retryAfterSeconds))
          )
        ),
        Schedule.tap(({ input, attempt, duration }) =>
          Effect.logDebug("Retrying the model request").pipe(
            Effect.annotateLogs({
              type: input.type,
              attempt,
              delayMillis: Duration.toMillis(duration),
              ...(input.detail === undefined ? {} : { upstreamMessage: input.detail })
            })
          )
        )
      )
      return decode(events(params)).pipe(
        Stream.tap(() =>
          Effect.sync(() => {
            delivered = true
          })
        ),
        Stream.retry(schedule),
        // What the API said reaches the operator here; the client gets the fixed message of its type.
        Stream.tapError((error) =>
          error.detail === undefined
            ? Effect.void
            : Effect.logWarning("The model API answered with an error").pipe(
                Effect.annotateLogs({ type: error.type, upstreamMessage: error.detail })
              )
        )
      )
    })

  return {
    name: "anthropic",
    resolveModel: (requested) => AnthropicModels.resolve(models, requested),
    streamText
  }
}

/**
 * Failures worth an automatic retry before the first delta. A timeout is not
 * among them: the caller has already waited a whole idle timeout.
 */
const isTransient = (error: ChatError.ModelError): boolean =>
  error.retryable && error.type !== "timeout_error"

/** Logs once, when the layer is built, each configured model that is near its end of life. */
const warnDeprecated = (options: Partial<Options>) =>
  Effect.forEach(
    new Set([options.model ?? AnthropicModels.defaultModel, ...Object.values(options.models ?? {})]),
    (model) =>
      AnthropicModels.deprecated[model] === undefined
        ? Effect.void
        : Effect.logWarning(
            `The model "${model}" is deprecated and reaches end of life on ${AnthropicModels.deprecated[model]}; map its aliases to a current model`
          ),
    { discard: true }
  )

/** Claude as the `LanguageModel` layer. */
export const layer = (options: Options): Layer.Layer<LanguageModel.LanguageModel> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    Effect.andThen(
      warnDeprecated(options),
      Effect.sync(() => make(options))
    )
  )

/**
 * Claude as the `LanguageModel` layer, configured from the environment:
 * `ANTHROPIC_API_KEY` (required), `ANTHROPIC_BASE_URL`, `ANTHROPIC_MODEL`,
 * `ANTHROPIC_MAX_TOKENS`, `ANTHROPIC_SYSTEM_PROMPT`. `options` are the
 * defaults; a variable that is set wins over them.
 */
export const layerConfig = (
  options: Partial<Omit<Options, "apiKey">> = {}
): Layer.Layer<LanguageModel.LanguageModel, Config.ConfigError> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    Effect.gen(function* () {
      const apiKey = yield* Config.Redacted("ANTHROPIC_API_KEY")
      const baseUrl = yield* Config.option(Config.String("ANTHROPIC_BASE_URL"))
      const model = yield* Config.option(Config.String("ANTHROPIC_MODEL"))
      const maxTokens = yield* Config.option(Config.Int("ANTHROPIC_MAX_TOKENS"))
      const system = yield* Config.option(Config.String("ANTHROPIC_SYSTEM_PROMPT"))
      const configuredModel = Option.getOrElse(model, () => options.model)
      yield* warnDeprecated({ ...options, model: configuredModel })
      return make({
        ...options,
        apiKey,
        baseUrl: Option.getOrElse(baseUrl, () => options.baseUrl),
        model: configuredModel,
        maxTokens: Option.getOrElse(maxTokens, () => options.maxTokens),
        system: Option.getOrElse(system, () => options.system)
      })
    })
  )
