// The streaming Lambda handler behind the package's loopback reproduction of
// the runtime (`@convoke/lambda/testing`), as a Function URL (payload 2.0).
import { ConversationStore, EchoLanguageModel, Identity } from "@convoke/core"
import { LambdaHandler } from "@convoke/lambda"
import { LambdaHarness } from "@convoke/lambda/testing"
import { Layer } from "effect"
import { API_KEY, announce, stopOnSigterm } from "./lifecycle.js"

LambdaHarness.install()
const served = await LambdaHarness.serve(
  LambdaHandler.streaming(
    Layer.mergeAll(
      ConversationStore.layerMemory,
      EchoLanguageModel.layer(),
      Identity.layerApiKeys([{ key: API_KEY, userId: "alice" }])
    )
  )
)
announce(served.url)
stopOnSigterm(async () => {
  await served.close()
  LambdaHarness.uninstall()
  if (served.violations.length > 0)
    throw new Error(`runtime contract violations: ${served.violations.join("; ")}`)
})
