import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { ChatEvent, TurnLog } from "../src/index.ts"
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
})
