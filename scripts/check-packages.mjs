#!/usr/bin/env node
// Checks the published packages the way a user gets them, outside the workspace:
//
//   1. builds every published package (`private` ones excluded) to dist/ with types,
//      and checks that dist/ imports only what package.json declares;
//   2. packs each with `pnpm pack` (what `changeset publish` publishes: `workspace:`
//      ranges become versions, `publishConfig.exports` points at dist/);
//   3. lints each tarball with publint and @arethetypeswrong/cli;
//   4. installs the tarballs with plain npm into a fresh project in a temporary
//      directory (no workspace, no links), with Node itself from the registry at
//      the lowest version each package's `engines` claims;
//   5. compiles a TypeScript program that imports every entry point and a smoke
//      program per adapter under `strict`, with `moduleResolution` `node16` and
//      `bundler`;
//   6. starts the Express 5 (PGlite store), Express 4, Fastify and Lambda (loopback
//      runtime harness) smoke servers on the server packages' lowest Node, and runs
//      the client smoke program against each on the client's lowest Node.
//
// Usage: node scripts/check-packages.mjs [--keep]   (--keep leaves the temporary project)
// Exits non-zero on the first failure, after saying which step failed.
import { spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { builtinModules } from "node:module"
import { tmpdir } from "node:os"
import { delimiter, dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const bin = (name) => join(root, "node_modules", ".bin", name)
// turbo and pnpm run the workspace's scripts with the workspace's tools (and its Node).
const workspaceEnv = {
  ...process.env,
  PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH}`
}
const keep = process.argv.includes("--keep")
const started = Date.now()
const seconds = () => `${((Date.now() - started) / 1000).toFixed(1)} s`

const step = (title) => console.log(`\n[check-packages ${seconds()}] ${title}`)
const die = (message) => {
  console.error(`\ncheck-packages FAILED: ${message}`)
  process.exit(1)
}
const run = (command, args, options = {}) => {
  const result = spawnSync(command, args, { stdio: "inherit", ...options })
  if (result.status !== 0) die(`${command} ${args.join(" ")} exited with ${result.status ?? result.signal}`)
}
const runAsync = (command, args, options = {}) =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options })
    let output = ""
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    child.on("error", reject)
    child.on("close", (code) =>
      code === 0
        ? resolve(output)
        : reject(new Error(`${command} ${args.join(" ")} exited with ${code}\n${output}`))
    )
  })
const readJson = (file) => JSON.parse(readFileSync(file, "utf8"))

// ── the published packages ──
const packages = readdirSync(join(root, "packages"))
  .map((dir) => ({ dir: join(root, "packages", dir), json: join(root, "packages", dir, "package.json") }))
  .filter(({ json }) => existsSync(json))
  .map(({ dir, json }) => ({ dir, manifest: readJson(json) }))
  .filter(({ manifest }) => manifest.name.startsWith("@convoke/") && manifest.private !== true)
if (packages.length === 0) die("no published packages found")
const byName = new Map(packages.map((pkg) => [pkg.manifest.name, pkg]))
console.log(`published packages: ${[...byName.keys()].join(", ")}`)

// The lowest Node each package claims: `engines.node` must be one `>=X.Y.Z` bound.
const lowestNode = ({ manifest }) => {
  const match = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(manifest.engines?.node ?? "")
  if (match === null) die(`${manifest.name}: engines.node must be ">=X.Y.Z", not ${manifest.engines?.node}`)
  return `${match[1]}.${match[2] ?? 0}.${match[3] ?? 0}`
}
const CLIENT = "@convoke/client"
const serverNodes = new Set(packages.filter((pkg) => pkg.manifest.name !== CLIENT).map(lowestNode))
if (serverNodes.size !== 1)
  die(
    `the server packages claim different lowest Node versions (${[...serverNodes].join(", ")}): make them agree`
  )
const [serverNode] = serverNodes
const clientNode = lowestNode(byName.get(CLIENT))
console.log(`lowest Node claimed: ${serverNode} (server packages), ${clientNode} (${CLIENT})`)

// ── 1. build ──
step("build (turbo run build)")
run(
  bin("turbo"),
  [
    "run",
    "build",
    "--output-logs=errors-only",
    ...packages.map(({ manifest }) => `--filter=${manifest.name}`)
  ],
  { env: workspaceEnv }
)

// Every bare import in dist/ must be a Node builtin, the package itself, or a
// declared dependency / peer dependency: a devDependency would be missing for users.
step("dist imports only declared dependencies")
const builtins = new Set(builtinModules)
const importPattern =
  /^\s*(?:import|export)\b[^;'"]*?from\s*"([^"]+)"|^\s*import\s*"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/gm
for (const { dir, manifest } of packages) {
  const declared = new Set([
    manifest.name,
    ...Object.keys(manifest.dependencies ?? {}),
    ...Object.keys(manifest.peerDependencies ?? {})
  ])
  const dist = join(dir, "dist")
  const files = readdirSync(dist, { recursive: true }).filter((file) => /\.(js|d\.ts)$/.test(file))
  for (const file of files) {
    for (const match of readFileSync(join(dist, file), "utf8").matchAll(importPattern)) {
      const specifier = match[1] ?? match[2] ?? match[3]
      if (specifier.startsWith(".") || specifier.startsWith("node:") || builtins.has(specifier)) continue
      const name = specifier.startsWith("@")
        ? specifier.split("/").slice(0, 2).join("/")
        : specifier.split("/")[0]
      if (!declared.has(name)) die(`${manifest.name}: dist/${file} imports "${specifier}", not a dependency`)
    }
  }
}

// ── 2. pack ──
const work = mkdtempSync(join(tmpdir(), "convoke-packages-"))
const packs = join(work, "packs")
mkdirSync(packs)
step(`pack (pnpm pack) into ${packs}`)
const tarballs = new Map()
for (const { dir, manifest } of packages) {
  run(bin("pnpm"), ["pack", "--pack-destination", packs], {
    cwd: dir,
    env: workspaceEnv,
    stdio: ["ignore", "ignore", "inherit"]
  })
  const file = join(packs, `${manifest.name.slice(1).replace("/", "-")}-${manifest.version}.tgz`)
  if (!existsSync(file)) die(`pnpm pack wrote no ${file}`)
  tarballs.set(manifest.name, file)
}

// ── 3. publint and attw ──
step("publint and @arethetypeswrong/cli on each tarball")
for (const [name, file] of tarballs) {
  run(bin("publint"), ["run", file, "--strict", "--level", "warning"], {
    stdio: ["ignore", "ignore", "inherit"]
  })
  // ESM only: CommonJS `require` (node10, node16 from CJS) is not offered.
  const attw = spawnSync(bin("attw"), [file, "--profile", "esm-only", "--format", "ascii"], {
    encoding: "utf8"
  })
  if (attw.status !== 0) die(`attw found problems in ${name}:\n${attw.stdout}${attw.stderr}`)
  console.log(`${name}: publint and attw clean`)
}

// ── 4. fresh projects outside the workspace ──
// One project holds every package with Express 5, Fastify and the client; Express 4
// gets its own, where `express` and `@types/express` are version 4 as in a user's app.
const workspaceVersion = (name) => readJson(join(root, "node_modules", name, "package.json")).version
const smoke = join(root, "scripts", "package-smoke")
const makeProject = (name, { packages: names, dependencies, devDependencies, programs, checkLibs }) => {
  const dir = join(work, name)
  mkdirSync(join(dir, "src"), { recursive: true })
  writeFileSync(
    join(dir, "package.json"),
    `${JSON.stringify(
      {
        name: `convoke-package-check-${name}`,
        private: true,
        type: "module",
        dependencies: {
          ...Object.fromEntries(names.map((pkg) => [pkg, `file:${tarballs.get(pkg)}`])),
          effect: workspaceVersion("effect"),
          ...dependencies
        },
        devDependencies: {
          "@types/node": `^${serverNode.split(".")[0]}.0.0`,
          typescript: workspaceVersion("typescript"),
          ...devDependencies
        },
        // The packages' dependencies on each other resolve to the tarballs, never to the registry.
        overrides: Object.fromEntries(names.map((pkg) => [pkg, `$${pkg}`]))
      },
      null,
      2
    )}\n`
  )
  for (const program of ["lifecycle", ...programs])
    cpSync(join(smoke, `${program}.ts`), join(dir, "src", `${program}.ts`))
  // Strict, node16 (with `checkLibs`, skipLibCheck off so the packages'
  // declarations are checked; effect's and ai's own need the DOM lib); and
  // strict, bundler, a Node-only lib with skipLibCheck on, as `tsc --init` writes it.
  const options = { strict: true, target: "ES2022", types: ["node"], noEmitOnError: true }
  const tsconfig = (compilerOptions) => `${JSON.stringify({ compilerOptions, include: ["src"] }, null, 2)}\n`
  writeFileSync(
    join(dir, "tsconfig.json"),
    tsconfig({
      ...options,
      lib: ["ES2023", "DOM"],
      skipLibCheck: !checkLibs,
      module: "node16",
      moduleResolution: "node16",
      rootDir: "src",
      outDir: "dist"
    })
  )
  writeFileSync(
    join(dir, "tsconfig.bundler.json"),
    tsconfig({
      ...options,
      lib: ["ES2023"],
      skipLibCheck: true,
      module: "preserve",
      moduleResolution: "bundler",
      noEmit: true
    })
  )
  return dir
}

const entries = [...byName.values()].flatMap(({ manifest }) =>
  Object.keys(manifest.publishConfig?.exports ?? { ".": null })
    .filter((key) => key !== "./package.json")
    .map((key) => manifest.name + key.slice(1))
)
const app = makeProject("app", {
  packages: [...tarballs.keys()],
  dependencies: {
    express: "^5.0.0",
    fastify: "^5.0.0",
    ai: readJson(join(byName.get(CLIENT).dir, "package.json")).devDependencies.ai,
    ws: readJson(join(byName.get("@convoke/core").dir, "package.json")).dependencies.ws
  },
  // @types/json-schema: `ai`'s own declarations import it (seen with skipLibCheck off).
  devDependencies: {
    "@types/express": "^5.0.0",
    "@types/json-schema": "^7.0.0",
    "@types/ws": readJson(join(byName.get("@convoke/core").dir, "package.json")).dependencies["@types/ws"]
  },
  programs: ["express5", "fastify", "lambda", "client"],
  checkLibs: true
})
// Every entry point of every published package, imported by name; the client's
// again on its own, to load them on the client's lowest Node.
const entryProgram = (list) =>
  [
    "// Entry points of the published packages, imported by name.",
    ...list.map((entry, i) => `import * as entry${i} from "${entry}"`),
    "",
    `const entries: Record<string, object> = { ${list.map((entry, i) => `"${entry}": entry${i}`).join(", ")} }`,
    "for (const [name, entry] of Object.entries(entries))",
    '  if (Object.keys(entry).length === 0) throw new Error(name + " exports nothing")',
    'console.log("ok " + process.version + ": " + Object.keys(entries).join(", ") + " load")',
    ""
  ].join("\n")
writeFileSync(join(app, "src", "entrypoints.ts"), entryProgram(entries))
writeFileSync(
  join(app, "src", "client-entrypoints.ts"),
  entryProgram(entries.filter((entry) => entry === CLIENT || entry.startsWith(`${CLIENT}/`)))
)
const express4 = makeProject("express4", {
  packages: ["@convoke/core", "@convoke/express"],
  dependencies: { express: "^4.17.0" },
  devDependencies: { "@types/express": "^4.17.0" },
  programs: ["express4"],
  checkLibs: false
})

// Node from the registry (the `node` package) at each lowest claimed version.
const runtimes = join(root, "node_modules", ".cache", "convoke-node")
const runtime = (version) => join(runtimes, version, "node_modules", ".bin", "node")
const versions = [...new Set([serverNode, clientNode])]
const npmEnv = {
  ...process.env,
  npm_config_update_notifier: "false",
  npm_config_fund: "false",
  npm_config_audit: "false"
}
const npmInstall = (cwd, ...args) =>
  runAsync("npm", ["install", "--no-package-lock", "--loglevel=error", ...args], { cwd, env: npmEnv })
step(`npm install in ${work}; Node ${versions.join(" and ")} from the registry`)
await Promise.all([
  npmInstall(app),
  npmInstall(express4),
  ...versions
    .filter((version) => !existsSync(runtime(version)))
    .map((version) => {
      mkdirSync(join(runtimes, version), { recursive: true })
      writeFileSync(join(runtimes, version, "package.json"), "{}\n")
      return npmInstall(join(runtimes, version), `node@${version}`)
    })
]).catch((error) => die(error.message))
for (const version of versions) {
  const actual = spawnSync(runtime(version), ["--version"], { encoding: "utf8" }).stdout?.trim()
  if (actual !== `v${version}`) die(`the registry's node@${version} runs as ${actual}`)
}

// ── 5. TypeScript: strict, node16 and bundler (two compilers at a time) ──
step("tsc (strict): node16 → dist/ and bundler, in both projects")
const compile = (dir, config) =>
  runAsync(process.execPath, [join(dir, "node_modules", "typescript", "bin", "tsc"), "-p", config], {
    cwd: dir
  }).then(() => console.log(`${dir}: ${config} compiles`))
await compile(app, "tsconfig.json")
  .then(() => Promise.all([compile(app, "tsconfig.bundler.json"), compile(express4, "tsconfig.json")]))
  .then(() => compile(express4, "tsconfig.bundler.json"))
  .catch((error) => die(error.message))

// ── 6. run: entry points, then each server with the client against it ──
step(`entry points on Node ${serverNode}, the client's on Node ${clientNode}`)
run(runtime(serverNode), ["dist/entrypoints.js"], { cwd: app })
run(runtime(clientNode), ["dist/client-entrypoints.js"], { cwd: app })

// A key as strong as the core demands, shared by the servers and the client.
const key = randomBytes(32).toString("hex")
const startServer = (dir, program) =>
  new Promise((resolve, reject) => {
    const child = spawn(runtime(serverNode), [`dist/${program}.js`, key], {
      cwd: dir,
      stdio: ["ignore", "pipe", "inherit"]
    })
    const exited = new Promise((done) => child.once("exit", (code, signal) => done(code ?? signal)))
    child.once("exit", (code) => reject(new Error(`${program} exited with ${code} before listening`)))
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = /^listening (\S+)$/.exec(line)
      if (match !== null) resolve({ url: match[1], child, exited })
      else console.log(`  ${program}: ${line}`)
    })
  })

// The WebSocket route where the adapter serves it (Lambda answers 426).
for (const [dir, program, ...flags] of [
  [app, "express5", "--websocket"],
  [express4, "express4"],
  [app, "fastify", "--websocket"],
  [app, "lambda"]
]) {
  step(`${program} on Node ${serverNode}, the client on Node ${clientNode}`)
  const server = await startServer(dir, program).catch((error) => die(error.message))
  const client = spawnSync(runtime(clientNode), ["dist/client.js", server.url, ...flags, key], {
    cwd: app,
    stdio: "inherit"
  })
  server.child.kill("SIGTERM")
  const code = await server.exited
  if (client.status !== 0) die(`the client smoke program failed against ${program}`)
  if (code !== 0) die(`${program} did not stop cleanly on SIGTERM (${code})`)
}

if (keep) console.log(`\nkept ${work}`)
else {
  step(`removing ${work}`)
  rmSync(work, { recursive: true, force: true })
}
console.log(`\ncheck-packages passed: ${tarballs.size} packages in ${seconds()}`)
