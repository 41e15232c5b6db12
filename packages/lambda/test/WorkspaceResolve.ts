/**
 * A module hook for processes that load the SAM example from this
 * repository (`node --import`): the example is its own package (its
 * `package.json` names the published `@convoke/lambda`), so inside the
 * workspace `@convoke/lambda` resolves to this package's source instead.
 */
import { registerHooks } from "node:module"

const source = new URL("../src/index.ts", import.meta.url).href

registerHooks({
  resolve: (specifier, context, nextResolve) =>
    specifier === "@convoke/lambda" ? { url: source, shortCircuit: true } : nextResolve(specifier, context)
})
