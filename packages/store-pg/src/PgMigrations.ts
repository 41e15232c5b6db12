/**
 * The schema of the PostgreSQL conversation store, as migrations for the
 * `effect/sql` migrator.
 *
 * Every table and index is prefixed `convoke_` so the store can live in a
 * database that also holds an application's own tables. Migrations are
 * recorded in `convoke_migrations`; running them again, or from several
 * processes at once, applies each one exactly once.
 *
 * @since 0.1.0
 */
import { PgMigrator } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { SqlClient, type SqlError } from "effect/sql"

/** The table that records which migrations have run. */
export const table = "convoke_migrations"

/**
 * The migrations, keyed `<id>_<name>`. Use with `PgMigrator.fromRecord` when
 * running them from your own migrator setup.
 */
export const migrations: Record<string, Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient>> = {
  "0001_create_conversations": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      CREATE TABLE convoke_conversations (
        id uuid PRIMARY KEY,
        user_id text NOT NULL,
        title text NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      )`
    yield* sql`
      CREATE INDEX convoke_conversations_user_updated_idx
        ON convoke_conversations (user_id, updated_at DESC, id)`
  }),
  "0002_create_messages": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      CREATE TABLE convoke_messages (
        id uuid PRIMARY KEY,
        conversation_id uuid NOT NULL REFERENCES convoke_conversations (id) ON DELETE CASCADE,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        role text NOT NULL CHECK (role IN ('user', 'assistant')),
        content text NOT NULL,
        status text NOT NULL CHECK (status IN ('complete', 'partial', 'error')),
        metadata jsonb,
        created_at timestamptz NOT NULL
      )`
    yield* sql`
      CREATE INDEX convoke_messages_conversation_seq_idx
        ON convoke_messages (conversation_id, seq)`
  }),
  "0003_create_api_keys": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // Only the SHA-256 digest of a key is stored; the key itself is shown once.
    yield* sql`
      CREATE TABLE convoke_api_keys (
        id uuid PRIMARY KEY,
        user_id text NOT NULL,
        digest text NOT NULL UNIQUE,
        label text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        revoked_at timestamptz,
        last_used_at timestamptz
      )`
    yield* sql`CREATE INDEX convoke_api_keys_user_idx ON convoke_api_keys (user_id, created_at)`
  })
}

/** The migration loader, for `PgMigrator.run({ loader, table })` or `PgMigrator.layer`. */
export const loader: PgMigrator.Loader = PgMigrator.fromRecord(migrations)

/**
 * Applies the pending migrations with the `SqlClient` in context and returns
 * the ones it ran. Unlike `PgMigrator.run` it needs no file system or
 * `pg_dump` services: the store never dumps its schema.
 */
export const run: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  PgMigrator.MigrationError | SqlError.SqlError,
  SqlClient.SqlClient
> = PgMigrator.make({})({ loader, table })

/** A layer that applies the pending migrations when it is built. */
export const layer: Layer.Layer<never, PgMigrator.MigrationError | SqlError.SqlError, SqlClient.SqlClient> =
  Layer.effectDiscard(run)
