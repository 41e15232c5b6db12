/**
 * `convoke keys`: creates, lists and revokes the API keys stored in the
 * server's database (the one `DATABASE_URL` names, else the embedded database
 * in `CONVOKE_DATA_DIR`). A key is printed once, when it is created; only its
 * SHA-256 digest is kept.
 *
 *     convoke keys create --user alice --label laptop
 *     convoke keys list [--user alice]
 *     convoke keys revoke <id>
 *
 * The embedded database can be opened by one process at a time: stop the
 * server before managing its keys, or use PostgreSQL (`DATABASE_URL`), where
 * keys take effect on the running server at once.
 */
import { parseArgs } from "node:util"
import { PgApiKeyStore } from "@convoke/store-pg"
import * as Effect from "effect/Effect"
import { readSecret } from "./CommandLine.ts"
import { databaseLayer } from "./Server.ts"

/** The help text of `convoke keys`. */
export const help = (): string =>
  [
    "Usage: convoke keys <command> [options]",
    "",
    "Manages the API keys stored in the database (DATABASE_URL, else the embedded one).",
    "",
    "  create --user <id> [--label <text>]   Create a key for a user and print it (shown once)",
    "  list [--user <id>]                    List keys: id, user, label, created, last used, status",
    "  revoke <id>                           Revoke a key; requests with it fail from then on",
    "",
    "  --database-url <url>                  PostgreSQL URL (DATABASE_URL)",
    "  --database-url-file <path>            File holding the PostgreSQL URL (DATABASE_URL_FILE)",
    "  --data-dir <dir>                      Embedded database directory (CONVOKE_DATA_DIR, default ./.convoke/data)"
  ].join("\n")

/** What a command printed and how it ended; `run` does no I/O of its own beyond the database. */
export interface Outcome {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const usage = (message: string): Outcome => ({ code: 2, stdout: "", stderr: `${message}\n\n${help()}\n` })

const date = (value: Date | undefined) => (value === undefined ? "-" : value.toISOString())

/** Runs `convoke keys …` with the arguments after `keys`. */
export const run = async (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): Promise<Outcome> => {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(argv)
  } catch (error) {
    return usage((error as Error).message)
  }
  const { values, positionals } = parsed
  const [command, ...rest] = positionals
  if (values.help === true || command === undefined || command === "help") {
    return { code: command === undefined && values.help !== true ? 2 : 0, stdout: `${help()}\n`, stderr: "" }
  }
  let databaseUrl: string | undefined
  try {
    // As the server reads it: the flag, its file, the variable, its file.
    const fileFlag = values["database-url-file"]
    const fileVariable = env.DATABASE_URL_FILE || undefined
    databaseUrl =
      values["database-url"] ??
      (fileFlag === undefined ? undefined : readSecret(fileFlag, "--database-url-file")) ??
      (env.DATABASE_URL || undefined) ??
      (fileVariable === undefined ? undefined : readSecret(fileVariable, "DATABASE_URL_FILE"))
  } catch (error) {
    return usage((error as Error).message)
  }
  const dataDir = values["data-dir"] ?? (env.CONVOKE_DATA_DIR || "./.convoke/data")

  let program: Effect.Effect<Outcome, unknown, PgApiKeyStore.PgApiKeyStore>
  switch (command) {
    case "create": {
      const userId = values.user?.trim()
      if (userId === undefined || userId === "" || rest.length > 0)
        return usage("keys create needs --user <id>")
      program = Effect.gen(function* () {
        const store = yield* PgApiKeyStore.PgApiKeyStore
        const key = yield* store.create({ userId, label: values.label })
        return {
          code: 0,
          stdout: `${key.key}\n`,
          stderr: `Created key ${key.id} for user "${key.userId}"${key.label === "" ? "" : ` (${key.label})`}. It is shown only this once: store it now.\n`
        }
      })
      break
    }
    case "list": {
      if (rest.length > 0) return usage("keys list takes no arguments besides --user")
      program = Effect.gen(function* () {
        const store = yield* PgApiKeyStore.PgApiKeyStore
        const keys = yield* store.list({ userId: values.user })
        const rows = [
          ["id", "user", "label", "created", "last used", "status"],
          ...keys.map((key) => [
            key.id,
            key.userId,
            key.label,
            date(key.createdAt),
            date(key.lastUsedAt),
            key.revokedAt === undefined ? "active" : `revoked ${date(key.revokedAt)}`
          ])
        ]
        const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
        const text = rows.map((row) =>
          row
            .map((cell, column) => cell.padEnd(widths[column]!))
            .join("  ")
            .trimEnd()
        )
        return { code: 0, stdout: `${text.join("\n")}\n`, stderr: "" }
      })
      break
    }
    case "revoke": {
      const [id, ...extra] = rest
      if (id === undefined || extra.length > 0) return usage("keys revoke needs exactly one key id")
      program = Effect.gen(function* () {
        const store = yield* PgApiKeyStore.PgApiKeyStore
        return (yield* store.revoke(id))
          ? { code: 0, stdout: "", stderr: `Revoked key ${id}.\n` }
          : { code: 1, stdout: "", stderr: `No active key with id ${id}.\n` }
      })
      break
    }
    default:
      return usage(`Unknown command "keys ${command}"`)
  }
  try {
    return await Effect.runPromise(
      program.pipe(
        Effect.provide(PgApiKeyStore.layer),
        Effect.provide(databaseLayer({ databaseUrl, dataDir })),
        Effect.scoped
      )
    )
  } catch (error) {
    const cause = (error as Error).cause
    const reason = [(error as Error).message, cause instanceof Error ? cause.message : undefined]
      .filter((part) => part !== undefined && part !== "")
      .join(": ")
    return { code: 1, stdout: "", stderr: `convoke keys ${command} failed: ${reason}\n` }
  }
}

const parse = (argv: ReadonlyArray<string>) =>
  parseArgs({
    args: [...argv],
    options: {
      user: { type: "string" },
      label: { type: "string" },
      "database-url": { type: "string" },
      "database-url-file": { type: "string" },
      "data-dir": { type: "string" },
      help: { type: "boolean", short: "h" }
    },
    strict: true,
    allowPositionals: true
  })
