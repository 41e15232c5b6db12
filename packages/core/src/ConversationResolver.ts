/**
 * Decides which conversation a chat request continues, following the v0.3
 * resolution table, within the time the store is given for it:
 *
 * | input                                   | streaming | not streaming |
 * |-----------------------------------------|-----------|---------------|
 * | omitted / null / ""                     | create    | create        |
 * | "new"                                   | create    | create        |
 * | UUID of a conversation the user owns    | resume    | resume        |
 * | malformed, unknown or another user's id | create    | 404           |
 *
 * A stream never waits for a store that is down: once the store has answered
 * nothing for the creation budget (`ChatConfig.creationBudget`), or while the
 * outbox knows the store is down, it starts on a temporary conversation that
 * waits in the outbox under the id the client gets at once. A store that is
 * slow but answering other calls is waited for, up to 10 s. Creations and
 * attempts at another user's conversation are audited; the `ChatHooks` hear
 * of every resolution.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as AuditLog from "./AuditLog.ts"
import { ChatConfig } from "./ChatConfig.ts"
import { ConversationNotFound, StoreUnavailable } from "./ChatError.ts"
import { ChatHooks, type TurnContext } from "./ChatHooks.ts"
import { ConversationOutbox, whileStoreAnswers } from "./ConversationOutbox.ts"
import * as ConversationStore from "./ConversationStore.ts"
import * as Deadline from "./Deadline.ts"
import type { Principal } from "./Identity.ts"
import { IdGenerator } from "./IdGenerator.ts"

/**
 * Why a conversation was created or chosen: `absent` (no id given), `new`
 * (explicit `"new"`), `invalid_id` (malformed), `unknown_id` (well-formed but
 * not this user's), `resumed`, `temporary` (the store was unavailable and
 * the conversation waits in the outbox), or `reconciled` (a temporary
 * conversation reached the store; reported by the outbox, never here).
 */
export type Source = "absent" | "new" | "invalid_id" | "unknown_id" | "resumed" | "temporary" | "reconciled"

/** The outcome of resolution. */
export interface Resolution {
  readonly conversation: ConversationStore.Conversation
  readonly source: Source
  /** Whether the conversation waits in the outbox: its id is not stored yet. */
  readonly temporary: boolean
}

/** What resolution needs from the request. */
export interface Input {
  readonly principal: Principal
  readonly conversationId: string | null | undefined
  readonly stream: boolean
  readonly message: string
  readonly requestId?: string | undefined
  /**
   * Messages to store with a conversation the resolution creates, in the same
   * write (a chat turn's user message). A resumed conversation gets none of
   * them: the turn appends them itself.
   */
  readonly messages?: ReadonlyArray<ConversationStore.NewMessage> | undefined
}

/**
 * How long a stream's creation may wait in all while the store keeps
 * answering others (milliseconds; `storeTimeout` when that is longer). A
 * burst of new streams queues behind the pool for seconds; giving those
 * streams temporary ids would only add the outbox's writes to the queue.
 */
const QUEUED_CREATION_CEILING = 10_000

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
export type Requested =
  | { readonly _tag: "Create"; readonly source: "absent" | "new" | "invalid_id" }
  | { readonly _tag: "Resume"; readonly id: string }

/** Classifies a requested id: the one place the table's first column is read. */
export const classify = (conversationId: string | null | undefined): Requested => {
  if (conversationId === undefined || conversationId === null || conversationId === "") {
    return { _tag: "Create", source: "absent" }
  }
  if (conversationId === "new") return { _tag: "Create", source: "new" }
  if (!isUuid(conversationId)) return { _tag: "Create", source: "invalid_id" }
  return { _tag: "Resume", id: conversationId.toLowerCase() }
}

/** The resolver. */
export interface Service {
  /**
   * Resolves the conversation of a request. Fails with `ConversationNotFound`
   * (never for streams) or `StoreUnavailable` (never for streams while the
   * outbox has room).
   */
  readonly resolve: (input: Input) => Effect.Effect<Resolution, ConversationNotFound | StoreUnavailable>
}

/** The resolver service. */
export class ConversationResolver extends Context.Service<ConversationResolver, Service>()(
  "@convoke/core/ConversationResolver"
) {}

/** Builds the resolver on the store (with its outbox) in context. */
export const make = Effect.gen(function* () {
  const store = yield* ConversationStore.ConversationStore
  const outbox = yield* ConversationOutbox
  const config = yield* ChatConfig
  const ids = yield* IdGenerator
  const hooks = yield* ChatHooks
  const audit = yield* AuditLog.AuditLog
  const clock = yield* Clock.Clock
  const now = () => new Date(clock.currentTimeMillisUnsafe())

  const conversationFor = (input: Input, id: string): ConversationStore.Conversation => {
    const at = now()
    return {
      id,
      userId: input.principal.userId,
      title: titleFrom(input.message),
      createdAt: at,
      updatedAt: at
    }
  }

  const create = (input: Input, id: string, source: Source) =>
    Effect.map(
      store.create({
        id,
        userId: input.principal.userId,
        title: titleFrom(input.message),
        now: now(),
        messages: input.messages
      }),
      (conversation): Resolution => ({ conversation, source, temporary: false })
    )

  /** The table, on the store. */
  const inStore = Effect.fnUntraced(function* (input: Input, requested: Requested, newId: string) {
    if (requested._tag === "Create") {
      if (requested.source === "invalid_id" && !input.stream) return yield* new ConversationNotFound()
      if (requested.source === "invalid_id") {
        yield* Effect.logInfo("Malformed conversation_id; starting a new conversation")
      }
      return yield* create(input, newId, requested.source)
    }
    const found = yield* store.find({ userId: input.principal.userId, id: requested.id })
    if (Option.isSome(found))
      return { conversation: found.value, source: "resumed", temporary: false } satisfies Resolution
    if (!input.stream) return yield* new ConversationNotFound()
    yield* Effect.logInfo("Unknown conversation_id; starting a new conversation")
    return yield* create(input, newId, "unknown_id")
  })

  /** A new conversation that waits in the outbox, with its messages, until the store is back. */
  const temporary = Effect.fnUntraced(function* (input: Input, id: string) {
    const conversation = conversationFor(input, id)
    const queued =
      outbox.hasRoom(input.principal.userId) &&
      (yield* outbox.enqueue({
        _tag: "Create",
        conversation,
        messages: input.messages,
        requestId: input.requestId
      }))
    if (!queued) return yield* new StoreUnavailable({ message: "The conversation store is unavailable" })
    yield* Effect.logWarning("The store is unavailable; the stream starts on a temporary conversation").pipe(
      Effect.annotateLogs({ conversationId: id })
    )
    return { conversation, source: "temporary", temporary: true } satisfies Resolution
  })

  /** Audits a creation, and a named conversation that turned out to be another user's. */
  const auditOf = (input: Input, requested: Requested, resolution: Resolution | undefined) =>
    Effect.gen(function* () {
      const at = now()
      const base = { userId: input.principal.userId, requestId: input.requestId, at }
      const entries: Array<AuditLog.Entry> = []
      if (resolution !== undefined && resolution.source !== "resumed") {
        entries.push({
          action: "conversation.created",
          cause: resolution.source,
          conversationId: resolution.conversation.id,
          ...base
        })
      }
      if (
        requested._tag === "Resume" &&
        (resolution === undefined || resolution.source === "unknown_id") &&
        (yield* store.exists(requested.id).pipe(Effect.orElseSucceed(() => false)))
      ) {
        entries.push({ action: "conversation.cross_user_access", conversationId: requested.id, ...base })
      }
      if (entries.length > 0) yield* audit.record(entries)
    })

  const creationDeadline = whileStoreAnswers(outbox, {
    budget: config.creationBudget,
    ceiling: Duration.millis(Math.max(Duration.toMillis(config.storeTimeout), QUEUED_CREATION_CEILING))
  })
  const resolve = Effect.fnUntraced(function* (input: Input) {
    const startedAt = clock.currentTimeMillisUnsafe()
    const context: TurnContext = {
      userId: input.principal.userId,
      requestId: input.requestId,
      stream: input.stream
    }
    const elapsed = () => clock.currentTimeMillisUnsafe() - startedAt
    const failed = (durationMillis: number) =>
      hooks.conversationFailed({ ...context, reason: "store_unavailable", durationMillis })
    const requested = classify(input.conversationId)
    const newId = yield* ids.next

    const attempt = inStore(input, requested, newId).pipe(
      input.stream
        ? // A busy store that keeps answering others is slow, not down: the creation
          // waits its turn (up to 10 s) while the store makes progress.
          creationDeadline
        : Deadline.within(config.storeTimeout),
      Effect.catchTag("TimeoutError", () =>
        Effect.fail(new StoreUnavailable({ message: "The conversation store did not answer in time" }))
      ),
      Effect.tapError((error) =>
        error._tag === "StoreUnavailable"
          ? Effect.suspend(() => failed(elapsed()))
          : Effect.forkDetach(auditOf(input, requested, undefined), { startImmediately: true })
      ),
      // Streams never wait for the store: they start on a temporary id it gets later.
      Effect.catchTag("StoreUnavailable", (error) =>
        input.stream ? temporary(input, newId) : Effect.fail(error)
      )
    )
    // A conversation still waiting in the outbox resumes from there, store up or not.
    const held = requested._tag === "Resume" ? outbox.held(input.principal.userId, requested.id) : undefined
    // While the outbox knows the store is down, streams do not spend their
    // budget finding that out again.
    const storeKnownDown = held === undefined && input.stream && !outbox.storeAvailable()
    if (storeKnownDown) yield* failed(0)
    const resolution: Resolution =
      held !== undefined
        ? { conversation: held, source: "resumed", temporary: true }
        : storeKnownDown
          ? yield* temporary(input, newId)
          : yield* attempt
    // For a stream, scheduled rather than started here: the metadata event goes out first.
    yield* Effect.forkDetach(auditOf(input, requested, resolution), { startImmediately: !input.stream })
    yield* hooks.conversationResolved({
      ...context,
      conversationId: resolution.conversation.id,
      source: resolution.source,
      created: resolution.source !== "resumed",
      durationMillis: elapsed()
    })
    return resolution
  })

  return ConversationResolver.of({ resolve })
})

/** The resolver as a layer, on the store and outbox in context. */
export const layer: Layer.Layer<
  ConversationResolver,
  never,
  ConversationStore.ConversationStore | ConversationOutbox
> = Layer.effect(ConversationResolver, make)
