/**
 * Keeps V8's young generation small: held at its least while the server
 * starts, then allowed to grow to 16 MB per semi-space and no further.
 *
 * V8 grows the young generation (doubling it, up to 64 MB per semi-space on
 * Node 24) whenever more survives a scavenge than it expects, and the pages it
 * grew stay resident.
 *
 * - While the server starts, loading the modules and building the layers
 *   allocates objects that live as long as the process. Growth then would cost
 *   about 20 MB of an idle server's memory for objects that belong in the old
 *   generation anyway, so it is held off until the server listens.
 * - Under load, the state of every open stream survives scavenges. A server
 *   holding 2,000 streams grew the young generation to its 128 MB maximum: half
 *   the memory those streams cost. Past 16 MB per semi-space the room buys no
 *   measurable CPU (`docs/performance.md`), so growth stops there, as with
 *   `node --max-semi-space-size=16`.
 *
 * V8 reads its growth factor at each scavenge, but fixes the maximum size when
 * the process starts; so after each collection the factor is set to 1 (no
 * growth) once the young generation has reached the cap, and back to V8's
 * default below it (V8 shrinks it again when allocation slows).
 *
 * Left alone when the process was started with a semi-space setting of its
 * own. Import it statically and the rest of the server dynamically: every
 * static import of a module graph is read and compiled before the first one
 * runs.
 */
import { PerformanceObserver } from "node:perf_hooks"
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8"

/** V8's default growth factor (`node --v8-options`). */
const DEFAULT_GROWTH_FACTOR = 2
/** The cap: 16 MB per semi-space, as `new_space` reports it (both semi-spaces). */
const CAP_BYTES = 2 * 16 * 1024 * 1024

const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((argument) =>
  argument.includes("semi-space")
)

let factor = 1
const setGrowthFactor = (next: number) => {
  if (next === factor) return
  factor = next
  setFlagsFromString(`--semi-space-growth-factor=${next}`)
}

if (!given) setFlagsFromString(`--semi-space-growth-factor=${factor}`)

/** The young generation's current size, both semi-spaces. */
const youngGenerationBytes = (): number =>
  getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.space_size ?? 0

/** Lets the young generation grow up to the cap; call it once the server listens. */
export const release = (): void => {
  if (given) return
  const adjust = () => setGrowthFactor(youngGenerationBytes() >= CAP_BYTES ? 1 : DEFAULT_GROWTH_FACTOR)
  adjust()
  new PerformanceObserver(adjust).observe({ entryTypes: ["gc"] })
}
