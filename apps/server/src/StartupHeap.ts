/**
 * Keeps V8's young generation small while the server starts.
 *
 * Loading the modules and building the layers allocates objects that live as
 * long as the process. V8 reads that high survival rate as a reason to grow
 * the young generation (up to 64 MB per semi-space on Node 24), and the pages
 * it grew stay resident while the server idles: about 20 MB of an idle
 * server's memory, for objects that belonged in the old generation anyway.
 * Growth is held off during start and given back, at V8's default, once the
 * server listens, so requests under load get the young generation V8 would
 * give them. Left alone when the process was started with its own setting.
 *
 * Import it statically and the rest of the server dynamically: every static
 * import of a module graph is read and compiled before the first one runs.
 */
import { setFlagsFromString } from "node:v8"

const FLAG = "semi-space-growth-factor"
/** V8's default growth factor (`node --v8-options`). */
const DEFAULT_GROWTH_FACTOR = 2

const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((argument) =>
  argument.includes("semi-space")
)

if (!given) setFlagsFromString(`--${FLAG}=1`)

/** Lets the young generation grow again, as V8 does by default; call it once the server listens. */
export const release = (): void => {
  if (!given) setFlagsFromString(`--${FLAG}=${DEFAULT_GROWTH_FACTOR}`)
}
