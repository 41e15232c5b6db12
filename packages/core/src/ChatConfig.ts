/**
 * Settings of the chat endpoint, with defaults that need no configuration.
 *
 * @since 0.1.0
 */
import { Context, Duration } from "effect"

/** The settings. */
export interface Settings {
  /** The model name clients see in the metadata event (default `unified-chat`). */
  readonly publicModel: string
  /** Largest accepted request body in bytes (default 32 KiB); larger is a 413. */
  readonly maxBodyBytes: number
  /** A `: ping` comment goes out after about this long without an event (0.9–1.33×; default 15 s). */
  readonly heartbeatInterval: Duration.Duration
  /** Longest wait for storing a reply when a stream ends (default 5 s). */
  readonly persistTimeout: Duration.Duration
  /**
   * Time budget for finding or creating the conversation of a stream (default
   * 50 ms). Past it, or when the store fails, the stream starts on a temporary
   * id that is stored later.
   */
  readonly creationBudget: Duration.Duration
  /** Longest wait for the store on the non-streaming path before a 503 (default 2 s). */
  readonly storeTimeout: Duration.Duration
  /** How long shutdown waits for queued writes to reach the store (default 5 s). */
  readonly outboxFlushTimeout: Duration.Duration
  /** Longest accepted `message`, in characters (Unicode code points; default 32768); longer is a 400. */
  readonly maxMessageCharacters: number
  /** Deepest accepted JSON nesting of a request body (default 16); deeper is a 400. */
  readonly maxJsonDepth: number
}

/** The defaults. */
export const defaults: Settings = {
  publicModel: "unified-chat",
  maxBodyBytes: 32 * 1024,
  heartbeatInterval: Duration.seconds(15),
  persistTimeout: Duration.seconds(5),
  creationBudget: Duration.millis(50),
  storeTimeout: Duration.seconds(2),
  outboxFlushTimeout: Duration.seconds(5),
  maxMessageCharacters: 32 * 1024,
  maxJsonDepth: 16
}

/** The chat settings; provide a value to change them (`Layer.succeed(ChatConfig, {...})`). */
export const ChatConfig = Context.Reference<Settings>("@convoke/core/ChatConfig", {
  defaultValue: () => defaults
})

/** Builds settings from a partial object over the defaults. */
export const make = (overrides: Partial<Settings> = {}): Settings => ({ ...defaults, ...overrides })
