import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as ChatEvent from "../src/ChatEvent.ts"
import * as ChatStream from "../src/ChatStream.ts"
import * as Heartbeat from "../src/Heartbeat.ts"
import type * as StreamSink from "../src/StreamSink.ts"
import * as TurnLog from "../src/TurnLog.ts"

const TURN_ID = "00000000-0000-4000-8000-000000000001"
const text = (frame: Uint8Array) => new TextDecoder().decode(frame)

describe("ChatStream", () => {
  it.effect(
    "writes nothing after [DONE], even when a heartbeat falls due while [DONE] waits for the reader",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const heartbeat = yield* Heartbeat.make(Duration.seconds(15))
          const written: Array<string> = []
          const doneSending = yield* Deferred.make<void>()
          const doneWaiting = yield* Deferred.make<void>()
          // A reader that is behind when [DONE] goes out: its `send` waits for `drain`.
          const sink: StreamSink.Sink<Uint8Array> = {
            send: (frame) =>
              Effect.gen(function* () {
                written.push(text(frame))
                if (text(frame).includes("[DONE]")) {
                  yield* Deferred.succeed(doneSending, undefined)
                  yield* Deferred.await(doneWaiting)
                }
              }),
            trySend: (frame) => {
              written.push(text(frame))
              return true
            },
            close: (frames) =>
              Effect.sync(() => {
                for (const frame of frames) written.push(text(frame))
              })
          }
          const produce = ChatStream.producer({
            metadata: ChatEvent.metadata({
              conversationId: "c",
              model: "m",
              timestampSeconds: 0,
              turnId: TURN_ID
            }),
            encoding: ChatStream.asSse,
            begin: Effect.succeed(ChatStream.alreadyBegun),
            follow: (deliver) =>
              Effect.gen(function* () {
                yield* deliver({ seq: 1, event: ChatEvent.content("hi") })
                yield* deliver({ seq: 2, event: TurnLog.done })
                return "done" as const
              }),
            heartbeat,
            metadataSent: () => Effect.void,
            isShuttingDown: () => false
          })
          const fiber = yield* Effect.forkChild(produce(sink))
          yield* Deferred.await(doneSending)
          // The heartbeat's fiber wakes while [DONE] is still waiting for the reader.
          yield* TestClock.adjust(Duration.seconds(20))
          yield* Deferred.succeed(doneWaiting, undefined)
          yield* Fiber.join(fiber)
          const last = written.findIndex((frame) => frame.includes("[DONE]"))
          assert.isAtLeast(last, 0)
          assert.deepStrictEqual(written.slice(last + 1), [])
        })
      )
  )
})
