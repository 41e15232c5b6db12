/**
 * Reading what a binding stored, straight from PostgreSQL: the suite checks
 * rows (a partial reply after a disconnect, nothing written for a rejected
 * request) without going through the server under test.
 *
 * @since 0.1.0
 */

import type { ChatError, ConversationStore } from "@convoke/core"
import { PgConversationStore } from "@convoke/store-pg"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

/** One stored message: `[role, status, content]`. */
export type Row = readonly [role: string, status: string, content: string]

/** Reads a store's rows. */
export interface StoreProbe {
  /** The messages of a conversation, oldest first. */
  readonly transcript: (conversationId: string) => Promise<ReadonlyArray<Row>>
  /** How many conversations and messages the store holds. */
  readonly counts: () => Promise<{ readonly conversations: number; readonly messages: number }>
}

const query = <A extends object>(url: string, text: string, params: ReadonlyArray<unknown> = []) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const sql = yield* PgClient.PgClient
      return (yield* sql.unsafe<A>(text, params as Array<any>)) as ReadonlyArray<A>
    }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
  )

/** A probe of the PostgreSQL database at `url`. */
export const fromUrl = (url: string): StoreProbe => ({
  transcript: async (conversationId) =>
    (
      await query<{ role: string; status: string; content: string }>(
        url,
        "SELECT role, status, content FROM convoke_messages WHERE conversation_id = $1 ORDER BY seq",
        [conversationId]
      )
    ).map((row) => [row.role, row.status, row.content] as const),
  counts: async () => {
    const [row] = await query<{ conversations: string; messages: string }>(
      url,
      "SELECT (SELECT count(*) FROM convoke_conversations) AS conversations, (SELECT count(*) FROM convoke_messages) AS messages"
    )
    return { conversations: Number(row!.conversations), messages: Number(row!.messages) }
  }
})

/** A fresh PostgreSQL test database: the store layer a binding serves, its probe, and `drop`. */
export interface TestStore {
  readonly url: string
  readonly layer: Layer.Layer<ConversationStore.ConversationStore, ChatError.StoreUnavailable>
  readonly probe: StoreProbe
  readonly drop: () => Promise<void>
}

/** Creates a database on the test PostgreSQL server (see `@convoke/store-pg/testing`). */
export const postgres = async (): Promise<TestStore> => {
  const database = await makeTestDatabase()
  return {
    url: database.url,
    layer: PgConversationStore.layerUrl(database.url),
    probe: fromUrl(database.url),
    drop: database.drop
  }
}
