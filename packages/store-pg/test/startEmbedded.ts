/**
 * Run by `PgEmbedded.test.ts` as a process of its own (`node startEmbedded.ts
 * <dataDir>`): starts the embedded database in `dataDir`, prints its port as
 * JSON and stops it.
 */
import { PgEmbedded } from "@convoke/store-pg"
import * as Effect from "effect/Effect"

const dataDir = process.argv[2]
if (dataDir === undefined) throw new Error("usage: startEmbedded.ts <dataDir>")
const server = await Effect.runPromise(Effect.scoped(PgEmbedded.start({ dataDir })))
console.log(JSON.stringify({ port: server.port }))
