/**
 * The Unity package's runtime compiled without Unity by Mono's `mcs`, and its
 * C# tests (`packages/unity/Tests`) run by `mono` against the reference server
 * and a faulty server on loopback. Each C# test is one test here, so the
 * totals count them.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startFaultyServer, startProxyControl, startReferenceServer } from "./servers.ts"

const unity = fileURLToPath(new URL("../../unity/", import.meta.url))
const sources = (folder: string) =>
  readdirSync(join(unity, folder))
    .filter((file) => file.endsWith(".cs"))
    .map((file) => join(unity, folder, file))

const hasMono =
  spawnSync("mcs", ["--version"], { stdio: "ignore" }).status === 0 &&
  spawnSync("mono", ["--version"], { stdio: "ignore" }).status === 0

// Mono comes from Debian's packages, installed by .ci/run; a developer machine
// without it skips these tests, CI never does.
const runnable = hasMono || process.env.CI !== undefined

const build = mkdtempSync(join(tmpdir(), "convoke-mono-"))
const executable = join(build, "ConvokeClientTests.exe")
const compile = hasMono
  ? spawnSync(
      "mcs",
      ["-r:System.Net.Http.dll", `-out:${executable}`, ...sources("Runtime"), ...sources("Tests")],
      { encoding: "utf8" }
    )
  : undefined
// The samples and the Unity-only runtime (the PlayerPrefs store, the
// UnityWebRequest transport), as Unity would compile them
// (UNITY_5_3_OR_NEWER), against the stubs of the UnityEngine types they use.
const stubs = readdirSync(fileURLToPath(new URL("../stubs/", import.meta.url)))
  .filter((file) => file.endsWith(".cs"))
  .map((file) => fileURLToPath(new URL(`../stubs/${file}`, import.meta.url)))
const samples = hasMono
  ? spawnSync(
      "mcs",
      [
        "-target:library",
        "-d:UNITY_5_3_OR_NEWER",
        "-r:System.Net.Http.dll",
        `-out:${join(build, "Samples.dll")}`,
        ...sources("Runtime"),
        ...sources("Samples~/Conversations"),
        ...sources("Samples~/BasicChat"),
        ...stubs
      ],
      { encoding: "utf8" }
    )
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

describe.skipIf(!runnable)("Unity package under Mono", () => {
  const results = new Map<string, string>()
  let output = ""
  let closers: Array<() => Promise<void>> = []

  beforeAll(async () => {
    if (compile?.status !== 0) return
    const [reference, faulty] = await Promise.all([startReferenceServer(), startFaultyServer()])
    const control = await startProxyControl(reference.url)
    closers = [control.close, reference.close, faulty.close]
    output = await runTests([
      "--reference",
      reference.url,
      "--faulty",
      faulty.url,
      "--proxies",
      control.url,
      "--metrics",
      reference.metricsUrl ?? ""
    ])
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

  it("compiles the runtime and the tests with mcs", () => {
    expect(hasMono, "mcs and mono must be installed (apt-get install mono-mcs mono-runtime)").toBe(true)
    expect(compile?.stderr ?? "", compile?.stdout ?? "").not.toMatch(/error CS/)
    expect(compile?.status).toBe(0)
    expect(names.length).toBeGreaterThan(0)
  })

  it("compiles the samples, the PlayerPrefs store and the UnityWebRequest transport against the UnityEngine stubs", () => {
    expect(samples?.stderr ?? "", samples?.stdout ?? "").not.toMatch(/error CS/)
    expect(samples?.status).toBe(0)
  })

  it.each(names)("%s", (name) => {
    expect(results.get(name) ?? `no result; output:\n${output}`).toBe("PASS")
  })
})
