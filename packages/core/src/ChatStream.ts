/**
 * A turn as a stream of events: the metadata event first, alone, then the
 * turn's text as content events, a failure as one error event, heartbeats
 * while the model is silent, and — as SSE — `[DONE]` last.
 *
 * The turn itself runs apart (`TurnRunner`) and logs its events
 * (`TurnLog`); a stream is one reader of them. One fiber produces the stream
 * into a sink (`StreamSink`): the response itself when a binding writes it
 * natively, or a small buffer a `Stream` reader takes from. Interrupting that
 * fiber (the reader left) ends the stream, not the turn.
 *
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { ServerShutdown } from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import type { TurnError } from "./ChatTurn.ts"
import type * as Heartbeat from "./Heartbeat.ts"
import * as StreamSink from "./StreamSink.ts"
import type * as TurnLog from "./TurnLog.ts"

/** Marks a heartbeat in the event stream; encoded as an SSE comment, never as data. */
export interface HeartbeatItem {
  readonly type: "heartbeat"
}
const heartbeat: HeartbeatItem = { type: "heartbeat" }

/** What a chat stream emits: wire events, and heartbeats while the model is silent. */
export type StreamItem = ChatEvent.ChatEvent | HeartbeatItem

const encoder = new TextEncoder()
const HEARTBEAT_FRAME = encoder.encode(ChatEvent.HEARTBEAT)

/** The `[DONE]` frame, as bytes (without the `id:` line a turn's `[DONE]` carries). */
export const DONE_FRAME: Uint8Array = encoder.encode(ChatEvent.DONE)

/** The SSE frame of a stream item, as bytes, without an `id:` line: an event's `data:` line, or a heartbeat's comment. */
export const sseFrame = (item: StreamItem): Uint8Array =>
  item.type === "heartbeat" ? HEARTBEAT_FRAME : encoder.encode(ChatEvent.encode(item))

/**
 * How a stream carries its items: the metadata event, heartbeats and the
 * turn's logged events (`entry` answers `undefined` to leave one out).
 */
export interface Encoding<A> {
  readonly metadata: (event: ChatEvent.MetadataEvent) => A
  readonly heartbeat: A
  readonly entry: (turnId: string, entry: TurnLog.Entry) => A | undefined
  /** The last items of a stream cut short by shutdown before the log delivered the turn's end. */
  readonly cutShort: (event: ChatEvent.ErrorEvent) => ReadonlyArray<A>
}

/** The items themselves: wire events without ids, and no `done`. */
export const asItems: Encoding<StreamItem> = {
  metadata: (event) => event,
  heartbeat,
  entry: (_, { event }) => (event.type === "done" ? undefined : event),
  cutShort: (event) => [event]
}

/** SSE frames: the metadata event alone, then each event with its `id:` line, `[DONE]` included. */
export const asSse: Encoding<Uint8Array> = {
  metadata: sseFrame,
  heartbeat: HEARTBEAT_FRAME,
  entry: (turnId, { seq, event }) =>
    encoder.encode(ChatEvent.encodeWithId(turnId, seq, event.type === "done" ? undefined : event)),
  cutShort: (event) => [sseFrame(event), DONE_FRAME]
}

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

/** A turn in the log, not running yet: what a stream begins before its metadata event goes out. */
export interface Begun {
  /** Runs the turn (once, whichever of the two comes first). */
  readonly run: Effect.Effect<void>
  /** Runs the turn with no reader: the stream's reader left before it started, and may come back. */
  readonly runUnread: Effect.Effect<void>
}

/** What a resume begins: nothing, its turn runs or ran already. */
export const alreadyBegun: Begun = { run: Effect.void, runUnread: Effect.void }

/** What a stream of a turn is made from. */
export interface Options<A> {
  readonly metadata: ChatEvent.MetadataEvent
  readonly encoding: Encoding<A>
  /**
   * Logs the turn (a new one) before the metadata event goes out, so a client
   * holding its ids can resume or stop it at once; the stream runs it once the
   * metadata event went out, or without a reader if the reader left first. A
   * resume begins nothing (`alreadyBegun`).
   */
  readonly begin: Effect.Effect<Begun>
  /** Delivers the turn's events to the reader, in order, to `done`. */
  readonly follow: (
    deliver: (entry: TurnLog.Entry) => Effect.Effect<void>
  ) => Effect.Effect<TurnLog.FollowEnd>
  readonly heartbeat: Heartbeat.Heartbeat
  /** Told when the metadata event went out (epoch millis). */
  readonly metadataSent: (sentAtMillis: number) => Effect.Effect<void>
  /** Whether the server is shutting down: an interrupted stream then ends with the shutdown error event. */
  readonly isShuttingDown: () => boolean
}

/**
 * The producer of a stream of a turn: the metadata event first, alone, then
 * the turn's events as the log delivers them, with heartbeats in between.
 * The stream ends after `done`; one whose events are no longer in the log
 * just ends, and the client's resume learns the rest through the REST API.
 */
export const producer =
  <A>(options: Options<A>): StreamSink.Producer<A> =>
  (sink) => {
    const { encoding, heartbeat: beat, metadata } = options
    const turnId = metadata.turn_id ?? ""
    let begun: Begun | undefined
    return Effect.gen(function* () {
      const clock = yield* Clock.Clock
      begun = yield* options.begin
      // First, into an empty sink; `afterNextPoll` below lets the reader take
      // it alone before the turn starts, however fast the model is.
      sink.trySend(encoding.metadata(metadata))
      // Set once the terminator is on its way: nothing may follow `[DONE]`.
      let ended = false
      const listener: Heartbeat.Listener = {
        lastSent: clock.currentTimeMillisUnsafe(),
        // Dropped when the reader is behind: a reader that far behind needs no ping.
        ping: () => {
          if (!ended) sink.trySend(encoding.heartbeat)
        }
      }
      yield* options.metadataSent(listener.lastSent)
      yield* afterNextPoll
      yield* begun.run
      yield* beat.watch(listener)
      yield* options
        .follow((entry) => {
          if (entry.event.type === "done") {
            // The heartbeat's fiber may wake while `[DONE]` waits for the reader.
            ended = true
            beat.unwatch(listener)
          }
          const frame = encoding.entry(turnId, entry)
          if (frame === undefined) return Effect.void
          listener.lastSent = clock.currentTimeMillisUnsafe()
          return sink.send(frame)
        })
        .pipe(Effect.ensuring(Effect.sync(() => beat.unwatch(listener))))
    }).pipe(
      Effect.onExit((exit) => {
        if (Exit.isSuccess(exit)) return sink.close([])
        // The client may hold the turn's ids: a turn begun and not run yet runs, the reader gone
        // (shutdown ends it at once). A turn runs once: after `run`, this does nothing.
        const unstarted = begun === undefined ? Effect.void : begun.runUnread
        // Ended by shutdown: the reader learns why, if it still reads.
        if (options.isShuttingDown())
          return Effect.andThen(sink.close(encoding.cutShort(errorEventOf(new ServerShutdown()))), unstarted)
        return Effect.andThen(sink.close([]), unstarted)
      })
    )
  }

/** Items a stream holds for a slow reader before the model is paused. */
const BUFFER_SIZE = 16

/** A producer as a stream, read through a small buffer (a full buffer pauses the model). */
export const buffered = <A>(produce: StreamSink.Producer<A>, scope: Scope.Scope): Stream.Stream<A> =>
  Stream.callback<A>((queue) => produce(StreamSink.queueSink(queue, scope)), { bufferSize: BUFFER_SIZE })
