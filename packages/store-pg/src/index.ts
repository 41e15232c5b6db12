/**
 * `@convoke/store-pg`: the PostgreSQL `ConversationStore` for Convoke, with an
 * embedded PGlite database as the zero-configuration default.
 *
 * @since 0.1.0
 */
export * as PgApiKeyStore from "./PgApiKeyStore.ts"
export * as PgAuditLog from "./PgAuditLog.ts"
export * as PgConversationStatistics from "./PgConversationStatistics.ts"
export * as PgConversationStore from "./PgConversationStore.ts"
export * as PgEmbedded from "./PgEmbedded.ts"
export * as PgMigrations from "./PgMigrations.ts"
