import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as Lanes from "../src/internal/lanes.ts"

/** A statement that records its start and runs until `finish` is completed. */
const statement = (log: Array<string>, name: string) =>
  Effect.gen(function* () {
    const finish = yield* Deferred.make<void, string>()
    const run = Effect.andThen(
      Effect.sync(() => log.push(name)),
      Deferred.await(finish)
    )
    return { run, finish: Deferred.succeed(finish, undefined), fail: Deferred.fail(finish, "boom") }
  })

/** Lets forked fibers run up to their next wait. */
const settle = Effect.andThen(Effect.yieldNow, Effect.yieldNow)

describe("lanes", () => {
  it.effect("keeps at most `connections` statements in flight", () =>
    Effect.gen(function* () {
      const lanes = Lanes.make(2)
      const log: Array<string> = []
      const statements = yield* Effect.forEach(["a", "b", "c", "d"], (name) => statement(log, name))
      const fibers = yield* Effect.forEach(statements, (s) => Effect.forkChild(lanes.background(s.run)))
      yield* settle
      assert.deepStrictEqual(log, ["a", "b"])
      yield* statements[0]!.finish
      yield* settle
      assert.deepStrictEqual(log, ["a", "b", "c"])
      for (const s of statements.slice(1)) yield* s.finish
      yield* Fiber.joinAll(fibers)
      assert.deepStrictEqual(log, ["a", "b", "c", "d"])
    })
  )

  it.effect("gives a freed place to an urgent statement before background ones that waited longer", () =>
    Effect.gen(function* () {
      const lanes = Lanes.make(1)
      const log: Array<string> = []
      const busy = yield* statement(log, "busy")
      const append = yield* statement(log, "append")
      const create = yield* statement(log, "create")
      yield* Effect.forkChild(lanes.background(busy.run))
      yield* settle
      yield* Effect.forkChild(lanes.background(append.run))
      yield* settle
      yield* Effect.forkChild(lanes.urgent(create.run))
      yield* settle
      yield* busy.finish
      yield* settle
      assert.deepStrictEqual(log, ["busy", "create"])
      yield* create.finish
      yield* settle
      assert.deepStrictEqual(log, ["busy", "create", "append"])
      yield* append.finish
    })
  )

  it.effect("lets a waiting background statement through after a run of urgent ones", () =>
    Effect.gen(function* () {
      const lanes = Lanes.make(1)
      const log: Array<string> = []
      const busy = yield* statement(log, "busy")
      yield* Effect.forkChild(lanes.urgent(busy.run))
      yield* settle
      const append = yield* statement(log, "append")
      yield* Effect.forkChild(lanes.background(append.run))
      const urgent = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (index) => statement(log, `urgent ${index}`))
      for (const s of urgent) yield* Effect.forkChild(lanes.urgent(s.run))
      yield* settle
      yield* busy.finish
      for (const s of [...urgent.slice(0, 4)]) {
        yield* settle
        yield* s.finish
      }
      yield* settle
      assert.deepStrictEqual(log, ["busy", "urgent 1", "urgent 2", "urgent 3", "urgent 4", "append"])
      yield* append.finish
      for (const s of urgent.slice(4)) {
        yield* settle
        yield* s.finish
      }
      yield* settle
      assert.deepStrictEqual(log.slice(-2), ["urgent 5", "urgent 6"])
    })
  )

  it.effect("frees the place of a statement that fails or a waiter that is interrupted", () =>
    Effect.gen(function* () {
      const lanes = Lanes.make(1)
      const log: Array<string> = []
      const failing = yield* statement(log, "failing")
      const first = yield* Effect.forkChild(lanes.urgent(failing.run))
      yield* settle
      const waiting = yield* statement(log, "interrupted")
      const interrupted = yield* Effect.forkChild(lanes.urgent(waiting.run))
      yield* settle
      yield* Fiber.interrupt(interrupted)
      yield* failing.fail
      assert.isTrue(Exit.isFailure(yield* Fiber.await(first)))
      // Both places came back: the next statement runs at once.
      const next = yield* statement(log, "next")
      const fiber = yield* Effect.forkChild(lanes.background(next.run))
      yield* settle
      assert.deepStrictEqual(log, ["failing", "next"])
      yield* next.finish
      yield* Fiber.join(fiber)
    })
  )
})
