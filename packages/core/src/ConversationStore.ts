/**
 * Where conversations and their messages live.
 *
 * Every operation is scoped by user id: a store never returns, extends or
 * reveals another user's conversation. `@convoke/store-pg` provides the
 * PostgreSQL implementation; `layerMemory` here is for tests and demos.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { StoreUnavailable } from "./ChatError.ts"

/** A conversation as stored. */
export interface Conversation {
  readonly id: string
  readonly userId: string
  readonly title: string
  readonly createdAt: Date
  readonly updatedAt: Date
}

/** Who said a message. */
export type Role = "user" | "assistant"

/**
 * How a message ended: `complete`; `cancelled` (stopped, or its client left
 * and did not come back within the grace window); `interrupted` (the
 * instance running it died or shut down); `error` (a model failure).
 * `partial` is how rows written before those statuses existed say
 * `cancelled` or `interrupted`; `streaming` is a reply still being written,
 * which the conversation API shows while its turn runs.
 */
export type MessageStatus = "complete" | "partial" | "cancelled" | "interrupted" | "error" | "streaming"

/** One turn of a conversation. */
export interface Message {
  readonly id: string
  readonly conversationId: string
  readonly role: Role
  readonly content: string
  readonly status: MessageStatus
  readonly createdAt: Date
  /** Provider details of an assistant turn (model, stop reason, token usage). */
  readonly metadata?: Readonly<Record<string, unknown>> | undefined
}

/** A message to append; the conversation it belongs to is given separately. */
export interface NewMessage {
  readonly id: string
  readonly role: Role
  readonly content: string
  readonly status: MessageStatus
  readonly createdAt: Date
  readonly metadata?: Readonly<Record<string, unknown>> | undefined
}

/** The operations Convoke needs from a store. */
export interface Service {
  /** A short name for banners and `/health` (`memory`, `postgres`, `pglite`). */
  readonly name: string
  /**
   * Inserts a conversation, with its first `messages` (if any) in the same
   * write: a chat turn stores its user message here, one round trip instead
   * of two. Idempotent: inserting the same id for the same user again
   * succeeds, keeps the first title and adds only messages whose ids are new.
   */
  readonly create: (input: {
    readonly id: string
    readonly userId: string
    readonly title: string
    readonly now: Date
    readonly messages?: ReadonlyArray<NewMessage> | undefined
  }) => Effect.Effect<Conversation, StoreUnavailable>
  /** The conversation with this id if this user owns it. */
  readonly find: (input: {
    readonly userId: string
    readonly id: string
  }) => Effect.Effect<Option.Option<Conversation>, StoreUnavailable>
  /** The conversation's messages, oldest first; empty when the user does not own it. */
  readonly history: (input: {
    readonly userId: string
    readonly conversationId: string
  }) => Effect.Effect<ReadonlyArray<Message>, StoreUnavailable>
  /**
   * Appends messages to a conversation the user owns and touches its
   * `updatedAt`. Returns `false` (and writes nothing) when the user does not
   * own the conversation.
   */
  readonly append: (input: {
    readonly userId: string
    readonly conversationId: string
    readonly messages: ReadonlyArray<NewMessage>
  }) => Effect.Effect<boolean, StoreUnavailable>
  /**
   * The user's conversations, most recently updated first, `limit` at a time.
   * Pass the previous page's `next` as `after` for the following page.
   */
  readonly list: (input: {
    readonly userId: string
    readonly limit: number
    readonly after?: Cursor | undefined
  }) => Effect.Effect<Page, StoreUnavailable>
  /** Renames a conversation the user owns; `None` when they do not own it. */
  readonly rename: (input: {
    readonly userId: string
    readonly id: string
    readonly title: string
    readonly now: Date
  }) => Effect.Effect<Option.Option<Conversation>, StoreUnavailable>
  /** Deletes a conversation the user owns, with its messages; `false` when they do not own it. */
  readonly remove: (input: {
    readonly userId: string
    readonly id: string
  }) => Effect.Effect<boolean, StoreUnavailable>
  /**
   * Whether any user owns a conversation with this id. Not scoped by user:
   * only for telling a cross-user attempt from a missing id in the audit log,
   * never for answering a request.
   */
  readonly exists: (id: string) => Effect.Effect<boolean, StoreUnavailable>
  /**
   * Deletes, in one batch of at most `limit`, conversations created and last
   * updated before `createdBefore` that never received an assistant reply
   * with content (abandoned), and returns their ids. A conversation touched
   * since (a turn in progress) is spared. Never blocks rows other writers hold.
   */
  readonly deleteAbandoned: (input: {
    readonly createdBefore: Date
    readonly limit: number
  }) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly userId: string }>, StoreUnavailable>
  /**
   * Succeeds as soon as the database answers at all, whatever its writes wait
   * on (a lock, a disk stalling on fsync): a trivial query on a connection of
   * its own, outside the pool the writes queue in. While calls of a chat turn
   * wait on a store that answers nothing else, this tells a database that is
   * there but held up (the stream waits for its conversation) from one that
   * cannot be reached (the stream starts on a temporary id). Optional: a store
   * without it is judged by its other answers alone.
   */
  readonly alive?: Effect.Effect<void, StoreUnavailable> | undefined
  /** How many conversations created in the window exist, and how many of them are abandoned. */
  readonly abandonment: (input: {
    readonly createdFrom: Date
    readonly createdBefore: Date
  }) => Effect.Effect<{ readonly created: number; readonly abandoned: number }, StoreUnavailable>
}

/** Where a page of `list` ends: the last conversation's `updatedAt` and id. */
export interface Cursor {
  readonly updatedAt: Date
  readonly id: string
}

/** One page of conversations; `next` is absent on the last page. */
export interface Page {
  readonly conversations: ReadonlyArray<Conversation>
  readonly next?: Cursor | undefined
}

/**
 * Whether a conversation's messages count as abandoned: no assistant reply
 * with content (the user never saw an answer).
 */
export const isAbandoned = (messages: ReadonlyArray<Pick<Message, "role" | "content">>): boolean =>
  !messages.some((message) => message.role === "assistant" && message.content !== "")

/** Orders conversations most recently updated first, ties by id descending. */
export const newestFirst = (a: Conversation, b: Conversation): number =>
  b.updatedAt.getTime() - a.updatedAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)

/** Whether a conversation comes after the cursor in `newestFirst` order. */
export const isAfter = (conversation: Conversation, cursor: Cursor): boolean =>
  conversation.updatedAt.getTime() < cursor.updatedAt.getTime() ||
  (conversation.updatedAt.getTime() === cursor.updatedAt.getTime() && conversation.id < cursor.id)

/** The conversation store service. */
export class ConversationStore extends Context.Service<ConversationStore, Service>()(
  "@convoke/core/ConversationStore"
) {}

/**
 * An in-memory store, for unit tests and throwaway demos. Nothing survives the
 * process.
 */
export const makeMemory = (): Service => {
  const conversations = new Map<string, Conversation>()
  const messages = new Map<string, Array<Message>>()
  const owned = (userId: string, id: string) => {
    const conversation = conversations.get(id)
    return conversation !== undefined && conversation.userId === userId ? conversation : undefined
  }
  /** Adds the messages whose ids are new and moves `updatedAt` up to the latest of them. */
  const addMessages = (conversationId: string, added: ReadonlyArray<NewMessage>) => {
    const conversation = conversations.get(conversationId)!
    const list = messages.get(conversationId)!
    for (const message of added) {
      if (list.some((existing) => existing.id === message.id)) continue
      list.push({ ...message, conversationId })
    }
    const latest = Math.max(
      conversation.updatedAt.getTime(),
      ...added.map((message) => message.createdAt.getTime())
    )
    conversations.set(conversationId, { ...conversation, updatedAt: new Date(latest) })
  }
  return {
    name: "memory",
    create: ({ id, userId, title, now, messages: first = [] }) =>
      Effect.suspend(() => {
        const existing = conversations.get(id)
        // Idempotent for the owner; another user's id is never revealed (as in the SQL store).
        if (existing !== undefined && existing.userId !== userId) {
          return Effect.fail(unavailable(new Error("The conversation id is taken")))
        }
        if (existing === undefined) {
          conversations.set(id, { id, userId, title, createdAt: now, updatedAt: now })
          messages.set(id, [])
        }
        if (first.length > 0) addMessages(id, first)
        return Effect.succeed(conversations.get(id)!)
      }),
    find: ({ userId, id }) => Effect.sync(() => Option.fromUndefinedOr(owned(userId, id))),
    history: ({ userId, conversationId }) =>
      Effect.sync(() => (owned(userId, conversationId) ? [...(messages.get(conversationId) ?? [])] : [])),
    append: ({ userId, conversationId, messages: added }) =>
      Effect.sync(() => {
        if (owned(userId, conversationId) === undefined) return false
        addMessages(conversationId, added)
        return true
      }),
    list: ({ userId, limit, after }) =>
      Effect.sync(() => {
        const mine = [...conversations.values()]
          .filter((conversation) => conversation.userId === userId)
          .filter((conversation) => after === undefined || isAfter(conversation, after))
          .sort(newestFirst)
        const page = mine.slice(0, limit)
        const last = page.at(-1)
        return mine.length > limit && last !== undefined
          ? { conversations: page, next: { updatedAt: last.updatedAt, id: last.id } }
          : { conversations: page }
      }),
    rename: ({ userId, id, title, now }) =>
      Effect.sync(() => {
        const conversation = owned(userId, id)
        if (conversation === undefined) return Option.none()
        const renamed = { ...conversation, title, updatedAt: now }
        conversations.set(id, renamed)
        return Option.some(renamed)
      }),
    remove: ({ userId, id }) =>
      Effect.sync(() => {
        if (owned(userId, id) === undefined) return false
        conversations.delete(id)
        messages.delete(id)
        return true
      }),
    exists: (id) => Effect.sync(() => conversations.has(id)),
    deleteAbandoned: ({ createdBefore, limit }) =>
      Effect.sync(() => {
        const removed: Array<{ id: string; userId: string }> = []
        for (const conversation of conversations.values()) {
          if (removed.length >= limit) break
          if (conversation.createdAt >= createdBefore || conversation.updatedAt >= createdBefore) continue
          if (!isAbandoned(messages.get(conversation.id) ?? [])) continue
          removed.push({ id: conversation.id, userId: conversation.userId })
        }
        for (const { id } of removed) {
          conversations.delete(id)
          messages.delete(id)
        }
        return removed
      }),
    abandonment: ({ createdFrom, createdBefore }) =>
      Effect.sync(() => {
        let created = 0
        let abandoned = 0
        for (const conversation of conversations.values()) {
          if (conversation.createdAt < createdFrom || conversation.createdAt >= createdBefore) continue
          created++
          if (isAbandoned(messages.get(conversation.id) ?? [])) abandoned++
        }
        return { created, abandoned }
      })
  }
}

/** An in-memory store layer (a fresh, empty store each time it is built). */
export const layerMemory: Layer.Layer<ConversationStore> = Layer.sync(ConversationStore, makeMemory)

/** Wraps any thrown value as `StoreUnavailable`, for store implementations. */
export const unavailable = (cause: unknown): StoreUnavailable =>
  new StoreUnavailable({
    message: "The conversation store is unavailable",
    cause
  })
