/**
 * API keys stored in PostgreSQL, hashed at rest, each mapped to a user id.
 *
 * A key is `cvk_` followed by 43 base64url characters (256 random bits). The
 * table `convoke_api_keys` holds only its SHA-256 digest, with a label, the
 * owner, and when it was created, last used and revoked; the key itself is
 * returned once, by `create`, and cannot be recovered. A request's key is
 * hashed and looked up by digest, and the stored digest is compared in
 * constant time, so the answer's timing says nothing about how much of a
 * guessed key was right.
 *
 * `identity` turns the store into an `Identity` service; combine it with
 * configured keys or JWTs through `Identity.any`.
 *
 * @since 0.1.0
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto"
import { ChatError, Identity } from "@convoke/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as SqlClient from "effect/sql/SqlClient"
import { CurrentLanes } from "./internal/lanes.ts"
import { failingAs } from "./internal/unavailable.ts"
import * as PgMigrations from "./PgMigrations.ts"

/** The prefix of every stored key, so a key is recognisable in logs and secret scanners. */
export const PREFIX = "cvk_"

/** A stored key, without its secret. */
export interface ApiKey {
  readonly id: string
  readonly userId: string
  readonly label: string
  readonly createdAt: Date
  readonly revokedAt: Date | undefined
  readonly lastUsedAt: Date | undefined
}

/** A key just created: the only time `key` is known. */
export interface CreatedApiKey extends ApiKey {
  readonly key: string
}

/** The operations of the key store. */
export interface Service {
  /** Creates a key for a user; the returned `key` is shown once and never stored. */
  readonly create: (input: {
    readonly userId: string
    readonly label?: string | undefined
  }) => Effect.Effect<CreatedApiKey, ChatError.StoreUnavailable>
  /** Lists keys, newest last, optionally for one user; revoked keys included. */
  readonly list: (input?: {
    readonly userId?: string | undefined
  }) => Effect.Effect<ReadonlyArray<ApiKey>, ChatError.StoreUnavailable>
  /** Revokes a key by id; `false` when no active key has that id. Takes effect on the next request. */
  readonly revoke: (id: string) => Effect.Effect<boolean, ChatError.StoreUnavailable>
  /** The owner of an active key, or none. */
  readonly verify: (key: string) => Effect.Effect<Option.Option<ApiKey>, ChatError.StoreUnavailable>
  /** How many keys are active; the reference server stays out of anonymous mode when any is. */
  readonly countActive: Effect.Effect<number, ChatError.StoreUnavailable>
}

/** The key store tag. */
export class PgApiKeyStore extends Context.Service<PgApiKeyStore, Service>()(
  "@convoke/store-pg/PgApiKeyStore"
) {}

interface Row {
  readonly id: string
  readonly user_id: string
  readonly digest: string
  readonly label: string
  readonly created_at: Date
  readonly revoked_at: Date | null
  readonly last_used_at: Date | null
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The stored digest of a key: SHA-256, hex. */
export const digestOf = (key: string): string => createHash("sha256").update(key, "utf8").digest("hex")

/** A fresh key: `cvk_` and 256 random bits in base64url. */
export const generate = (): string => `${PREFIX}${randomBytes(32).toString("base64url")}`

/** Whether a credential has the shape of a stored key (checked before any query). */
export const looksLikeKey = (credential: string): boolean => /^cvk_[A-Za-z0-9_-]{43}$/.test(credential)

const toApiKey = (row: Row): ApiKey => ({
  id: row.id,
  userId: row.user_id,
  label: row.label,
  createdAt: row.created_at,
  revokedAt: row.revoked_at ?? undefined,
  lastUsedAt: row.last_used_at ?? undefined
})

const unavailable = (cause: unknown) =>
  new ChatError.StoreUnavailable({ message: "The API key store is unavailable", cause })

const orUnavailable = failingAs(unavailable)

/** Builds the store on the `SqlClient` in context, assuming the schema exists. */
export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const lanes = yield* CurrentLanes

  const create = Effect.fn("PgApiKeyStore.create")(
    function* (input: { readonly userId: string; readonly label?: string | undefined }) {
      if (input.userId.trim() === "" || input.userId.includes("\u0000") || /\p{Cs}/u.test(input.userId)) {
        return yield* Effect.fail(new Error("A user id must be non-empty text"))
      }
      const key = generate()
      const id = randomUUID()
      const label = (input.label ?? "").replace(/\p{Cs}/gu, "\uFFFD").replaceAll("\u0000", "\uFFFD")
      const rows = yield* sql<Row>`
      INSERT INTO convoke_api_keys (id, user_id, digest, label, created_at)
      VALUES (${id}::uuid, ${input.userId}, ${digestOf(key)}, ${label}, now())
      RETURNING id, user_id, digest, label, created_at, revoked_at, last_used_at`.withoutTransform
      return { ...toApiKey(rows[0]!), key }
    },
    lanes.background,
    orUnavailable
  )

  const list = Effect.fn("PgApiKeyStore.list")(
    function* (input: { readonly userId?: string | undefined } = {}) {
      const rows =
        input.userId === undefined
          ? yield* sql<Row>`
            SELECT id, user_id, digest, label, created_at, revoked_at, last_used_at
            FROM convoke_api_keys ORDER BY created_at, id`.withoutTransform
          : yield* sql<Row>`
            SELECT id, user_id, digest, label, created_at, revoked_at, last_used_at
            FROM convoke_api_keys WHERE user_id = ${input.userId} ORDER BY created_at, id`.withoutTransform
      return rows.map(toApiKey)
    },
    lanes.background,
    orUnavailable
  )

  const revoke = Effect.fn("PgApiKeyStore.revoke")(
    function* (id: string) {
      if (!UUID.test(id)) return false
      const rows = yield* sql<{ readonly id: string }>`
      UPDATE convoke_api_keys SET revoked_at = now()
      WHERE id = ${id}::uuid AND revoked_at IS NULL
      RETURNING id`.withoutTransform
      return rows.length > 0
    },
    lanes.background,
    orUnavailable
  )

  const verify = Effect.fn("PgApiKeyStore.verify")(function* (key: string) {
    if (!looksLikeKey(key)) return Option.none<ApiKey>()
    const digest = digestOf(key)
    // Every request with a stored key waits on this: the urgent lane.
    const rows = yield* lanes.urgent(
      sql<Row>`
      SELECT id, user_id, digest, label, created_at, revoked_at, last_used_at
      FROM convoke_api_keys
      WHERE digest = ${digest} AND revoked_at IS NULL`.withoutTransform
    )
    const row = rows[0]
    if (row === undefined) return Option.none<ApiKey>()
    // The index found the row by digest; compare the digests in constant time
    // anyway, so no code path ever compares secrets byte by byte.
    if (!timingSafeEqual(Buffer.from(row.digest, "hex"), Buffer.from(digest, "hex"))) {
      return Option.none<ApiKey>()
    }
    // Recorded at most once a minute per key, and never on the request's path.
    yield* sql`
      UPDATE convoke_api_keys SET last_used_at = now()
      WHERE id = ${row.id}::uuid
        AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`.pipe(
      lanes.background,
      Effect.ignore,
      Effect.forkDetach
    )
    return Option.some(toApiKey(row))
  }, orUnavailable)

  const countActive = orUnavailable(
    Effect.map(
      lanes.background(
        sql<{ readonly count: string }>`
        SELECT count(*)::text AS count FROM convoke_api_keys WHERE revoked_at IS NULL`.withoutTransform
      ),
      (rows) => Number(rows[0]?.count ?? 0)
    )
  )

  return PgApiKeyStore.of({ create, list, revoke, verify, countActive })
})

/** The key store on the `SqlClient` in context, after applying the migrations. */
export const layer: Layer.Layer<PgApiKeyStore, ChatError.StoreUnavailable, SqlClient.SqlClient> =
  Layer.effect(PgApiKeyStore, Effect.andThen(orUnavailable(PgMigrations.run), make))

const invalid = new ChatError.Unauthenticated({ message: "Invalid API key" })

/**
 * The key store as an identity provider: `Authorization: Bearer cvk_…` or
 * `X-API-Key: cvk_…`. Revoked and unknown keys are `401`; a database that
 * cannot be reached is `503`, never a silent `401`.
 */
export const identity: Effect.Effect<Identity.Service, never, PgApiKeyStore> = Effect.gen(function* () {
  const store = yield* PgApiKeyStore
  return {
    name: "api-keys (stored)",
    accepts: looksLikeKey,
    authenticate: (headers) => {
      const credential = Identity.credentialFrom(headers)
      if (credential === undefined) {
        return Effect.fail(new ChatError.Unauthenticated({ message: Identity.MISSING_CREDENTIALS }))
      }
      return store.verify(credential).pipe(
        Effect.flatMap(
          Option.match({
            onNone: () => Effect.fail(invalid),
            onSome: (key) => Effect.succeed({ userId: key.userId })
          })
        )
      )
    }
  }
})

/** The key store as the only identity provider. */
export const layerIdentity: Layer.Layer<Identity.Identity, never, PgApiKeyStore> = Layer.effect(
  Identity.Identity,
  identity
)
