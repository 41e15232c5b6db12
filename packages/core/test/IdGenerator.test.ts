import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { IdGenerator } from "../src/index.ts"

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
