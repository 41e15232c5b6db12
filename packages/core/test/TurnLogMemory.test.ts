import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { ChatEvent, IdGenerator, TurnLog } from "../src/index.ts"
import { liveHeap } from "./liveHeap.ts"

const turnInfo = (index: number): TurnLog.TurnInfo => ({
  turnId: `turn-${index}`,
  conversationId: `conversation-${index}`,
  userId: "alice",
  metadata: ChatEvent.metadata({
    conversationId: `conversation-${index}`,
    model: "echo",
    timestampSeconds: 0,
    turnId: `turn-${index}`
  }),
  replyId: `reply-${index}`,
  model: "echo",
  startedAt: 0
})

const WORDS = ["Echo #1:", " hello", " benchmark", " world", " of", " streams"]

describe("TurnLog in memory", () => {
  it.effect("gives back an ended turn's events as they were logged, in order, with their numbers", () =>
    Effect.gen(function* () {
      const log = yield* TurnLog.makeMemory()
      const writer = yield* log.begin(turnInfo(1))
      for (const word of WORDS) writer.append(ChatEvent.content(word))
      const failed = ChatEvent.error("model_error", "The model failed")
      writer.append(failed)
      writer.append(TurnLog.done)
      yield* writer.end

      const entries: Array<TurnLog.Entry> = []
      const end = yield* log.follow("turn-1", 2, (entry) => Effect.sync(() => entries.push(entry)))
      assert.strictEqual(end, "done")
      assert.deepStrictEqual(entries, [
        ...WORDS.slice(2).map((word, index) => ({ seq: index + 3, event: ChatEvent.content(word) })),
        { seq: 7, event: failed },
        { seq: 8, event: TurnLog.done }
      ])
      const snapshot = Option.getOrThrow(yield* log.current("conversation-1"))
      assert.strictEqual(snapshot.content, WORDS.join(""))
      assert.deepStrictEqual([snapshot.firstSeq, snapshot.lastSeq, snapshot.running], [1, 8, false])
    })
  )

  it.effect("keeps an ended turn's content as its text, not an object per event", () =>
    Effect.gen(function* () {
      const log = yield* TurnLog.makeMemory()
      const count = 4_000
      const infos = Array.from({ length: count }, (_, index) => turnInfo(index))
      // The words as the model would send them: strings of their own, not literals shared by every turn.
      const words = infos.map((_, index) => WORDS.map((word) => `${word}${index}`))
      const before = liveHeap()
      for (let index = 0; index < count; index++) {
        const writer = yield* log.begin(infos[index]!)
        for (const word of words[index]!) writer.append(ChatEvent.content(word))
        writer.append(TurnLog.done)
        yield* writer.end
      }
      const perTurn = (liveHeap() - before) / count
      assert.strictEqual(log.stats().events, count * (WORDS.length + 1))
      // An entry, an event and a delta object per content event came to about 1 KB a turn.
      assert.isBelow(perTurn, 600)
    })
  )

  /** Logs a whole turn of `words` and ends it. */
  const logTurn = (log: TurnLog.Service, info: TurnLog.TurnInfo, words: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      const writer = yield* log.begin(info)
      for (const word of words) writer.append(ChatEvent.content(word))
      writer.append(TurnLog.done)
      yield* writer.end
    })

  it.effect("drops ended turns, oldest first, once their memory passes maxBytes", () =>
    Effect.gen(function* () {
      // Room for three such turns (about 1.2 KB each, estimated), not four.
      const log = yield* TurnLog.makeMemory({ maxBytes: 4_000 })
      for (let index = 1; index <= 5; index++) yield* logTurn(log, turnInfo(index), WORDS)
      const kept = []
      for (let index = 1; index <= 5; index++)
        kept.push(Option.isSome(yield* log.current(`conversation-${index}`)))
      assert.deepStrictEqual(kept, [false, false, true, true, true])
      const stats = log.stats()
      assert.deepStrictEqual([stats.turns, stats.events, stats.dropped], [3, 21, 14])
      assert.isAtMost(stats.bytes, 4_000)
      // A dropped turn reads as gone, as one past the retention window does.
      assert.strictEqual(yield* log.follow("turn-1", 0, () => Effect.void), "gone")
    })
  )

  it.effect("never drops a running turn to stay within maxBytes", () =>
    Effect.gen(function* () {
      const log = yield* TurnLog.makeMemory({ maxBytes: 1 })
      const writers = []
      for (let index = 1; index <= 3; index++) {
        const writer = yield* log.begin(turnInfo(index))
        writer.append(ChatEvent.content(WORDS[index]!))
        writers.push(writer)
      }
      // Another turn ending sweeps; the running ones stay readable from their first event.
      yield* logTurn(log, turnInfo(4), WORDS)
      for (let index = 1; index <= 3; index++) {
        const snapshot = Option.getOrThrow(yield* log.current(`conversation-${index}`))
        assert.deepStrictEqual(
          [snapshot.running, snapshot.firstSeq, snapshot.content],
          [true, 1, WORDS[index]]
        )
      }
      assert.isTrue(Option.isNone(yield* log.current("conversation-4")))
      assert.strictEqual(log.stats().turns, 3)
    })
  )

  it.effect("counts what it forgets: nothing kept, nothing counted", () =>
    Effect.gen(function* () {
      // Three events per turn at most, and every ended turn forgotten at once.
      const log = yield* TurnLog.makeMemory({ retention: Duration.zero, maxEventsPerTurn: 3 })
      const writer = yield* log.begin(turnInfo(1))
      for (const word of WORDS) writer.append(ChatEvent.content(word))
      const running = log.stats()
      assert.deepStrictEqual([running.turns, running.events, running.dropped], [1, 3, 3])
      assert.isAbove(running.bytes, 0)
      writer.append(TurnLog.done)
      yield* writer.end
      yield* logTurn(log, turnInfo(2), WORDS)
      assert.deepStrictEqual(log.stats(), { turns: 0, events: 0, dropped: 8, bytes: 0 })
    })
  )

  it.effect("holds about maxBytes of heap, not less than half nor much more, however many turns end", () =>
    Effect.gen(function* () {
      const maxBytes = 4 * 1024 * 1024
      const log = yield* TurnLog.makeMemory({ maxBytes })
      const before = liveHeap()
      // Ten times what fits, each turn with new ids and words, as a server's turns come.
      for (let index = 0; index < 35_000; index++) {
        const turnId = IdGenerator.uuid()
        const conversationId = IdGenerator.uuid()
        const info: TurnLog.TurnInfo = {
          turnId,
          conversationId,
          userId: `user-${IdGenerator.uuid()}`,
          metadata: ChatEvent.metadata({ conversationId, model: "echo", timestampSeconds: 0, turnId }),
          replyId: IdGenerator.uuid(),
          model: "echo",
          startedAt: 0
        }
        yield* logTurn(
          log,
          info,
          WORDS.map((word) => `${word}${index}`)
        )
      }
      const held = liveHeap() - before
      assert.isAtMost(log.stats().bytes, maxBytes)
      assert.isAbove(log.stats().dropped, 0)
      // The estimate is close to what the heap holds: it neither lets the log grow past its
      // bound by much nor keeps far fewer turns than the bound allows.
      assert.isBelow(held, maxBytes * 1.25)
      assert.isAbove(held, maxBytes * 0.5)
    })
  )
})
