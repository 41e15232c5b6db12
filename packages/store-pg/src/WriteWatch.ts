/**
 * Rows written to a table of a test database, announced by PostgreSQL as
 * their transactions commit, so a test can await a write made in the
 * background (a reply stored as a stream ends, a timestamp updated after the
 * answer) instead of polling for it.
 *
 * `watchWrites` adds a trigger to the table that sends the chosen columns of
 * every inserted or updated row with `NOTIFY`, and listens for them. Use it
 * on a database of the test's own (`makeTestDatabase`), and start it before
 * the write; `close` removes the trigger.
 *
 * @since 0.2.0
 */
import { randomBytes } from "node:crypto"
import { PgClient } from "@effect/sql-pg"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"

/** One announced row: the watched columns, as JSON values (timestamps are strings). */
export type Row = Readonly<Record<string, unknown>>

/** The rows written to a table since the watch started. */
export interface WriteWatch {
  /**
   * Resolves with the first `count` rows (default 1) written since the watch
   * started that satisfy `predicate`, in commit order: at once if they have
   * been, else as the last of them commits. A row written twice (inserted,
   * then updated) is announced twice.
   */
  readonly written: (predicate: (row: Row) => boolean, count?: number) => Promise<ReadonlyArray<Row>>
  /** Stops listening and removes the trigger. */
  readonly close: () => Promise<void>
}

const identifier = (name: string): string => `"${name.replaceAll('"', '""')}"`
const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`

/** Watches the rows written to `table` of the database at `url`, announcing their `columns`. */
export const watchWrites = async (
  url: string,
  table: string,
  columns: ReadonlyArray<string>
): Promise<WriteWatch> => {
  // One channel, function and trigger per watch, so watches never replace each other.
  const name = `convoke_test_writes_${randomBytes(6).toString("hex")}`
  const fields = columns.map((column) => `${literal(column)}, NEW.${identifier(column)}`).join(", ")
  const rows: Array<Row> = []
  const waiting = new Set<() => void>()
  let listening!: () => void
  let failed!: (error: unknown) => void
  const ready = new Promise<void>((resolve, reject) => {
    listening = resolve
    failed = reject
  })

  const watching = Effect.gen(function* () {
    const sql = yield* PgClient.PgClient
    yield* sql.unsafe(
      `CREATE FUNCTION ${identifier(name)}() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN PERFORM pg_notify(${literal(name)}, json_build_object(${fields})::text); RETURN NEW; END $$`
    )
    yield* Effect.addFinalizer(() =>
      Effect.ignore(sql.unsafe(`DROP FUNCTION IF EXISTS ${identifier(name)}() CASCADE`))
    )
    yield* sql.unsafe(
      `CREATE TRIGGER ${identifier(name)} AFTER INSERT OR UPDATE ON ${identifier(table)}
       FOR EACH ROW EXECUTE FUNCTION ${identifier(name)}()`
    )
    const notifications = yield* sql.listen(name)
    listening()
    return yield* Effect.forever(
      Effect.flatMap(Queue.take(notifications), (notification) =>
        Effect.sync(() => {
          rows.push(JSON.parse(notification.payload))
          for (const check of waiting) check()
        })
      )
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })),
    Effect.onExit((exit) =>
      Effect.sync(() => {
        if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) failed(Cause.squash(exit.cause))
      })
    )
  )
  const fiber = Effect.runFork(watching)
  await ready

  return {
    written: (predicate, count = 1) =>
      new Promise((resolve) => {
        const matches: Array<Row> = []
        let seen = 0
        const check = () => {
          for (; seen < rows.length && matches.length < count; seen++) {
            if (predicate(rows[seen]!)) matches.push(rows[seen]!)
          }
          if (matches.length < count) return
          waiting.delete(check)
          resolve(matches)
        }
        waiting.add(check)
        check()
      }),
    close: () => Effect.runPromise(Effect.asVoid(Fiber.interrupt(fiber)))
  }
}
