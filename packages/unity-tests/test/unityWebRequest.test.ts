/**
 * The Unity package's UnityWebRequest transport, compiled by Mono's `mcs`
 * with `UNITY_5_3_OR_NEWER` against a stub of the UnityEngine networking
 * surface it uses (`stubs/`), and its C# tests (`csharp/`) run by `mono`
 * against the reference server and the faulty server. Each C# test is one
 * test here. Also checks that the ordinary build, without the define, leaves
 * the transport and UnityEngine out.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startFaultyServer, startReferenceServer } from "./servers.ts"

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const sources = (folder: string) =>
  readdirSync(folder)
    .filter((file) => file.endsWith(".cs"))
    .map((file) => join(folder, file))

const runtime = sources(here("../../unity/Runtime/"))
const stubs = sources(here("../stubs/"))
const tests = sources(here("../csharp/"))

const hasMono =
  spawnSync("mcs", ["--version"], { stdio: "ignore" }).status === 0 &&
  spawnSync("mono", ["--version"], { stdio: "ignore" }).status === 0

// As in mono.test.ts: a developer machine without Mono skips, CI never does.
const runnable = hasMono || process.env.CI !== undefined

const build = mkdtempSync(join(tmpdir(), "convoke-uwr-"))
const executable = join(build, "UnityWebRequestTransportTests.exe")
const library = join(build, "Convoke.Client.dll")
const mcs = (args: ReadonlyArray<string>) => spawnSync("mcs", args, { encoding: "utf8" })
const compile = hasMono
  ? mcs([
      "-define:UNITY_5_3_OR_NEWER",
      "-r:System.Net.Http.dll",
      `-out:${executable}`,
      ...runtime,
      ...stubs,
      ...tests
    ])
  : undefined
const names =
  compile?.status === 0
    ? spawnSync("mono", [executable, "--list"], { encoding: "utf8" }).stdout.trim().split("\n")
    : []

const runTests = (args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    // Asynchronous on purpose: the servers run in this process.
    const child = spawn("mono", [executable, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk) => {
      output += chunk
    })
    child.stderr.on("data", (chunk) => {
      output += chunk
    })
    child.on("error", reject)
    child.on("close", () => resolve(output))
  })

describe.skipIf(!runnable)("Unity package: UnityWebRequest transport under Mono", () => {
  const results = new Map<string, string>()
  let output = ""
  let closers: Array<() => Promise<void>> = []

  beforeAll(async () => {
    if (compile?.status !== 0) return
    const [reference, faulty] = await Promise.all([startReferenceServer(), startFaultyServer()])
    closers = [reference.close, faulty.close]
    output = await runTests(["--reference", reference.url, "--faulty", faulty.url])
    for (const line of output.split("\n")) {
      const match = /^(PASS|FAIL|SKIP) (.*)$/.exec(line)
      if (match === null) continue
      const rest = match[2]!
      const name = names.find((candidate) => rest === candidate || rest.startsWith(`${candidate}: `))
      if (name !== undefined) results.set(name, match[1] === "PASS" ? "PASS" : line)
    }
  })

  afterAll(async () => {
    await Promise.all(closers.map((close) => close()))
    rmSync(build, { recursive: true, force: true })
  })

  it("compiles the runtime with UNITY_5_3_OR_NEWER against the stub, without warnings in the runtime", () => {
    expect(hasMono, "mcs and mono must be installed (apt-get install mono-mcs mono-runtime)").toBe(true)
    const diagnostics = `${compile?.stdout ?? ""}${compile?.stderr ?? ""}`
    expect(diagnostics).not.toMatch(/error CS/)
    expect(diagnostics).not.toMatch(/Runtime\/\w+\.cs\(\d+,\d+\): warning/)
    expect(compile?.status).toBe(0)
    expect(names.length).toBeGreaterThan(0)
  })

  it("leaves the transport and UnityEngine out of the ordinary build", () => {
    expect(hasMono).toBe(true)
    const plain = mcs(["-target:library", "-r:System.Net.Http.dll", `-out:${library}`, ...runtime])
    expect(`${plain.stdout}${plain.stderr}`).not.toMatch(/error CS|warning CS/)
    expect(plain.status).toBe(0)
    const assembly = readFileSync(library)
    expect(assembly.includes("UnityWebRequestTransport")).toBe(false)
    expect(assembly.includes("UnityEngine")).toBe(false)
    expect(assembly.includes("DownloadRelay")).toBe(true)
  })

  it.each(names)("%s", (name) => {
    expect(results.get(name) ?? `no result; output:\n${output}`).toBe("PASS")
  })
})
