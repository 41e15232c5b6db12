// What every smoke program shares: the API key, given as its last argument; a
// server prints the base URL of the API once it listens, and stops cleanly on
// SIGTERM (exit code 0 only if stopping did).

/** The one user's API key (64 hex characters), the last argument of every program. */
export const API_KEY: string = process.argv.at(-1) ?? ""
if (!/^[0-9a-f]{64}$/.test(API_KEY))
  throw new Error("usage: node <program>.js [baseUrl] <64 hex characters of key>")

export const announce = (baseUrl: string): void => {
  console.log(`listening ${baseUrl}`)
}

export const stopOnSigterm = (stop: () => Promise<void>): void => {
  process.once("SIGTERM", () => {
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error("stopping failed:", error)
        process.exit(1)
      }
    )
  })
}
