/**
 * The services both example functions serve, read from the environment as
 * the reference server reads it: PostgreSQL from `DATABASE_URL`, API keys
 * from `CONVOKE_API_KEYS` (`key:user-id` pairs, comma-separated), the chat
 * and CORS settings from the core's variables (`CONVOKE_MAX_BODY_BYTES`,
 * `CONVOKE_CORS_ORIGINS`, … as in the README's configuration table), and the
 * echo model (swap in a provider's layer for a real model). An invalid or
 * missing variable fails the build of the app with a message naming it.
 *
 * With `REDIS_URL`, the turn log (resume, stop), the outbox and the rate
 * limits live in Redis, shared by every container, as the reference server
 * keeps them (key prefixes `CONVOKE_TURN_LOG_PREFIX`, `CONVOKE_OUTBOX_PREFIX`,
 * `CONVOKE_REDIS_PREFIX`). Without it they stay in each container's memory:
 * see docs/lambda.md for what that means when Lambda freezes the process.
 */
import {
  ChatConfig,
  ChatHttp,
  ChatRateLimit,
  EchoLanguageModel,
  HttpSecurity,
  Identity,
  OutboxRedis,
  RedisTurnLog
} from "@convoke/core"
import type { LambdaHandler } from "@convoke/lambda"
import { PgConversationStore } from "@convoke/store-pg"
import { NodeRedis } from "@effect/platform-node"
import { Config, Effect, Layer, Schema } from "effect"

// `key:user-id`: the user id follows the last colon, so a key may hold colons.
const pairs = (raw: string) =>
  raw
    .split(",")
    .filter((pair) => pair.trim() !== "")
    .map((pair) => /^(.+):([^:]+)$/.exec(pair.trim()))
    .map((match) => ({ key: match?.[1]?.trim() ?? "", userId: match?.[2]?.trim() ?? "" }))

const apiKeys = Config.schema(
  Schema.String.check(
    Schema.makeFilter(
      (raw: string) =>
        pairs(raw).every(({ key, userId }) => Identity.keyProblem(key) === undefined && userId !== "") ||
        `must be key:user-id pairs, comma-separated, with keys as strong as generated ones (at least ${Identity.MIN_KEY_LENGTH} random characters: e.g. "openssl rand -hex 32")`
    )
  ),
  "CONVOKE_API_KEYS"
).pipe(Config.map(pairs))

const services = Layer.mergeAll(
  // One connection per container: a container serves one invocation at a time.
  Layer.unwrap(
    Effect.map(Config.Redacted("DATABASE_URL"), (url) =>
      PgConversationStore.layerUrl(url, { maxConnections: 1 })
    )
  ),
  EchoLanguageModel.layer(),
  Layer.unwrap(Effect.map(apiKeys, Identity.layerApiKeys)),
  ChatConfig.layerConfig(),
  HttpSecurity.layerConfig()
)

/** The app both handlers serve, built once per container. */
export const source: LambdaHandler.Source = () => {
  const url = process.env.REDIS_URL
  if (url === undefined || url === "") return ChatHttp.makeApp(services)
  // One connection per container, shared by the three.
  const redis = NodeRedis.layer({ url }).pipe(Layer.orDie)
  const prefix = (name: string) => process.env[name] || undefined
  return ChatHttp.makeApp(
    Layer.mergeAll(
      services,
      OutboxRedis.layer({ prefix: prefix("CONVOKE_OUTBOX_PREFIX") }).pipe(Layer.provide(redis)),
      ChatRateLimit.layerRedisConfig().pipe(Layer.provide(redis))
    ),
    { turnLog: RedisTurnLog.layer({ prefix: prefix("CONVOKE_TURN_LOG_PREFIX") }).pipe(Layer.provide(redis)) }
  )
}
