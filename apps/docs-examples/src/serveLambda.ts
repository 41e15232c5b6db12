/**
 * Serves the streaming Lambda handler a document shows, the way a Function
 * URL would (`LambdaHarness`): `node src/serveLambda.ts <module>` imports the
 * module, serves its `handler` on loopback, prints the base URL, and stops
 * on `SIGTERM` — failing if the handler broke the runtime's contract.
 *
 * @since 0.3.0
 */
import { pathToFileURL } from "node:url"
import { LambdaHarness } from "@convoke/lambda/testing"

const module = process.argv[2]
if (module === undefined) throw new Error("usage: node src/serveLambda.ts <handler module>")

// The `awslambda` global, as the Node.js runtime defines it before it loads a handler.
LambdaHarness.install()
const { handler } = (await import(pathToFileURL(module).href)) as {
  handler: Parameters<typeof LambdaHarness.serve>[0]
}
const served = await LambdaHarness.serve(handler)
console.log(`Convoke at ${served.url}`)
process.once("SIGTERM", async () => {
  await served.close()
  if (served.violations.length > 0) {
    console.error(`The handler broke the runtime's contract: ${served.violations.join("; ")}`)
    process.exit(1)
  }
  process.exit(0)
})
