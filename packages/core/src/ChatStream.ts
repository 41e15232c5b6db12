/**
 * A turn as a stream of events: the metadata event first, alone, then the
 * turn's text as content events, a failure as one error event, heartbeats
 * while the model is silent, and — as SSE — `[DONE]` last.
 *
 * One fiber produces it all into a sink (`StreamSink`): the response itself
 * when a binding writes it natively, or a small buffer a `Stream` reader
 * takes from. Interrupting that fiber (the reader left, or shutdown) ends
 * the turn.
 *
 * @since 0.3.0
 */
import { Clock, Effect, Exit, type Scope, Stream } from "effect"
import { ServerShutdown } from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import type { TurnError } from "./ChatTurn.ts"
import type * as Heartbeat from "./Heartbeat.ts"
import * as StreamSink from "./StreamSink.ts"

/** Marks a heartbeat in the event stream; encoded as an SSE comment, never as data. */
export interface HeartbeatItem {
  readonly type: "heartbeat"
}
const heartbeat: HeartbeatItem = { type: "heartbeat" }

/** What a chat stream emits: wire events, and heartbeats while the model is silent. */
export type StreamItem = ChatEvent.ChatEvent | HeartbeatItem

const encoder = new TextEncoder()
const HEARTBEAT_FRAME = encoder.encode(ChatEvent.HEARTBEAT)

/** The `[DONE]` frame that ends every SSE stream, as bytes. */
export const DONE_FRAME: Uint8Array = encoder.encode(ChatEvent.DONE)

/** The SSE frame of a stream item, as bytes: an event's `data:` line, or a heartbeat's comment. */
export const sseFrame = (item: StreamItem): Uint8Array =>
  item.type === "heartbeat" ? HEARTBEAT_FRAME : encoder.encode(ChatEvent.encode(item))

/** How a stream carries its items: each one as `item` makes it, then `end` if given. */
export interface Encoding<A> {
  readonly item: (item: StreamItem) => A
  readonly end?: A | undefined
}

/** The items themselves. */
export const asItems: Encoding<StreamItem> = { item: (item) => item }

/** SSE frames, ending with `[DONE]`. */
export const asSse: Encoding<Uint8Array> = { item: sseFrame, end: DONE_FRAME }

/** The error event a turn that failed after the start ends with. */
export const errorEventOf = (error: TurnError): ChatEvent.ErrorEvent => {
  switch (error._tag) {
    case "ModelError":
      return ChatEvent.error(error.type, error.message)
    case "StoreUnavailable":
      return ChatEvent.error(
        "unavailable",
        "The conversation store is unavailable; the reply was not generated"
      )
    case "ServerShutdown":
      return ChatEvent.error("shutdown", "The server is shutting down; resume the conversation by its id")
  }
}

/**
 * Resumes once the event loop has polled for I/O: two scheduler hops (each a
 * `setImmediate`), since the first may run before the next poll. The turn
 * starts after it, so a reader gets the metadata event in a read of its own
 * even when nothing (no store write, no model latency) separates it from the
 * first content.
 */
const afterNextPoll = Effect.andThen(Effect.yieldNow, Effect.yieldNow)

/** What a turn's stream is made from. */
export interface Options<A> {
  readonly metadata: ChatEvent.MetadataEvent
  readonly encoding: Encoding<A>
  /** Runs the turn, handing each text delta to `onText`. */
  readonly turn: (onText: (text: string) => Effect.Effect<void>) => Effect.Effect<void, TurnError>
  readonly heartbeat: Heartbeat.Heartbeat
  /** Told when the metadata event went out (epoch millis). */
  readonly metadataSent: (sentAtMillis: number) => Effect.Effect<void>
  /** Told when the reader left before the turn started: the turn never reports its own end then. */
  readonly abandoned: Effect.Effect<void>
  /** Whether the server is shutting down: an interrupted stream then ends with the shutdown error event. */
  readonly isShuttingDown: () => boolean
}

/** The producer of a turn's stream. */
export const producer =
  <A>(options: Options<A>): StreamSink.Producer<A> =>
  (sink) => {
    const { encoding, heartbeat: beat } = options
    const end = encoding.end === undefined ? [] : [encoding.end]
    // Set when the turn starts; from then on it reports its own end.
    let turnStarted = false
    return Effect.gen(function* () {
      const clock = yield* Clock.Clock
      // First, into an empty sink; `afterNextPoll` below lets the reader take
      // it alone before the turn starts, however fast the model is.
      sink.trySend(encoding.item(options.metadata))
      const listener: Heartbeat.Listener = {
        lastSent: clock.currentTimeMillisUnsafe(),
        // Dropped when the reader is behind: a reader that far behind needs no ping.
        ping: () => sink.trySend(encoding.item(heartbeat))
      }
      yield* options.metadataSent(listener.lastSent)
      const send = (item: StreamItem) => {
        listener.lastSent = clock.currentTimeMillisUnsafe()
        return sink.send(encoding.item(item))
      }
      yield* afterNextPoll
      turnStarted = true
      yield* beat.watch(listener)
      yield* options
        .turn((text) => send(ChatEvent.content(text)))
        .pipe(
          Effect.catch((error) => send(errorEventOf(error))),
          Effect.ensuring(Effect.sync(() => beat.unwatch(listener)))
        )
    }).pipe(
      Effect.onExit((exit) => {
        if (Exit.isSuccess(exit)) return sink.close(end)
        // Ended by shutdown: the reader learns why, if it still reads.
        if (options.isShuttingDown()) {
          return sink.close([encoding.item(errorEventOf(new ServerShutdown())), ...end])
        }
        return Effect.andThen(sink.close([]), turnStarted ? Effect.void : options.abandoned)
      })
    )
  }

/** Items a stream holds for a slow reader before the model is paused. */
const BUFFER_SIZE = 16

/** A producer as a stream, read through a small buffer (a full buffer pauses the model). */
export const buffered = <A>(produce: StreamSink.Producer<A>, scope: Scope.Scope): Stream.Stream<A> =>
  Stream.callback<A>((queue) => produce(StreamSink.queueSink(queue, scope)), { bufferSize: BUFFER_SIZE })
