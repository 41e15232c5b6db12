/**
 * Questions about conversations as a whole that only the store can answer
 * correctly — across every server instance and restart — such as how many new
 * conversations were never continued.
 *
 * Optional: a store package provides it beside its `ConversationStore`
 * (`@convoke/store-pg`: `PgConversationStatistics`), and features that need
 * it, such as the abandonment gauge of `ChatMetrics.layerAbandonment`, ask
 * for it explicitly.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { StoreUnavailable } from "./ChatError.ts"

/** Conversations created in a window, and how many of them were never continued. */
export interface Abandonment {
  /** Conversations created in the window. */
  readonly created: number
  /** Of those, the ones with at most one user message: never continued. */
  readonly abandoned: number
}

/** The statistics a store can compute. */
export interface Service {
  /** Abandonment of the conversations created from `from` (inclusive) to `to` (exclusive), all users. */
  readonly abandonment: (window: {
    readonly from: Date
    readonly to: Date
  }) => Effect.Effect<Abandonment, StoreUnavailable>
}

/** The statistics service tag. */
export class ConversationStatistics extends Context.Service<ConversationStatistics, Service>()(
  "@convoke/core/ConversationStatistics"
) {}
