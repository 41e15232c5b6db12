/**
 * `GET /health`: the application is up, with what it runs on — the model,
 * the store, the identity — the outbox's counts, and the latest cleanup
 * report when the cleanup job runs.
 *
 * @since 0.3.0
 */
import { Effect } from "effect"
import { HttpServerResponse } from "effect/http"
import * as ApiRouter from "./ApiRouter.ts"
import * as ConversationCleanup from "./ConversationCleanup.ts"
import { ConversationOutbox } from "./ConversationOutbox.ts"
import { ConversationStore } from "./ConversationStore.ts"
import { Identity } from "./Identity.ts"
import { LanguageModel } from "./LanguageModel.ts"

/** The path of the health route. */
export const HEALTH_PATH = "/health"

/** The health route, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const model = yield* LanguageModel
  const store = yield* ConversationStore
  const identity = yield* Identity
  const outbox = yield* ConversationOutbox
  // Present only when the application runs the cleanup job.
  const cleanup = yield* Effect.serviceOption(ConversationCleanup.ConversationCleanup)

  const health = Effect.sync(() => {
    const latest = cleanup._tag === "Some" ? cleanup.value.latest() : undefined
    return HttpServerResponse.jsonUnsafe({
      status: "ok",
      model: model.name,
      store: store.name,
      identity: identity.name,
      outbox: outbox.stats(),
      ...(latest === undefined
        ? {}
        : {
            cleanup: {
              ran_at: latest.ranAt.toISOString(),
              deleted: latest.deleted,
              abandonment_ratio: latest.abandonmentRatio
            }
          })
    })
  })

  // Public: load balancers probe it without credentials, and are not counted.
  return [ApiRouter.route("GET", HEALTH_PATH, health, "public")]
})
