/**
 * The language model the conformance suite runs every binding with. It echoes
 * like the core's echo model (`Echo #<turn>: <message>`, so history is
 * visible), and a message's first word can ask for a behaviour the suite
 * needs to observe from inside the server:
 *
 * - `gated <token> …` — streams nothing until `release(token)`, so a test can
 *   prove the metadata event reached the client before the model produced;
 * - `endless <token> …` — streams two deltas, then waits forever; the
 *   interruption of that stream is recorded, so a test observes that a client
 *   disconnect reached the model;
 * - `halting <token>` — streams two deltas ("Echo", " partial"), waits for
 *   `release(token)`, then streams " rest" and ends: a turn a test can cut
 *   in the middle and finish later (its interruption is recorded too);
 * - `flood <token>` — streams 1 MiB deltas for as long as it is pulled,
 *   counting the pulls, so a test observes back-pressure reaching the model;
 * - `overloaded …` — streams one delta, then fails as an overloaded provider.
 *
 * @since 0.1.0
 */
import { ChatError, EchoLanguageModel, LanguageModel } from "@convoke/core"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"

/** A recording model and its controls. */
export interface ConformanceModel {
  readonly layer: Layer.Layer<LanguageModel.LanguageModel>
  /** Lets a `gated <token>` reply start, or a `halting <token>` reply finish. */
  readonly release: (token: string) => void
  /** Resolves when an `endless`, `halting` or `flood` reply with this token was interrupted. */
  readonly interrupted: (token: string) => Promise<void>
  /** How many times the model was called with this token. */
  readonly calls: (token: string) => number
  /** How many deltas a `flood <token>` reply has had pulled so far. */
  readonly pulled: (token: string) => number
}

/** The size of one `flood` delta. */
export const FLOOD_DELTA_BYTES = 1 << 20

const deferred = () => {
  let resolve!: () => void
  const promise = new Promise<void>((done) => {
    resolve = done
  })
  return { promise, resolve }
}

const delta = (text: string): LanguageModel.ModelPart => ({ _tag: "TextDelta", text })

/** Builds a fresh model; each binding gets its own. */
export const make = (): ConformanceModel => {
  const echo = EchoLanguageModel.make({ delay: 0 })
  const gates = new Map<string, ReturnType<typeof deferred>>()
  const interruptions = new Map<string, ReturnType<typeof deferred>>()
  const counts = new Map<string, number>()
  const pulls = new Map<string, number>()
  const flood = delta("x".repeat(FLOOD_DELTA_BYTES))
  const entry = <A>(map: Map<string, A>, token: string, make: () => A): A => {
    if (!map.has(token)) map.set(token, make())
    return map.get(token)!
  }

  const recordInterruption = (token: string) => (exit: Exit.Exit<unknown, never>) =>
    Effect.sync(() => {
      if (Exit.hasInterrupts(exit)) entry(interruptions, token, deferred).resolve()
    })

  const service: LanguageModel.Service = {
    name: "conformance",
    resolveModel: echo.resolveModel,
    streamText: (request) => {
      const [command, token = ""] = (request.messages.at(-1)?.content ?? "").split(" ")
      counts.set(token, (counts.get(token) ?? 0) + 1)
      switch (command) {
        case "gated":
          return Stream.unwrap(
            Effect.promise(() => entry(gates, token, deferred).promise).pipe(
              Effect.as(echo.streamText(request))
            )
          )
        case "endless":
          return Stream.concat(Stream.fromIterable([delta("Echo"), delta(" partial")]), Stream.never).pipe(
            Stream.onExit(recordInterruption(token))
          )
        case "halting":
          return Stream.concat(
            Stream.fromIterable([delta("Echo"), delta(" partial")]),
            Stream.unwrap(
              Effect.promise(() => entry(gates, token, deferred).promise).pipe(
                Effect.as(Stream.make(delta(" rest"), { _tag: "Finish", stopReason: "end_turn" } as const))
              )
            )
          ).pipe(Stream.onExit(recordInterruption(token)))
        case "flood":
          return Stream.forever(Stream.sync(() => flood)).pipe(
            Stream.tap(() => Effect.sync(() => pulls.set(token, (pulls.get(token) ?? 0) + 1))),
            Stream.onExit(recordInterruption(token))
          )
        case "overloaded":
          return Stream.concat(
            Stream.succeed(delta("Hel")),
            Stream.fail(
              new ChatError.ModelError({ type: "overloaded_error", message: "Overloaded", retryable: true })
            )
          )
        default:
          return echo.streamText(request)
      }
    }
  }
  return {
    layer: Layer.succeed(LanguageModel.LanguageModel, service),
    release: (token) => entry(gates, token, deferred).resolve(),
    interrupted: (token) => entry(interruptions, token, deferred).promise,
    calls: (token) => counts.get(token) ?? 0,
    pulled: (token) => pulls.get(token) ?? 0
  }
}
