/**
 * The services both example functions serve: PostgreSQL from `DATABASE_URL`,
 * API keys from `CONVOKE_API_KEYS` (`key:user-id` pairs, comma-separated),
 * and the echo model (swap in a provider's layer for a real model).
 */
import { EchoLanguageModel, Identity } from "@convoke/core"
import type { LambdaHandler } from "@convoke/lambda"
import { PgConversationStore } from "@convoke/store-pg"
import { Layer } from "effect"

const keys = (process.env.CONVOKE_API_KEYS ?? "")
  .split(",")
  .filter((pair) => pair.includes(":"))
  .map((pair) => {
    const separator = pair.lastIndexOf(":")
    return { key: pair.slice(0, separator).trim(), userId: pair.slice(separator + 1).trim() }
  })

export const layer: LambdaHandler.Source = Layer.mergeAll(
  // One connection per container: a container serves one invocation at a time.
  PgConversationStore.layerUrl(process.env.DATABASE_URL ?? "", { maxConnections: 1 }),
  EchoLanguageModel.layer(),
  Identity.layerApiKeys(keys)
)
