/**
 * Throwaway databases on a real PostgreSQL server, for tests.
 *
 * `makeTestDatabase` creates a database with a random name and returns its URL
 * and a `drop` function; both are plain promises, so they fit ordinary
 * `beforeAll` / `afterAll` hooks (`scopedTestDatabase` is the same for Effect
 * tests, dropped with the scope). The server is reached through the admin URL
 * in `CONVOKE_TEST_DATABASE_URL` (default
 * `postgres://postgres@127.0.0.1:5432/postgres`), whose user may create
 * databases.
 *
 * `requireServer` decides whether the tests that need that server run: they
 * are skipped, with a warning, on a machine without it, and fail under CI.
 *
 * `makeTcpProxy` puts a loopback proxy between a client and that server, to
 * cut, blackhole and restore the connection from a test (see `TcpProxy`).
 *
 * `watchWrites` announces the rows written to a table as they commit, so a
 * test awaits a background write instead of polling (see `WriteWatch`).
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { type RegisterTest, type RequiredServiceOptions, requireService } from "@convoke/core/testing"
import { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as SqlError from "effect/sql/SqlError"

export {
  type Mode as TcpProxyMode,
  makeTcpProxy,
  type Options as TcpProxyOptions,
  type TcpProxy
} from "./TcpProxy.ts"
export { type Row as WrittenRow, type WriteWatch, watchWrites } from "./WriteWatch.ts"

/** The admin URL used when `CONVOKE_TEST_DATABASE_URL` is not set. */
export const defaultAdminUrl = "postgres://postgres@127.0.0.1:5432/postgres"

/** The admin URL tests use: `CONVOKE_TEST_DATABASE_URL`, else `defaultAdminUrl`. */
export const adminUrl = (): string => process.env.CONVOKE_TEST_DATABASE_URL || defaultAdminUrl

/** Options of `makeTestDatabase` and `isServerReachable`. */
export interface Options {
  /** The server and an existing database to connect to; see `adminUrl()`. */
  readonly adminUrl?: string | undefined
  /** How long to wait for a connection, in milliseconds (default 5000). */
  readonly connectTimeoutMillis?: number | undefined
}

/** A database created for a test run. */
export interface TestDatabase {
  /** Its name, `convoke_test_<16 hex digits>`. */
  readonly name: string
  /** A URL to connect to it, the admin URL with the database replaced. */
  readonly url: string
  /** Drops it, ending any connections still open to it. Safe to call twice. */
  readonly drop: () => Promise<void>
}

const withAdmin = <A>(
  options: Options,
  use: (sql: PgClient.PgClient) => Effect.Effect<A, SqlError.SqlError>
): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(
      PgClient.PgClient.use(use).pipe(
        Effect.provide(
          PgClient.layer({
            url: Redacted.make(options.adminUrl ?? adminUrl()),
            maxConnections: 1,
            connectTimeout: options.connectTimeoutMillis ?? 5_000,
            applicationName: "convoke-testing"
          })
        )
      )
    )
  )

const databaseUrl = (admin: string, name: string): string => {
  const url = new URL(admin)
  url.pathname = `/${name}`
  return url.toString()
}

/**
 * Creates an empty database on the test server. Use one per test file (or
 * suite) and drop it in the matching after-hook.
 */
export const makeTestDatabase = async (options: Options = {}): Promise<TestDatabase> => {
  const admin = options.adminUrl ?? adminUrl()
  const name = `convoke_test_${randomBytes(8).toString("hex")}`
  await withAdmin(options, (sql) => sql`CREATE DATABASE ${sql(name)}`.unprepared)
  let dropping: Promise<void> | undefined
  return {
    name,
    url: databaseUrl(admin, name),
    drop: () =>
      (dropping ??= withAdmin(options, (sql) =>
        Effect.asVoid(sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`.unprepared)
      ))
  }
}

/**
 * `makeTestDatabase` for Effect tests: the database lives as long as the
 * scope and is dropped when it closes.
 */
export const scopedTestDatabase = (options: Options = {}): Effect.Effect<TestDatabase, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => makeTestDatabase(options)),
    (database) => Effect.promise(() => database.drop())
  )

/**
 * Whether the test server accepts connections. To skip or fail the tests
 * that need it, use `requireServer`, which builds on this.
 */
export const isServerReachable = (options: Options = {}): Promise<boolean> =>
  withAdmin({ connectTimeoutMillis: 2_000, ...options }, (sql) => Effect.as(sql`SELECT 1`, true)).catch(
    () => false
  )

// Test output is often public (CI logs): name the server, not its password.
const withoutPassword = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "the configured server"
  }
}

/**
 * Whether the tests that need the test server run, for
 * `describe.skipIf(!reachable)`: `true` when it accepts connections. When it
 * does not, a developer's machine skips them with a warning, and a CI run
 * (`CI` set) gets a failing test from `test` instead (see `requireService`):
 *
 * ```ts
 * const reachable = await requireServer(it)
 * describe.skipIf(!reachable)("on PostgreSQL", () => { ... })
 * ```
 */
export const requireServer = async (
  test: RegisterTest,
  options: Options & RequiredServiceOptions = {}
): Promise<boolean> =>
  requireService(
    test,
    `PostgreSQL at ${withoutPassword(options.adminUrl ?? adminUrl())}`,
    await isServerReachable(options),
    options
  )
