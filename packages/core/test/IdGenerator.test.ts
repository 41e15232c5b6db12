import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { IdGenerator } from "../src/index.ts"
import { liveHeap } from "./liveHeap.ts"

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe("IdGenerator", () => {
  it.effect("defaults to distinct lower-case UUID v4 values", () =>
    Effect.gen(function* () {
      const ids = yield* IdGenerator.IdGenerator
      const values = yield* Effect.all(Array.from({ length: 100 }, () => ids.next))
      for (const value of values) assert.match(value, UUID_V4)
      assert.strictEqual(new Set(values).size, 100)
    })
  )

  it("keeps each id in one piece, not as the tree of joins it was built from", () => {
    const count = 20_000
    const held: Array<string> = new Array(count)
    const before = liveHeap()
    for (let index = 0; index < count; index++) held[index] = IdGenerator.uuid()
    const perId = (liveHeap() - before) / count
    assert.strictEqual(new Set(held).size, count)
    // As `crypto.randomUUID()` returns it, an id holds about 490 bytes.
    assert.isBelow(perId, 200)
  })

  it.effect("sequential ids are predictable and can replace the default", () =>
    Effect.gen(function* () {
      const ids = yield* IdGenerator.IdGenerator
      assert.deepStrictEqual(yield* Effect.all([ids.next, ids.next]), ["id-1", "id-2"])
    }).pipe(
      Effect.provideService(
        IdGenerator.IdGenerator,
        IdGenerator.sequential((n) => `id-${n}`)
      )
    )
  )
})
