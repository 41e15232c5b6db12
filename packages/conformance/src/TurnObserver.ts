/**
 * Observes the ends of chat turns through the core's hooks (`ChatHooks`,
 * added as a `ChatExtension`), so a test waits for a turn to end instead of
 * polling the store for its rows. The core reports a turn's end once it has
 * stored the reply (the partial one after a disconnect included): when
 * `ended` resolves, the rows are there.
 *
 * @since 0.1.0
 */
import { ChatExtension, type ChatHooks } from "@convoke/core"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"

/** A turn observer and its layer. */
export interface TurnObserver {
  /** Add it to the application's layers. */
  readonly layer: Layer.Layer<never>
  /** Resolves with the outcome of the first turn of this conversation to end. */
  readonly ended: (conversationId: string) => Promise<ChatHooks.Outcome>
}

interface Pending {
  readonly promise: Promise<ChatHooks.Outcome>
  readonly resolve: (outcome: ChatHooks.Outcome) => void
}

/** Builds a fresh observer; each binding gets its own. */
export const make = (): TurnObserver => {
  // Whichever comes first, the turn's end or a test waiting for it, creates the entry.
  const outcomes = new Map<string, Pending>()
  const entry = (conversationId: string): Pending => {
    let pending = outcomes.get(conversationId)
    if (pending === undefined) {
      let resolve!: (outcome: ChatHooks.Outcome) => void
      const promise = new Promise<ChatHooks.Outcome>((done) => {
        resolve = done
      })
      pending = { promise, resolve }
      outcomes.set(conversationId, pending)
    }
    return pending
  }
  return {
    layer: ChatExtension.layer({
      hooks: {
        turnEnded: (event) => Effect.sync(() => entry(event.conversationId).resolve(event.outcome))
      }
    }),
    ended: (conversationId) => entry(conversationId).promise
  }
}
