/**
 * The v0.3 wire contract (the README's "The v0.3 contract") as one vitest
 * suite. Every binding — the Node handler, Express, Fastify, Lambda, the
 * reference server on each store — runs exactly these assertions over real
 * loopback HTTP:
 *
 * ```ts
 * describeConformance("Express", async ({ layer }) => {
 *   const store = await StoreProbe.postgres()
 *   const app = await ChatHttp.makeApp(Layer.mergeAll(store.layer, layer))
 *   // … serve app.handler through the binding on 127.0.0.1:0 …
 *   return { url, probe: store.probe, close: async () => { … } }
 * })
 * ```
 *
 * The tests are grouped by concept in their own modules: the chat endpoint
 * (`ChatContract`), the conversation API (`ConversationContract`),
 * `/health`, `/metrics` and the edges of the route table
 * (`OperationsContract`), turns (`TurnContract`) and the rate limits of
 * every route (`LimitContract`).
 *
 * @since 0.1.0
 */
import { AdminAccess, ChatConfig, ChatMetrics, Identity } from "@convoke/core"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import { afterAll, beforeAll, describe } from "vitest"
import * as ChatContract from "./ChatContract.ts"
import * as ConformanceModel from "./ConformanceModel.ts"
import * as ConversationContract from "./ConversationContract.ts"
import * as LimitContract from "./LimitContract.ts"
import * as OperationsContract from "./OperationsContract.ts"
import * as SocketContract from "./SocketContract.ts"
import * as Suite from "./Suite.ts"
import * as TurnContract from "./TurnContract.ts"
import * as TurnObserver from "./TurnObserver.ts"

export {
  ADMIN_TOKEN,
  type ApplicationFallback,
  type Capabilities,
  KEYS,
  type SetupOptions,
  SPENT_CREDENTIAL_PREFIX,
  type Target,
  UUID_V4
} from "./Suite.ts"

/** Runs the wire contract against the binding that `setup` starts. */
export const describeConformance = (
  name: string,
  setup: (options: Suite.SetupOptions) => Promise<Suite.Target>,
  capabilities: Suite.Capabilities = {}
) =>
  describe(`${name}: v0.3 wire contract`, () => {
    const model = ConformanceModel.make()
    const turns = TurnObserver.make()
    let target: Suite.Target | undefined
    beforeAll(async () => {
      target = await setup({
        layer: Layer.mergeAll(
          // The contract is checked on a healthy store: a generous creation
          // budget keeps a slow machine from turning ids temporary, and a
          // generous store timeout keeps replies out of the outbox, so a
          // turn's reported end means its reply is stored.
          Layer.succeed(
            ChatConfig.ChatConfig,
            ChatConfig.make({
              creationBudget: Duration.seconds(10),
              storeTimeout: Duration.seconds(10),
              disconnectGrace: Duration.millis(Suite.DISCONNECT_GRACE_MILLIS),
              bodyTimeout: Duration.millis(Suite.BODY_TIMEOUT_MILLIS)
            })
          ),
          model.layer,
          turns.layer,
          // Served as `GET /metrics` by every binding; counted from this binding's requests only.
          ChatMetrics.layer(),
          AdminAccess.layer({ token: Suite.ADMIN_TOKEN }),
          // Over every binding's own: generous, but Dave is over budget (see LimitContract).
          LimitContract.limits(),
          Identity.layerApiKeys(Object.entries(Suite.KEYS).map(([userId, key]) => ({ key, userId }))).pipe(
            Layer.orDie
          )
        )
      })
    })
    afterAll(async () => {
      await target?.close()
    })

    const suite = Suite.make({
      target: () => {
        if (target === undefined) throw new Error("The binding under test did not start")
        return target
      },
      capabilities,
      model,
      turns
    })
    ChatContract.define(suite)
    ConversationContract.define(suite)
    OperationsContract.define(suite)
    TurnContract.define(suite)
    LimitContract.define(suite)
    SocketContract.define(suite)
  })
