/**
 * An extension that records the chat-turn events of an application, so a
 * test awaits an event instead of waiting for time to pass: a stream's turn
 * ends, for one, in a finalizer that runs after the client has its last byte.
 *
 * Merged after other extensions (`ChatMetrics.layer()`, `ChatLog.layer()`),
 * its hooks run after theirs and its middleware wraps theirs, so whatever it
 * has seen, they have handled.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { ChatExtension, type ChatHooks } from "../index.ts"

/** The events seen so far, oldest first. */
export interface Seen {
  readonly conversationResolved: ReadonlyArray<ChatHooks.ConversationResolved>
  readonly conversationFailed: ReadonlyArray<ChatHooks.ConversationFailed>
  readonly metadataSent: ReadonlyArray<ChatHooks.MetadataSent>
  readonly firstToken: ReadonlyArray<ChatHooks.FirstToken>
  readonly turnEnded: ReadonlyArray<ChatHooks.TurnEnded>
  /** Requests interrupted before their response: the client left first. */
  readonly interrupted: number
}

/** An observer and what it has seen. */
export interface TestObserver {
  /** The extension; merge it into the application's layer. */
  readonly layer: Layer.Layer<never>
  readonly seen: Seen
  /** Resolves once `done` holds for what has been seen: at once if it does already. */
  readonly until: (done: (seen: Seen) => boolean) => Promise<void>
}

/** Creates an observer. */
export const make = (): TestObserver => {
  const seen = {
    conversationResolved: [] as Array<ChatHooks.ConversationResolved>,
    conversationFailed: [] as Array<ChatHooks.ConversationFailed>,
    metadataSent: [] as Array<ChatHooks.MetadataSent>,
    firstToken: [] as Array<ChatHooks.FirstToken>,
    turnEnded: [] as Array<ChatHooks.TurnEnded>,
    interrupted: 0
  }
  const waiting = new Set<() => void>()
  const record = (update: () => void) =>
    Effect.sync(() => {
      update()
      for (const check of waiting) check()
    })
  const layer = ChatExtension.layer({
    hooks: {
      conversationResolved: (event) => record(() => seen.conversationResolved.push(event)),
      conversationFailed: (event) => record(() => seen.conversationFailed.push(event)),
      metadataSent: (event) => record(() => seen.metadataSent.push(event)),
      firstToken: (event) => record(() => seen.firstToken.push(event)),
      turnEnded: (event) => record(() => seen.turnEnded.push(event))
    },
    middleware: (app) => Effect.onInterrupt(app, () => record(() => seen.interrupted++))
  })
  const until = (done: (seen: Seen) => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (!done(seen)) return
        waiting.delete(check)
        resolve()
      }
      waiting.add(check)
      check()
    })
  return { layer, seen, until }
}

/** How many streams have ended (a turn of a non-streaming request is not one). */
export const streamsEnded = (seen: Seen): number => seen.turnEnded.filter((event) => event.stream).length
