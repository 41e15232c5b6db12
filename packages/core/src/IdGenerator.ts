/**
 * Where conversation and message ids come from. The default is the platform's
 * cryptographically secure `crypto.randomUUID()` (UUID v4); tests may provide
 * a deterministic one.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"

/** The operations of an id generator. */
export interface Service {
  readonly next: Effect.Effect<string>
}

/** The id generator; defaults to `crypto.randomUUID()`. */
export const IdGenerator = Context.Reference<Service>("@convoke/core/IdGenerator", {
  defaultValue: () => ({ next: Effect.sync(() => crypto.randomUUID()) })
})

/** Ids `prefix-1`, `prefix-2`, … for tests that need predictable values. */
export const sequential = (format: (n: number) => string): Service => {
  let n = 0
  return { next: Effect.sync(() => format(++n)) }
}
