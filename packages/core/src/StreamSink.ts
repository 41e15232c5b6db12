/**
 * Where a chat turn's frames go. A stream's producer writes to a `Sink`: the
 * bounded buffer a `Stream` reader takes from, or — when a binding can write
 * the response itself (`NodeHandler`) — the response, with no buffer and no
 * hand-over between fibers for every frame.
 *
 * A stream made by `ChatService.sse` carries its producer (`producerOf`); a
 * binding that finds one runs it on its own sink, and any other reader just
 * reads the stream. Wrapping the stream (a middleware mapping the body)
 * hides the producer, which only costs the shortcut.
 *
 * @since 0.2.0
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"

/** A destination for frames. */
export interface Sink<A> {
  /** Sends a frame, waiting while the reader is behind. */
  readonly send: (frame: A) => Effect.Effect<void>
  /** Sends a frame if it can be taken now; `false` (and nothing sent) otherwise. */
  readonly trySend: (frame: A) => boolean
  /** Sends the last frames and ends, without waiting for the reader. */
  readonly close: (frames: ReadonlyArray<A>) => Effect.Effect<void>
}

/** Produces a whole stream into a sink. */
export type Producer<A> = (sink: Sink<A>) => Effect.Effect<void>

/**
 * The sink of a bounded queue a stream reader takes from. `close` puts the
 * last frames into free slots; for a reader a whole buffer behind they are
 * sent by a fiber in `scope`, so the producer can end (a reader that leaves
 * shuts the queue down, which ends that fiber's wait).
 */
export const queueSink = <A>(queue: Queue.Queue<A, Cause.Done>, scope: Scope.Scope): Sink<A> => ({
  send: (frame) => Effect.asVoid(Queue.offer(queue, frame)),
  trySend: (frame) => Queue.offerUnsafe(queue, frame),
  close: (frames) => {
    let sent = 0
    while (sent < frames.length && Queue.offerUnsafe(queue, frames[sent]!)) sent++
    if (sent === frames.length) {
      Queue.endUnsafe(queue)
      return Effect.void
    }
    return Effect.asVoid(
      Effect.forkIn(Effect.andThen(Queue.offerAll(queue, frames.slice(sent)), Queue.end(queue)), scope)
    )
  }
})

/** Where a stream keeps the producer it carries. */
const ProducerKey: unique symbol = Symbol.for("@convoke/core/StreamSink/Producer")

/** A stream that also carries its producer. */
interface Produced {
  readonly [ProducerKey]?: Producer<Uint8Array> | undefined
}

/** Marks `stream` as also producible straight into a sink by `producer`. */
export const withProducer = (
  stream: Stream.Stream<Uint8Array>,
  producer: Producer<Uint8Array>
): Stream.Stream<Uint8Array> => Object.assign(stream, { [ProducerKey]: producer })

/** The producer a stream carries, if any: run it instead of reading the stream, never both. */
export const producerOf = (stream: Stream.Stream<unknown, unknown>): Producer<Uint8Array> | undefined =>
  (stream as Produced)[ProducerKey]
