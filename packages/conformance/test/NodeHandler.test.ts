/**
 * The wire contract against the core's Node binding on plain `node:http`,
 * with the PostgreSQL store.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { ChatHttp } from "@convoke/core"
import { NodeHandler, NodeSocket } from "@convoke/core/node"
import { Layer } from "effect"
import { describeConformance, StoreProbe } from "../src/index.ts"

describeConformance("node:http + NodeHandler.toNodeHandler and NodeSocket.attach", async ({ layer }) => {
  const store = await StoreProbe.postgres()
  const app = await ChatHttp.makeApp(Layer.mergeAll(store.layer, layer))
  const server = createServer(NodeHandler.toNodeHandler(app))
  NodeSocket.attach(server, app)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    probe: store.probe,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await app.dispose()
      await store.drop()
    }
  }
})
