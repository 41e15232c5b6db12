/**
 * `ConversationStatistics` on PostgreSQL: questions about all conversations
 * that one server instance cannot answer alone, such as how many new
 * conversations were never continued (the `conversation_abandonment_rate`
 * gauge of `ChatMetrics.layerAbandonment`).
 *
 * One query per call. It reads `convoke_conversations` by creation time and
 * counts user messages through the messages' conversation index.
 *
 * @since 0.1.0
 */
import { type ChatError, ConversationStatistics } from "@convoke/core"
import { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as SqlClient from "effect/sql/SqlClient"
import { CurrentLanes } from "./internal/lanes.ts"
import { orUnavailable } from "./internal/unavailable.ts"
import type { PoolOptions } from "./PgConversationStore.ts"
import * as PgMigrations from "./PgMigrations.ts"

/** Builds the statistics on the `SqlClient` in context; the store's migrations must have run. */
export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const lanes = yield* CurrentLanes
  const abandonment = Effect.fn("PgConversationStatistics.abandonment")(
    function* (window: { readonly from: Date; readonly to: Date }) {
      const [row] = yield* sql<{ readonly created: number; readonly abandoned: number }>`
      SELECT count(*)::int AS created,
             (count(*) FILTER (WHERE turns.user_messages <= 1))::int AS abandoned
      FROM convoke_conversations AS conversation
      CROSS JOIN LATERAL (
        SELECT count(*) AS user_messages
        FROM convoke_messages AS message
        WHERE message.conversation_id = conversation.id AND message.role = 'user'
      ) AS turns
      WHERE conversation.created_at >= ${window.from} AND conversation.created_at < ${window.to}`
        .withoutTransform
      return { created: row?.created ?? 0, abandoned: row?.abandoned ?? 0 }
    },
    lanes.background,
    orUnavailable
  )
  return ConversationStatistics.ConversationStatistics.of({ abandonment })
})

/**
 * The statistics on the `SqlClient` in context (e.g. beside
 * `PgConversationStore.layer`), after applying the store's migrations, so it
 * can be built before, after or beside the store.
 */
export const layer: Layer.Layer<
  ConversationStatistics.ConversationStatistics,
  ChatError.StoreUnavailable,
  SqlClient.SqlClient
> = Layer.effect(
  ConversationStatistics.ConversationStatistics,
  Effect.andThen(orUnavailable(PgMigrations.run), make)
)

/**
 * The statistics on a PostgreSQL server reached by URL, with a pool of its
 * own (one connection unless `maxConnections` says otherwise), so they never
 * wait behind chat traffic.
 */
export const layerUrl = (
  url: string | Redacted.Redacted<string>,
  options: PoolOptions = {}
): Layer.Layer<ConversationStatistics.ConversationStatistics, ChatError.StoreUnavailable> =>
  layer.pipe(
    Layer.provide(
      PgClient.layerFrom(
        orUnavailable(
          Effect.suspend(() =>
            PgClient.make({
              maxConnections: 1,
              ...options,
              url: typeof url === "string" ? Redacted.make(url) : url
            })
          )
        )
      )
    )
  )
