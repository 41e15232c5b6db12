/**
 * Settings of the chat endpoint, with defaults that need no configuration.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

/** The settings. */
export interface Settings {
  /** The model name clients see in the metadata event (default `unified-chat`). */
  readonly publicModel: string
  /** Largest accepted request body in bytes (default 32 KiB); larger is a 413. */
  readonly maxBodyBytes: number
  /** A `: ping` comment goes out after about this long without an event (0.9–1.25×; default 15 s). */
  readonly heartbeatInterval: Duration.Duration
  /**
   * How long the store may go without answering any call while a stream's
   * conversation is found or created (default 50 ms; four times the store's
   * recent latency when that is longer). Past it, or when the store fails,
   * the stream starts on a temporary id that is stored later. While the store
   * keeps answering other calls, or its liveness check (`ConversationStore`'s
   * `alive`, asked every half budget while calls wait), the creation waits,
   * up to 10 s (or `storeTimeout` when longer).
   */
  readonly creationBudget: Duration.Duration
  /**
   * Longest wait for the store on the non-streaming path before a 503, and
   * for a write before it is queued in the outbox (default 2 s).
   */
  readonly storeTimeout: Duration.Duration
  /** How long shutdown waits for queued writes to reach the store (default 5 s). */
  readonly outboxFlushTimeout: Duration.Duration
  /** Longest accepted `message`, in characters (Unicode code points; default 32768); longer is a 400. */
  readonly maxMessageCharacters: number
  /** Deepest accepted JSON nesting of a request body (default 16); deeper is a 400. */
  readonly maxJsonDepth: number
  /**
   * How long a streamed turn whose readers all went away keeps going for one
   * to come back (`GET …/stream`) before it is cancelled (default 10 s); zero
   * cancels it as soon as the last reader leaves.
   */
  readonly disconnectGrace: Duration.Duration
  /**
   * Longest time a request body may take to arrive, from when the route starts
   * reading it (default 60 s); past it the answer is a 408 and the connection
   * is closed. Node bindings only: other runtimes bound their own bodies.
   */
  readonly bodyTimeout: Duration.Duration
  /**
   * Longest time a response waits for a reader that takes nothing once the
   * socket's buffers are full (default 30 s); past it the connection is
   * closed, which counts as the client leaving (`disconnectGrace` applies).
   * Node bindings only.
   */
  readonly drainTimeout: Duration.Duration
}

/** The defaults. */
export const defaults: Settings = {
  publicModel: "unified-chat",
  maxBodyBytes: 32 * 1024,
  heartbeatInterval: Duration.seconds(15),
  creationBudget: Duration.millis(50),
  storeTimeout: Duration.seconds(2),
  outboxFlushTimeout: Duration.seconds(5),
  maxMessageCharacters: 32 * 1024,
  maxJsonDepth: 16,
  disconnectGrace: Duration.seconds(10),
  bodyTimeout: Duration.seconds(60),
  drainTimeout: Duration.seconds(30)
}

/** The chat settings; provide a value to change them (`Layer.succeed(ChatConfig, {...})`). */
export const ChatConfig = Context.Reference<Settings>("@convoke/core/ChatConfig", {
  defaultValue: () => defaults
})

/** Builds settings from a partial object over the defaults. */
export const make = (overrides: Partial<Settings> = {}): Settings => ({ ...defaults, ...overrides })

/**
 * A whole number from `min` to `max` read from the variable `name`. Anything
 * else fails with the variable and the range expected, e.g. `must be a whole
 * number from 1 to 3600, got "soon"` at `CONVOKE_HEARTBEAT_SECONDS`.
 */
export const wholeNumber = (
  name: string,
  range: { readonly min: number; readonly max: number }
): Config.Config<number> =>
  Config.schema(
    Schema.String.check(
      Schema.makeFilter((raw: string) => {
        const value = Number(raw)
        return (
          (/^\d+$/.test(raw.trim()) && value >= range.min && value <= range.max) ||
          `must be a whole number from ${range.min} to ${range.max}, got "${raw}"`
        )
      })
    ),
    name
  ).pipe(Config.map(Number))

/**
 * Where `layerConfig` reads each setting: the variables the reference server
 * documents, validated as it validates them. A variable that is absent (or
 * empty) keeps the default; the settings without a variable always do.
 */
export const config: { readonly [K in keyof Settings]: Config.Config<Settings[K]> } = {
  publicModel: Config.schema(
    Schema.String.check(Schema.makeFilter((raw: string) => raw.trim() !== "" || "must not be empty")),
    "CONVOKE_PUBLIC_MODEL"
  ).pipe(Config.withDefault(defaults.publicModel)),
  maxBodyBytes: wholeNumber("CONVOKE_MAX_BODY_BYTES", { min: 256, max: 16 * 1024 * 1024 }).pipe(
    Config.withDefault(defaults.maxBodyBytes)
  ),
  heartbeatInterval: wholeNumber("CONVOKE_HEARTBEAT_SECONDS", { min: 1, max: 3600 }).pipe(
    Config.map(Duration.seconds),
    Config.withDefault(defaults.heartbeatInterval)
  ),
  creationBudget: wholeNumber("CONVOKE_CREATION_BUDGET_MS", { min: 1, max: 60_000 }).pipe(
    Config.map(Duration.millis),
    Config.withDefault(defaults.creationBudget)
  ),
  storeTimeout: wholeNumber("CONVOKE_STORE_TIMEOUT_MS", { min: 1, max: 60_000 }).pipe(
    Config.map(Duration.millis),
    Config.withDefault(defaults.storeTimeout)
  ),
  outboxFlushTimeout: Config.succeed(defaults.outboxFlushTimeout),
  maxMessageCharacters: wholeNumber("CONVOKE_MAX_MESSAGE_CHARACTERS", { min: 1, max: 16 * 1024 * 1024 }).pipe(
    Config.withDefault(defaults.maxMessageCharacters)
  ),
  maxJsonDepth: wholeNumber("CONVOKE_MAX_JSON_DEPTH", { min: 1, max: 1000 }).pipe(
    Config.withDefault(defaults.maxJsonDepth)
  ),
  disconnectGrace: wholeNumber("CONVOKE_DISCONNECT_GRACE_MS", { min: 0, max: 3_600_000 }).pipe(
    Config.map(Duration.millis),
    Config.withDefault(defaults.disconnectGrace)
  ),
  bodyTimeout: wholeNumber("CONVOKE_BODY_TIMEOUT_MS", { min: 1, max: 3_600_000 }).pipe(
    Config.map(Duration.millis),
    Config.withDefault(defaults.bodyTimeout)
  ),
  drainTimeout: wholeNumber("CONVOKE_DRAIN_TIMEOUT_MS", { min: 1, max: 3_600_000 }).pipe(
    Config.map(Duration.millis),
    Config.withDefault(defaults.drainTimeout)
  )
}

/**
 * The chat settings read from configuration — by default the variables of
 * `config` (`CONVOKE_PUBLIC_MODEL`, `CONVOKE_MAX_BODY_BYTES`, …) from the
 * current `ConfigProvider`. Replace any of them by passing your own:
 * `ChatConfig.layerConfig({ ...ChatConfig.config, publicModel: Config.succeed("my-chat") })`.
 */
export const layerConfig = (
  options: Config.Wrap<Settings> = config
): Layer.Layer<never, Config.ConfigError> => Layer.effect(ChatConfig, Config.unwrap(options))
