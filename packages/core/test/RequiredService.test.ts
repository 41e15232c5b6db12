import { afterEach, assert, describe, it, vi } from "@effect/vitest"
import { isCi, requireService } from "../src/testing.ts"

/** A stand-in for `it` that keeps what it is given. */
const recorder = () => {
  const registered: Array<{ readonly name: string; readonly body: () => void }> = []
  return { registered, test: (name: string, body: () => void) => registered.push({ name, body }) }
}

describe("requireService", () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it("runs the tests when the service is reachable", () => {
    const { registered, test } = recorder()
    assert.isTrue(requireService(test, "Redis at redis://127.0.0.1:6379", true, { ci: true }))
    assert.isTrue(requireService(test, "Redis at redis://127.0.0.1:6379", true, { ci: false }))
    assert.lengthOf(registered, 0)
  })

  it("skips them on a developer's machine, saying why", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {})
    const { registered, test } = recorder()
    assert.isFalse(requireService(test, "Redis at redis://127.0.0.1:1", false, { ci: false }))
    assert.lengthOf(registered, 0)
    assert.deepStrictEqual(warn.mock.calls, [
      [
        "Redis at redis://127.0.0.1:1 is not reachable: skipping the tests that need it (with CI set, they fail)"
      ]
    ])
  })

  it("under CI, skips them and registers a test that fails naming the service", () => {
    const { registered, test } = recorder()
    assert.isFalse(requireService(test, "Redis at redis://127.0.0.1:1", false, { ci: true }))
    assert.lengthOf(registered, 1)
    assert.strictEqual(registered[0]!.name, "Redis at redis://127.0.0.1:1 is reachable")
    assert.throws(registered[0]!.body, /^Redis at redis:\/\/127\.0\.0\.1:1 is not reachable, and CI is set/)
  })
})

describe("isCi", () => {
  it("is true when CI is set to anything but empty, 0 or false", () => {
    assert.isTrue(isCi({ CI: "true" }))
    assert.isTrue(isCi({ CI: "1" }))
    assert.isTrue(isCi({ CI: "woodpecker" }))
    assert.isFalse(isCi({}))
    assert.isFalse(isCi({ CI: "" }))
    assert.isFalse(isCi({ CI: "0" }))
    assert.isFalse(isCi({ CI: "FALSE" }))
  })
})
