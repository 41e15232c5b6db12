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

/**
 * A new `crypto.randomUUID()`, as one string. Node joins it from some twenty
 * pieces, and V8 keeps the joins as a tree of about 490 bytes for as long as
 * the id lives; `toLowerCase` (a UUID is lower case already) copies it into
 * one of about 60. A turn holds several ids for as long as it streams.
 */
export const uuid = (): string => crypto.randomUUID().toLowerCase()

/** The id generator; defaults to `uuid()`. */
export const IdGenerator = Context.Reference<Service>("@convoke/core/IdGenerator", {
  defaultValue: () => ({ next: Effect.sync(uuid) })
})

/** Ids `prefix-1`, `prefix-2`, … for tests that need predictable values. */
export const sequential = (format: (n: number) => string): Service => {
  let n = 0
  return { next: Effect.sync(() => format(++n)) }
}
