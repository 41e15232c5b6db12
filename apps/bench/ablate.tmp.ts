import * as Load from "./src/Load.ts"
import * as ServerProcess from "./src/ServerProcess.ts"

const db = process.env.DATABASE_URL!
const base = {
  DATABASE_URL: db,
  CONVOKE_ECHO_DELAY_MS: "5",
  CONVOKE_RATE_LIMIT_REQUESTS: "0",
  CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "0",
  CONVOKE_RATE_LIMIT_AUTH_FAILURES: "0",
  CONVOKE_RATE_LIMIT_CONCURRENT: "0",
  CONVOKE_LOG_FORMAT: "off",
  CONVOKE_CLEANUP_INTERVAL_MINUTES: "0",
  REDIS_URL: "",
  CONVOKE_DATA_DIR: "/tmp/ablate-data"
}
const variants: Array<[string, Array<string>, Record<string, string>]> = JSON.parse(process.argv[2]!)
const C = Number(process.argv[3] ?? 64)
for (let round = 0; round < 2; round++)
  for (const [name, args, env] of variants) {
    const server = await ServerProcess.start({
      name,
      args,
      env: { ...base, ECHO_DELAY_MS: "5", ...env },
      ready: /listening\s+(http:\/\/\S+)/
    })
    await Load.run({
      url: server.url,
      concurrency: 16,
      requests: 400,
      message: "hello benchmark world of streams"
    })
    const cpu0 = server.cpuSeconds()
    const r = await Load.run({
      url: server.url,
      concurrency: C,
      seconds: 8,
      message: "hello benchmark world of streams"
    })
    const cpu = server.cpuSeconds() - cpu0
    const ok = r.samples.length
    console.log(
      `${name.padEnd(24)} ${((cpu * 1000) / ok).toFixed(3)} ms CPU/req  ${(ok / r.seconds).toFixed(0)} req/s  p50 ${Load.percentile(
        r.samples.map((s) => s.ttfe),
        50
      ).toFixed(1)}  temp ${r.samples.filter((s) => s.temporary).length} err ${r.errors}`
    )
    await server.stop()
  }
process.exit(0)
