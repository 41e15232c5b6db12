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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SqlClient from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"

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
  "0003_conversation_lifecycle": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // Listing orders by (updated_at DESC, id DESC) and resumes after a
    // (updated_at, id) cursor. The first index has id ascending, so it can
    // serve neither that order nor the row comparison; an all-ascending index
    // serves both, scanned backward.
    yield* sql`
      CREATE INDEX convoke_conversations_user_updated_id_idx
        ON convoke_conversations (user_id, updated_at, id)`
    yield* sql`DROP INDEX IF EXISTS convoke_conversations_user_updated_idx`
    // Whether the conversation has an assistant reply with content, kept by a
    // trigger so every writer maintains it. Cleanup then reads only the
    // unreplied conversations instead of probing the messages of every old
    // one, and a reply committed while cleanup runs changes the row it locks.
    yield* sql`
      ALTER TABLE convoke_conversations ADD COLUMN replied boolean NOT NULL DEFAULT false`
    yield* sql`
      UPDATE convoke_conversations c SET replied = true
      WHERE EXISTS (
        SELECT 1 FROM convoke_messages m
        WHERE m.conversation_id = c.id AND m.role = 'assistant' AND m.content <> ''
      )`
    yield* sql.unsafe(`
      CREATE FUNCTION convoke_conversations_mark_replied() RETURNS trigger
      LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE convoke_conversations SET replied = true
        WHERE id = NEW.conversation_id AND NOT replied;
        RETURN NULL;
      END
      $$`)
    yield* sql`
      CREATE TRIGGER convoke_messages_mark_replied
        AFTER INSERT ON convoke_messages
        FOR EACH ROW WHEN (NEW.role = 'assistant' AND NEW.content <> '')
        EXECUTE FUNCTION convoke_conversations_mark_replied()`
    // Cleanup: the oldest unreplied conversations first.
    yield* sql`
      CREATE INDEX convoke_conversations_unreplied_created_idx
        ON convoke_conversations (created_at) WHERE NOT replied`
    // The abandonment ratio: every conversation in a creation window, answered
    // from the index alone.
    yield* sql`
      CREATE INDEX convoke_conversations_created_idx
        ON convoke_conversations (created_at) INCLUDE (replied)`
  }),
  "0004_create_audit_log": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      CREATE TABLE convoke_audit_log (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        action text NOT NULL,
        cause text,
        user_id text NOT NULL,
        conversation_id uuid NOT NULL,
        request_id text
      )`
    // Append-only in the database itself, whatever the application does.
    yield* sql.unsafe(`
      CREATE FUNCTION convoke_audit_log_reject_change() RETURNS trigger
      LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'convoke_audit_log is append-only: % is not allowed', TG_OP
          USING ERRCODE = 'insufficient_privilege';
      END
      $$`)
    yield* sql`
      CREATE TRIGGER convoke_audit_log_append_only
        BEFORE UPDATE OR DELETE ON convoke_audit_log
        FOR EACH ROW EXECUTE FUNCTION convoke_audit_log_reject_change()`
    yield* sql`
      CREATE TRIGGER convoke_audit_log_no_truncate
        BEFORE TRUNCATE ON convoke_audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION convoke_audit_log_reject_change()`
  }),
  "0005_create_api_keys": Effect.gen(function* () {
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
  }),
  "0006_turn_statuses": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // A reply now ends `cancelled` (stopped, or its reader never came back) or
    // `interrupted` (its instance died or shut down) instead of `partial`;
    // rows written before keep `partial`, which stays valid.
    yield* sql`ALTER TABLE convoke_messages DROP CONSTRAINT IF EXISTS convoke_messages_status_check`
    yield* sql`
      ALTER TABLE convoke_messages ADD CONSTRAINT convoke_messages_status_check
        CHECK (status IN ('complete', 'partial', 'cancelled', 'interrupted', 'error', 'streaming'))`
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
