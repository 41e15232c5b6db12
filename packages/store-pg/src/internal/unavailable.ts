import { type ChatError, ConversationStore } from "@convoke/core"
import * as Effect from "effect/Effect"

/** Turns every failure of an effect, expected or not (a defect), into the error `toError` makes. */
export const failingAs =
  (toError: (cause: unknown) => ChatError.StoreUnavailable) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, ChatError.StoreUnavailable, R> =>
    effect.pipe(
      Effect.mapError(toError),
      Effect.catchDefect((defect) => Effect.fail(toError(defect)))
    )

/** Turns every failure, expected or not, into the conversation store's `StoreUnavailable`. */
export const orUnavailable = failingAs(ConversationStore.unavailable)
