/**
 * Where conversations and their messages live.
 *
 * Every operation is scoped by user id: a store never returns, extends or
 * reveals another user's conversation. `@convoke/store-pg` provides the
 * PostgreSQL implementation; `layerMemory` here is for tests and demos.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Option } from "effect"
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
 * How a message ended: `complete`, cut short (`partial`: client gone, timeout,
 * shutdown) or ended by a model failure (`error`).
 */
export type MessageStatus = "complete" | "partial" | "error"

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
  /** Inserts a conversation. Idempotent: inserting the same id for the same user again succeeds. */
  readonly create: (input: {
    readonly id: string
    readonly userId: string
    readonly title: string
    readonly now: Date
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
}

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
  return {
    name: "memory",
    create: ({ id, userId, title, now }) =>
      Effect.suspend(() => {
        const existing = conversations.get(id)
        if (existing !== undefined) {
          // Idempotent for the owner; another user's id is never revealed (as in the SQL store).
          return existing.userId === userId
            ? Effect.succeed(existing)
            : Effect.fail(unavailable(new Error("The conversation id is taken")))
        }
        const conversation: Conversation = { id, userId, title, createdAt: now, updatedAt: now }
        conversations.set(id, conversation)
        messages.set(id, [])
        return Effect.succeed(conversation)
      }),
    find: ({ userId, id }) => Effect.sync(() => Option.fromUndefinedOr(owned(userId, id))),
    history: ({ userId, conversationId }) =>
      Effect.sync(() => (owned(userId, conversationId) ? [...(messages.get(conversationId) ?? [])] : [])),
    append: ({ userId, conversationId, messages: added }) =>
      Effect.sync(() => {
        const conversation = owned(userId, conversationId)
        if (conversation === undefined) return false
        const list = messages.get(conversationId)!
        for (const message of added) {
          if (list.some((existing) => existing.id === message.id)) continue
          list.push({ ...message, conversationId })
        }
        const last = added.at(-1)
        if (last !== undefined)
          conversations.set(conversationId, { ...conversation, updatedAt: last.createdAt })
        return true
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
