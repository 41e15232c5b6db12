#!/usr/bin/env node
// Run after `changeset version`: the client sends its version in
// `X-Convoke-Client`, from a constant that must follow its package.json.
import { readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const client = join(dirname(fileURLToPath(import.meta.url)), "..", "packages", "client")
const { version } = JSON.parse(readFileSync(join(client, "package.json"), "utf8"))
const file = join(client, "src", "version.ts")
const source = readFileSync(file, "utf8")
const updated = source.replace(/export const VERSION = "[^"]*"/, `export const VERSION = "${version}"`)
if (updated === source && !source.includes(`"${version}"`)) throw new Error(`No VERSION constant in ${file}`)
writeFileSync(file, updated)
