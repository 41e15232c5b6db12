/**
 * Reading many settings so that a start-up error lists every problem, not
 * only the first: `Config.all` (and `Config.unwrap`) stop at the first
 * invalid value, which would make an operator fix a configuration one
 * restart at a time.
 */
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

/** One problem: the variable it concerns (when known) and what is wrong with it. */
export interface Problem {
  readonly variable: string | undefined
  readonly message: string
}

// Every member succeeds, carrying its own outcome, so all of them are read.
const settle = <A>(config: Config.Config<A>): Config.Config<Result.Result<A, Config.ConfigError>> =>
  config.pipe(
    Config.map(Result.succeed),
    Config.orElse((error) => Config.succeed(Result.fail(error)))
  )

/** One error holding the issues of all; a source that could not be read wins, since it explains the rest. */
const combine = (errors: readonly [Config.ConfigError, ...Array<Config.ConfigError>]): Config.ConfigError => {
  const [first, ...rest] = errors
  const unreadable = errors.find((error) => !Schema.isSchemaError(error.cause))
  if (unreadable !== undefined) return unreadable
  if (rest.length === 0) return first
  const issues = errors.map((error) => (error.cause as Schema.SchemaError).issue)
  return new Config.ConfigError(
    new Schema.SchemaError(new SchemaIssue.Composite(Schema.Unknown.ast, [issues[0]!, ...issues.slice(1)]))
  )
}

/**
 * Like `Config.unwrap`: reads a record of configs (nested records too) as one
 * config. Unlike it, every member is read even when one fails, and the
 * failure holds the problems of all of them. A missing required value counts
 * as a problem here, not as an absence a default could fill.
 */
export const unwrapAll = <A>(wrapped: Config.Wrap<A>): Config.Config<A> => {
  if (Config.isConfig(wrapped)) return wrapped as Config.Config<A>
  const members = Object.fromEntries(
    Object.entries(wrapped as Record<string, Config.Wrap<unknown>>).map(([key, member]) => [
      key,
      settle(unwrapAll(member))
    ])
  )
  return Config.all(members).pipe(
    Config.mapEffect((outcomes) => {
      const errors = Object.values(outcomes).flatMap((outcome) =>
        Result.isFailure(outcome) ? [outcome.failure] : []
      )
      if (errors.length > 0) return Effect.fail(combine([errors[0]!, ...errors.slice(1)]))
      return Effect.succeed(
        Object.fromEntries(
          Object.entries(outcomes).map(([key, outcome]) => [
            key,
            (outcome as Result.Success<unknown, never>).success
          ])
        ) as A
      )
    })
  )
}

// A required variable that is absent fails as a string expected and none given.
const formatter = SchemaIssue.makeFormatterStandardSchemaV1({
  leafHook: (issue) =>
    issue._tag === "InvalidType" && (!SchemaIssue.hasInput(issue) || issue.input === undefined)
      ? "must be set"
      : SchemaIssue.defaultLeafHook(issue)
})

/**
 * The problems of a configuration error, in the order the settings were
 * read, each once (a variable read by two settings is reported once). The
 * variable is the config's path as the environment spells it (`_`-joined).
 */
export const list = (error: Config.ConfigError): ReadonlyArray<Problem> => {
  if (!Schema.isSchemaError(error.cause)) return [{ variable: undefined, message: error.cause.message }]
  const seen = new Set<string>()
  const problems: Array<Problem> = []
  for (const issue of formatter(error.cause.issue).issues) {
    const variable =
      issue.path === undefined || issue.path.length === 0 ? undefined : issue.path.map(String).join("_")
    const key = `${variable}\n${issue.message}`
    if (seen.has(key)) continue
    seen.add(key)
    problems.push({ variable, message: issue.message })
  }
  return problems
}
