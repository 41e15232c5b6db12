/**
 * Decides which conversation a chat request continues, following the v0.3
 * resolution table:
 *
 * | input                                   | streaming | not streaming |
 * |-----------------------------------------|-----------|---------------|
 * | omitted / null / ""                     | create    | create        |
 * | "new"                                   | create    | create        |
 * | UUID of a conversation the user owns    | resume    | resume        |
 * | malformed, unknown or another user's id | create    | 404           |
 *
 * @since 0.1.0
 */
import { Clock, Effect, Option } from "effect"
import { ConversationNotFound, type StoreUnavailable } from "./ChatError.ts"
import * as ConversationStore from "./ConversationStore.ts"
import type { Principal } from "./Identity.ts"
import { IdGenerator } from "./IdGenerator.ts"

/**
 * Why a conversation was created or chosen: `absent` (no id given), `new`
 * (explicit `"new"`), `invalid_id` (malformed), `unknown_id` (well-formed but
 * not this user's), `resumed`, `temporary` (the store was unavailable and
 * the conversation waits in the outbox), or `reconciled` (a temporary
 * conversation reached the store; reported by the outbox, never by `resolve`).
 */
export type Source = "absent" | "new" | "invalid_id" | "unknown_id" | "resumed" | "temporary" | "reconciled"

/** The outcome of resolution. */
export interface Resolution {
  readonly conversation: ConversationStore.Conversation
  readonly source: Source
}

/** What resolution needs from the request. */
export interface Input {
  readonly principal: Principal
  readonly conversationId: string | null | undefined
  readonly stream: boolean
  readonly message: string
  /** The id to give a created conversation; a fresh one from `IdGenerator` when absent. */
  readonly newId?: string | undefined
  /**
   * Messages to store with a conversation the resolution creates, in the same
   * write (a chat turn's user message). A resumed conversation gets none of
   * them: the caller appends them itself.
   */
  readonly messages?: ReadonlyArray<ConversationStore.NewMessage> | undefined
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Whether a string is a UUID in canonical 8-4-4-4-12 hex form. */
export const isUuid = (value: string): boolean => UUID.test(value)

const MAX_TITLE = 50
const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" })

/**
 * The title of a new conversation: the message when it has at most 50
 * user-perceived characters, else its first 50 followed by `...`. Counting
 * grapheme clusters never splits an emoji or a surrogate pair.
 */
export const titleFrom = (message: string): string => {
  // Fast path: a string of at most 50 UTF-16 units has at most 50 graphemes.
  if (message.length <= MAX_TITLE) return message
  let count = 0
  for (const { index } of segmenter.segment(message)) {
    if (count === MAX_TITLE) return `${message.slice(0, index)}...`
    count++
  }
  return message
}

/** What a requested id asks for before the store is consulted. */
export const classify = (
  conversationId: string | null | undefined
):
  | { readonly _tag: "Create"; readonly source: "absent" | "new" | "invalid_id" }
  | { readonly _tag: "Resume"; readonly id: string } => {
  if (conversationId === undefined || conversationId === null || conversationId === "") {
    return { _tag: "Create", source: "absent" }
  }
  if (conversationId === "new") return { _tag: "Create", source: "new" }
  if (!isUuid(conversationId)) return { _tag: "Create", source: "invalid_id" }
  return { _tag: "Resume", id: conversationId.toLowerCase() }
}

/** Creates a conversation for the principal in `store`, titled after the message. */
const createIn = Effect.fnUntraced(function* (
  store: ConversationStore.Service,
  input: Input,
  source: Source
) {
  const id = input.newId ?? (yield* (yield* IdGenerator).next)
  const now = new Date(yield* Clock.currentTimeMillis)
  const conversation = yield* store.create({
    id,
    userId: input.principal.userId,
    title: titleFrom(input.message),
    now,
    messages: input.messages
  })
  return { conversation, source } satisfies Resolution
})

/** Creates a conversation for the principal, titled after the message. */
export const create = (input: Input, source: Source) =>
  ConversationStore.ConversationStore.use((store) => createIn(store, input, source))

/**
 * `resolve` on the given store rather than the one in context: the chat
 * service, which holds its store, saves providing it on every request.
 */
export const resolveIn = Effect.fnUntraced(function* (
  store: ConversationStore.Service,
  input: Input
): Effect.fn.Return<Resolution, ConversationNotFound | StoreUnavailable> {
  const requested = classify(input.conversationId)
  if (requested._tag === "Create") {
    if (requested.source === "invalid_id" && !input.stream) return yield* new ConversationNotFound()
    if (requested.source === "invalid_id") {
      yield* Effect.logInfo("Malformed conversation_id; starting a new conversation")
    }
    return yield* createIn(store, input, requested.source)
  }
  const found = yield* store.find({ userId: input.principal.userId, id: requested.id })
  if (Option.isSome(found)) return { conversation: found.value, source: "resumed" }
  if (!input.stream) return yield* new ConversationNotFound()
  yield* Effect.logInfo("Unknown conversation_id; starting a new conversation")
  return yield* createIn(store, input, "unknown_id")
})

/** Resolves the conversation of a chat request (see the table above). */
export const resolve = (
  input: Input
): Effect.Effect<Resolution, ConversationNotFound | StoreUnavailable, ConversationStore.ConversationStore> =>
  ConversationStore.ConversationStore.use((store) => resolveIn(store, input))
