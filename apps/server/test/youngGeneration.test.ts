/**
 * The reference server's young-generation cap, in a process of its own (V8's
 * heap settings are per process): state that survives scavenges, as open
 * streams' state does, grows the young generation to 16 MB per semi-space and
 * no further; a process started with its own semi-space setting keeps V8's.
 */
import { execFile } from "node:child_process"
import { setPriority } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"

const moduleUrl = new URL(`file://${join(import.meta.dirname, "..", "src", "YoungGeneration.ts")}`).href
const MiB = 1024 * 1024

/**
 * Allocates 3 million objects of which the last 400,000 stay alive, in steps
 * that return to the event loop (where the cap is adjusted), and prints the
 * largest young generation seen.
 */
const program = `
import { getHeapSpaceStatistics } from "node:v8"
const YoungGeneration = await import(${JSON.stringify(moduleUrl)})
YoungGeneration.release()
const youngGeneration = () => getHeapSpaceStatistics().find((space) => space.space_name === "new_space").space_size
let largest = 0
const alive = []
for (let step = 0; step < 300; step++) {
  for (let index = 0; index < 10000; index++) {
    alive.push({ index, list: [index], text: "item" + index })
    if (alive.length > 400000) alive.splice(0, 1000)
  }
  largest = Math.max(largest, youngGeneration())
  await new Promise((resolve) => setImmediate(resolve))
}
console.log(largest)
`

const largestYoungGeneration = (nodeFlags: ReadonlyArray<string>): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [...nodeFlags, "--input-type=module", "--eval", program],
      { env: { ...process.env, NODE_OPTIONS: "" } },
      (error, stdout) => (error === null ? resolve(Number(stdout.trim())) : reject(error))
    )
    // At the lowest priority: the allocations keep a core busy for seconds,
    // and the suites running beside this one (servers on PGlite) must not wait.
    if (child.pid !== undefined) setPriority(child.pid, 19)
  })

describe("the young generation of the reference server", () => {
  it("grows to 16 MB per semi-space under surviving state, and no further", async () => {
    // `new_space` counts both semi-spaces; V8 doubles it, so past 16 MiB is the cap reached.
    const largest = await largestYoungGeneration([])
    expect(largest).toBeGreaterThan(16 * MiB)
    expect(largest).toBeLessThanOrEqual(32 * MiB)
  }, 60_000)

  it("is V8's own when the process was started with a semi-space setting", async () => {
    // V8's default growth goes past the cap under the same allocations.
    expect(await largestYoungGeneration(["--semi-space-growth-factor=2"])).toBeGreaterThan(32 * MiB)
  }, 60_000)
})
