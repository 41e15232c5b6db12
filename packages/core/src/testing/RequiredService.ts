/**
 * Tests that need a real service, such as the PostgreSQL or Redis the test
 * machines run. Where the service is missing, a developer's machine skips
 * them with a warning saying why; a CI run (`CI` set) gets a failing test
 * instead, because a run that skips them silently would pass without having
 * checked anything.
 *
 * @since 0.2.0
 */

/** Registers a test the way vitest's `it` (or `node:test`'s `test`) does. */
export type RegisterTest = (name: string, body: () => void) => unknown

/** Whether this is a CI run: `CI` is set to anything but `""`, `"0"` or `"false"`. */
export const isCi = (environment: Readonly<Record<string, string | undefined>> = process.env): boolean => {
  const value = environment.CI
  return value !== undefined && value !== "" && value !== "0" && value.toLowerCase() !== "false"
}

/** Options of `requireService`. */
export interface Options {
  /** Whether a missing service fails the run rather than skipping; `isCi()` by default. */
  readonly ci?: boolean | undefined
}

/**
 * Decides whether the tests that need `service` run, and returns `true` when
 * it is reachable. When it is not, it returns `false` (skip them) and either
 * warns on the console, or under CI registers with `test` one test that
 * fails naming the service, so the run fails.
 *
 * ```ts
 * const reachable = requireService(it, `Redis at ${url}`, await isRedisReachable(url))
 * describe.skipIf(!reachable)("on Redis", () => { ... })
 * ```
 */
export const requireService = (
  test: RegisterTest,
  service: string,
  reachable: boolean,
  options: Options = {}
): boolean => {
  if (reachable) return true
  if (options.ci ?? isCi()) {
    test(`${service} is reachable`, () => {
      throw new Error(
        `${service} is not reachable, and CI is set: the tests that need it must run here, not be skipped`
      )
    })
  } else {
    console.warn(`${service} is not reachable: skipping the tests that need it (with CI set, they fail)`)
  }
  return false
}
