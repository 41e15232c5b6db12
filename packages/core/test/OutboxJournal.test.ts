/**
 * The outbox journal on a real file system: entries round-trip with their
 * dates, concurrent appends share a sync, a torn or damaged record is
 * skipped and counted while the rest is replayed, drained records are
 * compacted away, and a second process is kept off the journal.
 */
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Logger, References, Scope } from "effect"
import * as fc from "fast-check"
import { afterAll } from "vitest"
import type { ConversationOutbox } from "../src/index.ts"
import * as OutboxJournal from "../src/OutboxJournal.ts"

const directories: Array<string> = []
afterAll(() => Promise.all(directories.map((directory) => rm(directory, { recursive: true, force: true }))))

const freshDirectory = Effect.promise(async () => {
  const directory = await mkdtemp(join(tmpdir(), "convoke-journal-"))
  directories.push(directory)
  return directory
})

/** Opens the journal in a scope of its own, closed by `close` (a stop, or a crash as far as the file goes). */
const open = (directory: string, options: Partial<OutboxJournal.Options> = {}) =>
  Effect.gen(function* () {
    const scope = Scope.makeUnsafe()
    const journal = yield* OutboxJournal.make({ directory, ...options }).pipe(Scope.provide(scope))
    return { journal, close: Scope.close(scope, Exit.void) }
  })

/** What a reopened journal replays, and what it says about it. */
const reopen = (directory: string) =>
  Effect.gen(function* () {
    const { journal, close } = yield* open(directory)
    const changes = yield* journal.poll
    yield* close
    return { changes, replay: journal.replay }
  })

/** Collects what is logged (a warning about damaged records) instead of printing it. */
const captureLogs = () => {
  const logged: Array<{ readonly message: string; readonly annotations: Record<string, unknown> }> = []
  const logger = Logger.make(({ message, fiber }) =>
    logged.push({
      message: String(Array.isArray(message) ? message[0] : message),
      annotations: { ...fiber.getRef(References.CurrentLogAnnotations) }
    })
  )
  return {
    logged,
    provide: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.provideService(effect, References.CurrentLoggers, new Set([logger]))
  }
}

const at = (millis: number) => new Date(Date.UTC(2026, 0, 1) + millis)

const create = (index: number): ConversationOutbox.Entry => ({
  _tag: "Create",
  conversation: {
    id: `conversation-${index}`,
    userId: "alice",
    title: `Title ${index} — ünïcödé ✓`,
    createdAt: at(index),
    updatedAt: at(index)
  },
  messages: [
    {
      id: `user-${index}`,
      role: "user",
      content: `hello ${index}\nwith a newline`,
      status: "complete",
      createdAt: at(index)
    }
  ],
  requestId: `request-${index}`
})

const append = (index: number): ConversationOutbox.Entry => ({
  _tag: "Append",
  userId: "alice",
  conversationId: `conversation-${index}`,
  messages: [
    {
      id: `assistant-${index}`,
      role: "assistant",
      content: `reply ${index}`,
      status: "complete",
      createdAt: at(index + 1),
      metadata: { model: "echo", usage: { inputTokens: 3, outputTokens: 2 }, at: at(index + 2) }
    }
  ]
})

const fileOf = (directory: string) => join(directory, "journal")

describe("OutboxJournal", () => {
  it.live("replays what was appended, in order, with its dates", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const { journal, close } = yield* open(directory)
      assert.deepStrictEqual(yield* journal.poll, { added: [], doneBelow: 0, skipped: 0 })
      const entries = [create(1), create(2), append(1), append(2)]
      const sequences = []
      for (const entry of entries) sequences.push(yield* journal.append(entry))
      assert.deepStrictEqual(sequences, [1, 2, 3, 4])
      yield* close

      const { changes, replay } = yield* reopen(directory)
      assert.deepStrictEqual(replay, { entries: 4, skipped: 0, skippedBytes: 0 })
      assert.deepStrictEqual(
        changes.added,
        entries.map((entry, index) => ({ sequence: index + 1, entry }))
      )
      const first = changes.added[0]!.entry
      assert.instanceOf(first._tag === "Create" ? first.conversation.createdAt : undefined, Date)
    })
  )

  it.live("skips drained entries, continues the numbering, and empties the file once nothing is live", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const { journal, close } = yield* open(directory)
      for (const entry of [create(1), create(2), create(3)]) yield* journal.append(entry)
      yield* journal.complete(1)
      yield* journal.complete(3)
      yield* close

      const second = yield* open(directory)
      const { added } = yield* second.journal.poll
      assert.deepStrictEqual(
        added.map(({ sequence }) => sequence),
        [2]
      )
      assert.strictEqual(yield* second.journal.append(create(4)), 4)
      yield* second.journal.complete(2)
      yield* second.journal.complete(4)
      // The last tombstone left nothing live: the file was truncated.
      assert.strictEqual((yield* Effect.promise(() => stat(fileOf(directory)))).size, 0)
      yield* second.close
      assert.deepStrictEqual((yield* reopen(directory)).changes.added, [])
    })
  )

  it.live("rewrites the file once drained records outnumber live ones", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const { journal, close } = yield* open(directory, { compactAfter: 10 })
      yield* journal.append(create(0))
      for (let index = 1; index <= 20; index++) yield* journal.append(create(index))
      const before = (yield* Effect.promise(() => stat(fileOf(directory)))).size
      for (let index = 2; index <= 21; index++) yield* journal.complete(index)
      const after = (yield* Effect.promise(() => stat(fileOf(directory)))).size
      console.info(`journal compaction: ${before} bytes with 21 entries, ${after} bytes once 20 were drained`)
      // Rewritten whenever ten drained records outnumbered the live ones: a few lines are left, not 41.
      assert.isBelow(after, before / 4)
      yield* close
      const { changes } = yield* reopen(directory)
      assert.deepStrictEqual(changes.added, [{ sequence: 1, entry: create(0) }])
    })
  )

  it.live("shares one sync among concurrent appends (group commit)", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const { journal, close } = yield* open(directory)
      const timed = <A, E>(effect: Effect.Effect<A, E>) =>
        Effect.gen(function* () {
          const startedAt = performance.now()
          yield* effect
          return performance.now() - startedAt
        })

      const one: number[] = []
      for (let index = 0; index < 50; index++) one.push(yield* timed(journal.append(create(index))))
      const syncsAlone = journal.syncs()
      assert.strictEqual(syncsAlone, 50)

      const startedAt = performance.now()
      const together = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, index) => create(100 + index)),
        (entry) => timed(journal.append(entry)),
        { concurrency: "unbounded" }
      )
      const wall = performance.now() - startedAt
      const syncsTogether = journal.syncs() - syncsAlone
      const median = (values: Array<number>) =>
        [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
      console.info(
        `journal append with fdatasync: one at a time ${median(one).toFixed(2)} ms median (${syncsAlone} syncs, ${one.reduce((a, b) => a + b, 0).toFixed(1)} ms for 50); ` +
          `50 concurrent ${wall.toFixed(1)} ms in all, ${median(together).toFixed(2)} ms median, ${syncsTogether} syncs`
      )
      assert.isAtMost(syncsTogether, 5)
      yield* close
      assert.strictEqual((yield* reopen(directory)).changes.added.length, 100)
    })
  )

  it.live("skips a torn tail, reports it, replays the rest, and appends after it safely", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const { journal, close } = yield* open(directory)
      for (let index = 1; index <= 5; index++) yield* journal.append(create(index))
      yield* close
      const { size } = yield* Effect.promise(() => stat(fileOf(directory)))
      yield* Effect.promise(() => truncate(fileOf(directory), size - 7))

      const logs = captureLogs()
      const second = yield* logs.provide(open(directory))
      assert.deepStrictEqual(
        logs.logged.map(({ message, annotations }) => [message, annotations.skipped]),
        [["The outbox journal had damaged records; they were skipped", 1]]
      )
      assert.strictEqual(second.journal.replay.skipped, 1)
      assert.strictEqual(second.journal.replay.entries, 4)
      const { added, skipped } = yield* second.journal.poll
      assert.strictEqual(skipped, 1)
      assert.deepStrictEqual(
        added.map(({ entry }) => entry),
        [1, 2, 3, 4].map(create)
      )
      // Numbering goes on after the last record read: the torn one's number is used again, harmlessly, as nothing refers to it.
      assert.strictEqual(yield* second.journal.append(create(6)), 5)
      yield* second.close

      const third = yield* reopen(directory)
      assert.strictEqual(third.replay.skipped, 0)
      assert.deepStrictEqual(
        third.changes.added.map(({ entry }) => entry),
        [1, 2, 3, 4, 6].map(create)
      )
    })
  )

  it.live("skips a damaged record in the middle and replays the ones around it", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const { journal, close } = yield* open(directory)
      for (let index = 1; index <= 5; index++) yield* journal.append(create(index))
      yield* close
      const bytes = yield* Effect.promise(() => readFile(fileOf(directory)))
      const third = bytes.indexOf("conversation-3")
      // Flipped bits in the content of the third record; its frame is intact.
      bytes[third] = bytes[third]! ^ 0x20
      bytes[third + 1] = bytes[third + 1]! ^ 0x01
      yield* Effect.promise(() => writeFile(fileOf(directory), bytes))

      const { changes, replay } = yield* captureLogs().provide(reopen(directory))
      assert.deepStrictEqual(replay, { entries: 4, skipped: 1, skippedBytes: replay.skippedBytes })
      assert.isAbove(replay.skippedBytes, 0)
      assert.deepStrictEqual(
        changes.added.map(({ entry }) => entry),
        [1, 2, 4, 5].map(create)
      )
    })
  )

  it.live("recovers every complete record wherever a crash cuts the file", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const { journal, close } = yield* open(directory)
      for (let index = 1; index <= 4; index++)
        yield* journal.append(index % 2 === 0 ? append(index) : create(index))
      yield* journal.complete(1)
      yield* close
      // The file as the crash left it: four adds and one tombstone, each line's end known.
      const original = yield* Effect.promise(() => readFile(fileOf(directory)))
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.integer({ min: 0, max: original.length }), async (cut) => {
            const trial = await mkdtemp(join(tmpdir(), "convoke-journal-cut-"))
            try {
              await writeFile(join(trial, "journal"), original.subarray(0, cut))
              const { changes, replay } = await Effect.runPromise(captureLogs().provide(reopen(trial)))
              const whole = original.subarray(0, cut).lastIndexOf(0x0a) + 1
              const expected = new Map<number, ConversationOutbox.Entry>()
              for (const line of original.subarray(0, whole).toString("utf8").split("\n").filter(Boolean)) {
                const record = JSON.parse(line.slice(line.indexOf(" ", line.indexOf(" ") + 1) + 1))
                if ("add" in record) expected.set(record.add, index(record.add))
                else expected.delete(record.done)
              }
              assert.deepStrictEqual(
                changes.added.map(({ sequence }) => sequence),
                [...expected.keys()]
              )
              assert.strictEqual(replay.skipped, cut > whole ? 1 : 0)
            } finally {
              await rm(trial, { recursive: true, force: true })
            }
          }),
          { numRuns: 60 }
        )
      )
    })
  )

  it.live("keeps a second outbox off the journal, and takes over a lock its dead owner left", () =>
    Effect.gen(function* () {
      const directory = yield* freshDirectory
      const first = yield* open(directory)
      const second = yield* Effect.exit(open(directory))
      assert.isTrue(Exit.isFailure(second))
      assert.match(String(Exit.isFailure(second) ? second.cause : ""), /locked/)
      yield* first.close
      // A pid that no running process has (above Linux's pid_max).
      yield* Effect.promise(() => writeFile(join(directory, "lock"), "4194305\n"))
      const third = yield* open(directory)
      yield* third.close
    })
  )
})

/** The entry appended as number `sequence` by the crash test above. */
const index = (sequence: number) => (sequence % 2 === 0 ? append(sequence) : create(sequence))
