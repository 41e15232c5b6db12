/**
 * The PostgreSQL implementation of `ConversationStore`, on `@effect/sql-pg`.
 *
 * Every query that answers a user is scoped by user id (`exists`,
 * `deleteAbandoned` and `abandonment` span users, for the audit log and
 * cleanup); every query is served by an index and each operation is one round
 * trip. The same SQL runs against a PostgreSQL server (`layerUrl`),
 * any `SqlClient` you already have (`layer`), or the embedded PGlite database
 * (`layerEmbedded`).
 *
 * PostgreSQL text cannot hold NUL characters and `jsonb` rejects unpaired
 * surrogates, so in titles, message contents and metadata both are stored as
 * U+FFFD instead of failing the write. A user id holding either owns nothing.
 *
 * @since 0.1.0
 */
import { AuditLog, type ChatError, ConversationStore } from "@convoke/core"
import { PgClient } from "@effect/sql-pg"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Reactivity from "effect/reactivity/Reactivity"
import type * as Scope from "effect/Scope"
import * as SqlClient from "effect/sql/SqlClient"
import * as Lanes from "./internal/lanes.ts"
import * as MessageStatements from "./internal/messageStatements.ts"
import { isUuid, storable } from "./internal/text.ts"
import { orUnavailable } from "./internal/unavailable.ts"
import * as PgAuditLog from "./PgAuditLog.ts"
import * as PgEmbedded from "./PgEmbedded.ts"
import * as PgMigrations from "./PgMigrations.ts"

/** Options of `make` and `layer`. */
export interface Options {
  /** The store's name in banners and `/health`; `postgres` unless given. */
  readonly name?: string | undefined
  /**
   * How many connections the `SqlClient`'s pool holds (its `maxConnections`).
   * When given, at most that many statements are in flight, and a freed
   * connection goes to a statement a response is waiting to start on
   * (creating or finding a conversation, listing, checking a stored key)
   * before appends, audit records and cleanup: under load the metadata event
   * does not queue behind the writes of streams already under way. Unset,
   * statements queue in the pool in arrival order. `layerUrl` and
   * `layerEmbedded` set it.
   */
  readonly connections?: number | undefined
  /**
   * The store's liveness check (`ConversationStore.Service.alive`): a query
   * that does not queue behind the pool's statements. `layerUrl` sets one on
   * a connection of its own; unset, the store has none.
   */
  readonly alive?: Effect.Effect<void, ChatError.StoreUnavailable> | undefined
}

/** The pool size of `layerUrl` unless `maxConnections` is given. */
export const DEFAULT_CONNECTIONS = 10

/**
 * How `layerUrl` shares its pooled connections, unless its options say
 * otherwise: statements from many fibers are pipelined on each connection
 * (`@effect/sql-pg`'s `multiplex`), so a statement needs no connection of
 * its own, no hand-over in the pool, and the statements of one turn of the
 * event loop go out in one write. Transactions still hold a connection to
 * themselves.
 *
 * Four statements to a connection, not sql-pg's default of 32: with the
 * lanes' ten in flight, 32 would put every statement on one connection,
 * where PostgreSQL runs them one after another and a slow one (a long
 * history, the cleanup) holds up the rest; four spreads them over three.
 */
export const MULTIPLEX = { multiplex: true, multiplexConcurrency: 4 } as const

/** Pool settings for `layerUrl`, everything `PgClient` accepts except the URL. */
export type PoolOptions = Omit<PgClient.PgPoolConfig, "url">

interface ConversationRow {
  readonly id: string
  readonly user_id: string
  readonly title: string
  readonly created_at: Date
  readonly updated_at: Date
}

interface MessageRow {
  readonly id: string
  readonly conversation_id: string
  readonly role: ConversationStore.Role
  readonly content: string
  readonly status: ConversationStore.MessageStatus
  readonly metadata: Record<string, unknown> | null
  readonly created_at: Date
}

/**
 * Whether a user id can be stored as it is. Replacing characters in an id
 * could make two users one, so an id that needs it owns nothing.
 */
const isStorableUserId = (userId: string): boolean => storable(userId) === userId

const toConversation = (row: ConversationRow): ConversationStore.Conversation => ({
  id: row.id,
  userId: row.user_id,
  title: row.title,
  createdAt: row.created_at,
  updatedAt: row.updated_at
})

const toMessage = (row: MessageRow): ConversationStore.Message => ({
  id: row.id,
  conversationId: row.conversation_id,
  role: row.role,
  content: row.content,
  status: row.status,
  createdAt: row.created_at,
  ...(row.metadata === null ? {} : { metadata: row.metadata })
})

/** A request the store refuses before it reaches the database. */
const refuse = (message: string) => Effect.fail(new Error(message))

/**
 * Builds the store on the `SqlClient` in context, assuming the schema exists.
 * Use it when you run `PgMigrations` yourself; otherwise use `layer`.
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const sql = yield* SqlClient.SqlClient
  // Statements a response waits to start on are urgent; those inside a
  // stream or off the request path are background (see `connections`).
  const lanes = yield* Lanes.forPool(options.connections)

  const selectOwned = (id: string, userId: string) =>
    sql<ConversationRow>`
      SELECT id, user_id, title, created_at, updated_at
      FROM convoke_conversations
      WHERE id = ${id}::uuid AND user_id = ${userId}`.withoutTransform

  /** The latest of the messages' creation dates (and `since`, if given): `updated_at` once they are added. */
  const latestOf = (messages: ReadonlyArray<ConversationStore.NewMessage>, since?: Date): Date =>
    new Date(
      Math.max(since?.getTime() ?? -Infinity, ...messages.map((message) => message.createdAt.getTime()))
    )

  const create = Effect.fnUntraced(
    function* (input: {
      readonly id: string
      readonly userId: string
      readonly title: string
      readonly now: Date
      readonly messages?: ReadonlyArray<ConversationStore.NewMessage> | undefined
    }) {
      if (!isUuid(input.id)) return yield* refuse("A conversation id must be a UUID")
      if (!isStorableUserId(input.userId))
        return yield* refuse("A user id must not contain NUL or lone surrogates")
      const { id, userId, now, messages = [] } = input
      if (!messages.every((message) => isUuid(message.id)))
        return yield* refuse("A message id must be a UUID")
      const title = storable(input.title)
      const updatedAt = latestOf(messages, now)
      // Only the id comes back: the row is what was sent. The messages go in
      // the same statement, inserted from the new row, so they are stored
      // exactly when the conversation is. (A conflict, which only a retried
      // create meets, costs more round trips.)
      const inserted = yield* messages.length === 0
        ? sql<{ readonly id: string }>`
          INSERT INTO convoke_conversations (id, user_id, title, created_at, updated_at)
          VALUES (${id}::uuid, ${userId}, ${title}, ${now}, ${now})
          ON CONFLICT (id) DO NOTHING
          RETURNING id`.withoutTransform
        : sql.unsafe<{ readonly id: string }>(MessageStatements.create(messages.length), [
            id,
            userId,
            title,
            now,
            updatedAt,
            ...MessageStatements.parameters(messages)
          ]).withoutTransform
      if (inserted.length > 0) {
        return { id: id.toLowerCase(), userId, title, createdAt: now, updatedAt }
      }
      // The id exists: this user's conversation (a retried create), or another user's.
      if (messages.length > 0 && !(yield* appendOwned(id, userId, messages))) {
        return yield* refuse("The conversation id belongs to another user")
      }
      const row = (yield* selectOwned(id, userId))[0]
      if (row === undefined) return yield* refuse("The conversation id belongs to another user")
      return toConversation(row)
    },
    lanes.urgent,
    orUnavailable
  )

  const find = Effect.fnUntraced(
    function* (input: { readonly userId: string; readonly id: string }) {
      if (!isUuid(input.id) || !isStorableUserId(input.userId)) return Option.none()
      const rows = yield* selectOwned(input.id, input.userId)
      return Option.map(Option.fromUndefinedOr(rows[0]), toConversation)
    },
    lanes.urgent,
    orUnavailable
  )

  const history = Effect.fnUntraced(
    function* (input: { readonly userId: string; readonly conversationId: string }) {
      if (!isUuid(input.conversationId) || !isStorableUserId(input.userId)) return []
      const rows = yield* sql<MessageRow>`
      SELECT m.id, m.conversation_id, m.role, m.content, m.status, m.metadata, m.created_at
      FROM convoke_conversations c
      JOIN convoke_messages m ON m.conversation_id = c.id
      WHERE c.id = ${input.conversationId}::uuid AND c.user_id = ${input.userId}
      ORDER BY m.seq`.withoutTransform
      return rows.map(toMessage)
    },
    lanes.background,
    orUnavailable
  )

  /** Appends messages if the user owns the conversation (see `MessageStatements.append`); whether they do. */
  const appendOwned = (
    conversationId: string,
    userId: string,
    messages: ReadonlyArray<ConversationStore.NewMessage>
  ) =>
    Effect.map(
      sql.unsafe<{ readonly id: string }>(MessageStatements.append(messages.length), [
        latestOf(messages),
        conversationId,
        userId,
        ...MessageStatements.parameters(messages)
      ]).withoutTransform,
      (owner) => owner.length > 0
    )

  const append = Effect.fnUntraced(
    function* (input: {
      readonly userId: string
      readonly conversationId: string
      readonly messages: ReadonlyArray<ConversationStore.NewMessage>
    }) {
      const { conversationId, userId, messages } = input
      if (!isUuid(conversationId) || !isStorableUserId(userId)) return false
      if (messages.length === 0) return (yield* selectOwned(conversationId, userId)).length > 0
      if (!messages.every((message) => isUuid(message.id)))
        return yield* refuse("A message id must be a UUID")
      return yield* appendOwned(conversationId, userId, messages)
    },
    lanes.background,
    orUnavailable
  )

  const list = Effect.fn("PgConversationStore.list")(
    function* (input: {
      readonly userId: string
      readonly limit: number
      readonly after?: ConversationStore.Cursor | undefined
    }) {
      const { userId, after } = input
      if (!Number.isSafeInteger(input.limit) || input.limit < 1)
        return yield* refuse("A page limit must be a positive integer")
      if (!isStorableUserId(userId)) return { conversations: [] }
      if (after !== undefined && (!isUuid(after.id) || Number.isNaN(after.updatedAt.getTime())))
        return yield* refuse("A cursor needs a valid date and a UUID")
      // One row more than the page tells whether another page follows.
      const rows = yield* sql<ConversationRow>`
      SELECT id, user_id, title, created_at, updated_at
      FROM convoke_conversations
      WHERE user_id = ${userId}${
        after === undefined ? sql`` : sql` AND (updated_at, id) < (${after.updatedAt}, ${after.id}::uuid)`
      }
      ORDER BY updated_at DESC, id DESC
      LIMIT ${input.limit + 1}`.withoutTransform
      const conversations = rows.slice(0, input.limit).map(toConversation)
      const last = conversations.at(-1)
      return rows.length > input.limit && last !== undefined
        ? { conversations, next: { updatedAt: last.updatedAt, id: last.id } }
        : { conversations }
    },
    lanes.urgent,
    orUnavailable
  )

  const rename = Effect.fn("PgConversationStore.rename")(
    function* (input: {
      readonly userId: string
      readonly id: string
      readonly title: string
      readonly now: Date
    }) {
      if (!isUuid(input.id) || !isStorableUserId(input.userId)) return Option.none()
      const rows = yield* sql<ConversationRow>`
      UPDATE convoke_conversations
      SET title = ${storable(input.title)}, updated_at = ${input.now}
      WHERE id = ${input.id}::uuid AND user_id = ${input.userId}
      RETURNING id, user_id, title, created_at, updated_at`.withoutTransform
      return Option.map(Option.fromUndefinedOr(rows[0]), toConversation)
    },
    lanes.urgent,
    orUnavailable
  )

  const remove = Effect.fn("PgConversationStore.remove")(
    function* (input: { readonly userId: string; readonly id: string }) {
      if (!isUuid(input.id) || !isStorableUserId(input.userId)) return false
      // Messages go with it: the foreign key cascades.
      const rows = yield* sql<{ readonly id: string }>`
      DELETE FROM convoke_conversations
      WHERE id = ${input.id}::uuid AND user_id = ${input.userId}
      RETURNING id`.withoutTransform
      return rows.length > 0
    },
    lanes.urgent,
    orUnavailable
  )

  const exists = Effect.fnUntraced(
    function* (id: string) {
      if (!isUuid(id)) return false
      const rows = yield* sql<{ readonly id: string }>`
      SELECT id FROM convoke_conversations WHERE id = ${id}::uuid`.withoutTransform
      return rows.length > 0
    },
    lanes.background,
    orUnavailable
  )

  const deleteAbandoned = Effect.fn("PgConversationStore.deleteAbandoned")(
    function* (input: { readonly createdBefore: Date; readonly limit: number }) {
      if (!Number.isSafeInteger(input.limit) || input.limit < 1)
        return yield* refuse("A batch limit must be a positive integer")
      if (Number.isNaN(input.createdBefore.getTime())) return yield* refuse("The cutoff must be a valid date")
      // SKIP LOCKED: rows a request is appending to right now are left for the
      // next batch instead of making the request (or this batch) wait.
      // `replied` is rechecked on the locked row, so a reply that commits after
      // this statement started keeps its conversation.
      const rows = yield* sql<{ readonly id: string; readonly user_id: string }>`
      DELETE FROM convoke_conversations
      WHERE id IN (
        SELECT id
        FROM convoke_conversations
        WHERE NOT replied AND created_at < ${input.createdBefore} AND updated_at < ${input.createdBefore}
        ORDER BY created_at
        LIMIT ${input.limit}
        FOR UPDATE SKIP LOCKED
      )
      RETURNING id, user_id`.withoutTransform
      return rows.map((row) => ({ id: row.id, userId: row.user_id }))
    },
    lanes.background,
    orUnavailable
  )

  const abandonment = Effect.fn("PgConversationStore.abandonment")(
    function* (input: { readonly createdFrom: Date; readonly createdBefore: Date }) {
      if (Number.isNaN(input.createdFrom.getTime()) || Number.isNaN(input.createdBefore.getTime()))
        return yield* refuse("The window must have valid dates")
      const rows = yield* sql<{ readonly created: string | number; readonly abandoned: string | number }>`
      SELECT count(*)::int8 AS created, count(*) FILTER (WHERE NOT replied)::int8 AS abandoned
      FROM convoke_conversations
      WHERE created_at >= ${input.createdFrom} AND created_at < ${input.createdBefore}`.withoutTransform
      const row = rows[0]
      return { created: Number(row?.created ?? 0), abandoned: Number(row?.abandoned ?? 0) }
    },
    lanes.background,
    orUnavailable
  )

  return ConversationStore.ConversationStore.of({
    name: options.name ?? "postgres",
    create,
    find,
    history,
    append,
    list,
    rename,
    remove,
    exists,
    deleteAbandoned,
    abandonment,
    alive: options.alive
  })
})

/**
 * The store on the `SqlClient` in context, after applying the migrations. Use
 * it to share your application's PostgreSQL client with Convoke.
 */
export const layer = (
  options: Options = {}
): Layer.Layer<ConversationStore.ConversationStore, ChatError.StoreUnavailable, SqlClient.SqlClient> =>
  Layer.effect(
    ConversationStore.ConversationStore,
    Effect.andThen(orUnavailable(PgMigrations.run), make(options))
  )

/**
 * The store and `PgAuditLog` on the `SqlClient` in context, after applying
 * the migrations once. Use it when Convoke should also keep its audit table
 * on your client; `layerUrl` and `layerEmbedded` are built on it.
 */
export const layerWithAuditLog = (
  options: Options & { readonly auditLog?: PgAuditLog.Options | undefined } = {}
): Layer.Layer<ConversationStore.ConversationStore, ChatError.StoreUnavailable, SqlClient.SqlClient> =>
  Layer.effectContext(
    Effect.gen(function* () {
      yield* orUnavailable(PgMigrations.run)
      // One set of lanes for every statement on the pool; other store-pg
      // services built with this layer's output (`PgApiKeyStore.layer`) join them.
      const lanes = yield* Lanes.forPool(options.connections)
      const store = yield* make({ name: options.name, alive: options.alive }).pipe(
        Effect.provideService(Lanes.CurrentLanes, lanes)
      )
      const auditLog = yield* PgAuditLog.make(options.auditLog).pipe(
        Effect.provideService(Lanes.CurrentLanes, lanes)
      )
      return Context.make(ConversationStore.ConversationStore, store).pipe(
        Context.add(AuditLog.AuditLog, auditLog),
        Context.add(Lanes.CurrentLanes, lanes)
      )
    })
  )

/**
 * The store on a PostgreSQL server reached by URL
 * (`postgres://user:password@host:5432/database`), with its own connection
 * pool (statements multiplexed, see `MULTIPLEX`), and the audit log
 * (`PgAuditLog`) on the same pool. Use it in production, e.g. with
 * `DATABASE_URL`.
 *
 * One more connection, outside the pool, serves the liveness check
 * (`SELECT 1`): while every pooled connection waits on a lock or a stalling
 * disk, it still answers, so new streams wait for their conversations
 * instead of starting on temporary ids.
 */
export const layerUrl = (
  url: string | Redacted.Redacted<string>,
  options: PoolOptions = {}
): Layer.Layer<ConversationStore.ConversationStore, ChatError.StoreUnavailable> => {
  const config = {
    maxConnections: DEFAULT_CONNECTIONS,
    ...MULTIPLEX,
    ...options,
    url: typeof url === "string" ? Redacted.make(url) : url
  }
  return Layer.unwrap(
    Effect.map(liveness(config.url, options), (alive) =>
      layerWithAuditLog({ name: "postgres", connections: config.maxConnections, alive }).pipe(
        Layer.provide(PgClient.layerFrom(orUnavailable(Effect.suspend(() => PgClient.make(config)))))
      )
    )
  )
}

/**
 * A liveness check for `Options.alive`: `SELECT 1` on a client of its own,
 * with one connection, so it never queues behind the statements of the
 * store's pool. The client lives as long as the scope. `layerUrl` makes one;
 * make one yourself when you build the store on your own client
 * (`layerWithAuditLog({ alive })`).
 */
export const liveness = (
  url: string | Redacted.Redacted<string>,
  options: PoolOptions = {}
): Effect.Effect<Effect.Effect<void, ChatError.StoreUnavailable>, ChatError.StoreUnavailable, Scope.Scope> =>
  orUnavailable(
    Effect.suspend(() =>
      PgClient.make({
        ...options,
        url: typeof url === "string" ? Redacted.make(url) : url,
        maxConnections: 1,
        minConnections: undefined
      })
    ).pipe(Effect.provide(Reactivity.layer))
  ).pipe(Effect.map((client) => orUnavailable(Effect.asVoid(client`SELECT 1`))))

/**
 * The store on an embedded PGlite database kept in `dataDir` (default
 * `./.convoke/data`; `memory://` keeps nothing), with the audit log
 * (`PgAuditLog`) in the same database. Use it when no PostgreSQL server is
 * configured: development, demos, single-process deployments.
 */
export const layerEmbedded = (
  options: PgEmbedded.Options = {}
): Layer.Layer<ConversationStore.ConversationStore, ChatError.StoreUnavailable> =>
  layerWithAuditLog({ name: "pglite", connections: PgEmbedded.CONNECTIONS }).pipe(
    Layer.provide(PgEmbedded.layer(options))
  )
