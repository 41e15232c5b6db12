/**
 * `GET /health`: the application is up. Anyone gets only its status,
 * `{"status":"ok"}` (or `503 {"status":"shutting_down"}` once it shuts
 * down) — load balancers and uptime checks need nothing more.
 * The details — the model, the store, the identity provider, the outbox's
 * counts and the latest cleanup report — tell an attacker how the server
 * authenticates and what it runs on, so they go only to a request with the
 * admin token (`AdminAccess`), or to anyone on an application of their own
 * (`detailsRoutes`, for a port only operators reach).
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Schema from "effect/Schema"
import * as AdminAccess from "./AdminAccess.ts"
import * as ApiRouter from "./ApiRouter.ts"
import { ChatService } from "./ChatService.ts"
import * as ConversationCleanup from "./ConversationCleanup.ts"
import { ConversationOutbox } from "./ConversationOutbox.ts"
import { ConversationStore } from "./ConversationStore.ts"
import { Identity } from "./Identity.ts"
import { LanguageModel } from "./LanguageModel.ts"

/** The path of the health route. */
export const HEALTH_PATH = "/health"

/** What anyone gets: `ok`, or `shutting_down` (with `503`) once the application shuts down. */
export const Status = Schema.Struct({ status: Schema.Literals(["ok", "shutting_down"]) })

/** What the admin token gets: the status and what the application runs on. */
export const Details = Schema.Struct({
  status: Schema.Literal("ok"),
  model: Schema.String,
  store: Schema.String,
  identity: Schema.String,
  outbox: Schema.Struct({
    pending: Schema.Int,
    drained: Schema.Int,
    dropped: Schema.Int,
    recovered: Schema.Int,
    skipped: Schema.Int
  }),
  /** The latest cleanup report, where the cleanup job runs. */
  cleanup: Schema.optionalKey(
    Schema.Struct({
      ran_at: Schema.String,
      deleted: Schema.Int,
      abandonment_ratio: Schema.Finite
    })
  )
})

/** The body of the details, built once from the services in context. */
const details = Effect.gen(function* () {
  const model = yield* LanguageModel
  const store = yield* ConversationStore
  const identity = yield* Identity
  const outbox = yield* ConversationOutbox
  // Present only when the application runs the cleanup job.
  const cleanup = yield* Effect.serviceOption(ConversationCleanup.ConversationCleanup)
  return (): typeof Details.Type => {
    const latest = cleanup._tag === "Some" ? cleanup.value.latest() : undefined
    return {
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
    }
  }
})

const status = (status: (typeof Status.Type)["status"]): typeof Status.Type => ({ status })

/**
 * The health route of the API: its status to anyone — `200 {"status":"ok"}`,
 * or `503 {"status":"shutting_down"}` once the application shuts down, so a
 * load balancer stops sending it requests — and the details with the admin
 * token.
 */
export const routes = Effect.gen(function* () {
  const body = yield* details
  const chat = yield* ChatService
  const health = Effect.map(AdminAccess.isAdmin, (admin) =>
    chat.isShuttingDown()
      ? HttpServerResponse.jsonUnsafe(status("shutting_down"), { status: 503 })
      : HttpServerResponse.jsonUnsafe(admin ? body() : status("ok"))
  )
  // Public: load balancers probe it without credentials, and are not counted.
  return [ApiRouter.route("GET", HEALTH_PATH, health, "public")]
})

/**
 * The health route with its details for anyone: serve it only where
 * operators alone can reach, e.g. beside `ChatMetrics.route` on an admin
 * port (`ChatHttp.fromRoutes`).
 */
export const detailsRoutes = Effect.gen(function* () {
  const body = yield* details
  return [
    ApiRouter.route(
      "GET",
      HEALTH_PATH,
      Effect.sync(() => HttpServerResponse.jsonUnsafe(body())),
      "public"
    )
  ]
})
