/**
 * A language model that needs no key and no network: it streams the user's
 * message back word by word, prefixed with the turn number (`Echo #2: …`), so
 * a resumed conversation visibly carries its history. The reference server
 * uses it when no model key is configured; tests use it for timing control.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { InvalidRequest } from "./ChatError.ts"
import { LanguageModel, type ModelPart, type Service } from "./LanguageModel.ts"

/** Options of the echo model. */
export interface Options {
  /** Pause before each word (default 20 ms); `0` streams as fast as possible. */
  readonly delay?: Duration.Input | undefined
  /**
   * Accepted values of the request's `model`. Default: any value is accepted,
   * since the echo model has nothing to choose between.
   */
  readonly models?: ReadonlyArray<string> | undefined
}

/**
 * The parts of a reply, made one at a time as the stream pulls them: a long
 * message held open for minutes keeps only itself, not a part per word.
 * Iterable more than once, so the stream can be run again.
 */
const partsOf = (turn: number, message: string): Iterable<ModelPart> => ({
  *[Symbol.iterator]() {
    yield { _tag: "TextDelta", text: `Echo #${turn}:` }
    let count = 1
    const text = ` ${message}`
    for (const [word] of text.matchAll(/\s*\S+/g)) {
      count++
      yield { _tag: "TextDelta", text: word }
    }
    // A message of blanks alone is echoed as it is.
    if (count === 1) {
      count++
      yield { _tag: "TextDelta", text }
    }
    yield { _tag: "Finish", stopReason: "end_turn", usage: { inputTokens: 0, outputTokens: count } }
  }
})

/** Builds the echo model service. */
export const make = (options: Options = {}): Service => {
  const delay = Duration.fromInputUnsafe(options.delay ?? Duration.millis(20))
  const allowed = options.models === undefined ? undefined : new Set(options.models)
  return {
    name: "echo",
    resolveModel: (requested) =>
      requested === undefined || allowed === undefined || allowed.has(requested)
        ? Effect.succeed("echo")
        : Effect.fail(new InvalidRequest({ message: `Unknown model "${requested}"` })),
    streamText: ({ messages }) => {
      const last = messages.at(-1)?.content ?? ""
      const turn = messages.filter((message) => message.role === "user").length
      const parts = partsOf(turn, last)
      // One stage at most. With a delay, one part is pulled at a time (a chunk would be an array of them).
      return Duration.isZero(delay)
        ? Stream.fromIterable(parts)
        : Stream.fromIterable(parts, { chunkSize: 1 }).pipe(
            Stream.tap((part) => (part._tag === "TextDelta" ? Effect.sleep(delay) : Effect.void))
          )
    }
  }
}

/** The echo model as a layer. */
export const layer = (options?: Options): Layer.Layer<LanguageModel> =>
  Layer.succeed(LanguageModel, make(options))
