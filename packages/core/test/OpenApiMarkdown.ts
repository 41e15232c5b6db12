/**
 * The OpenAPI document rendered as Markdown (`docs/api.md`): the routes with
 * their parameters, bodies and answers, then the schemas field by field. A
 * view of the document, kept equal to it by `OpenApi.test.ts`.
 */

type Node = { readonly [key: string]: any }

const anchor = (name: string) => name.toLowerCase()

const schemaName = ($ref: string) => $ref.replace("#/components/schemas/", "")

/** A schema as a short type expression. */
export const typeOf = (schema: Node | undefined): string => {
  if (schema === undefined) return "any"
  if (typeof schema.$ref === "string") {
    const name = schemaName(schema.$ref)
    return `[${name}](#${anchor(name)})`
  }
  if (Array.isArray(schema.anyOf)) return schema.anyOf.map(typeOf).join(" \\| ")
  if (Array.isArray(schema.oneOf)) return schema.oneOf.map(typeOf).join(" \\| ")
  if (schema.const !== undefined) return `\`${JSON.stringify(schema.const)}\``
  if (Array.isArray(schema.enum))
    return schema.enum.map((value: unknown) => `\`${JSON.stringify(value)}\``).join(" \\| ")
  if (schema.type === "array") return `array of ${typeOf(schema.items)}`
  if (schema.type === "object" && schema.properties !== undefined) {
    const fields = Object.entries(schema.properties as Record<string, Node>).map(
      ([key, value]) => `${key}${(schema.required ?? []).includes(key) ? "" : "?"}: ${typeOf(value)}`
    )
    return `{ ${fields.join(", ")} }`
  }
  return String(schema.type ?? "any")
}

const cell = (text: string | undefined) => (text ?? "").replace(/\n/g, " ").replace(/\|/g, "\\|")

const METHODS = ["get", "put", "post", "patch", "delete"] as const

/** Renders the document. */
export const render = (document: Node): string => {
  const lines: Array<string> = []
  const out = (...more: Array<string>) => lines.push(...more)
  out(
    `# ${document.info.title} ${document.info.version}`,
    "",
    "<!-- Generated from docs/openapi.json by packages/core/test/OpenApi.test.ts (`vitest run -u`); do not edit. -->",
    "",
    document.info.description,
    "",
    "The machine-readable document: [openapi.json](openapi.json), served by every binding at",
    "`GET /api/v0.3/openapi.json`.",
    "",
    "## Authentication",
    "",
    "| scheme | how |",
    "|---|---|"
  )
  for (const [name, scheme] of Object.entries(document.components.securitySchemes as Record<string, Node>)) {
    const how =
      scheme.type === "http" ? `\`Authorization: Bearer …\`` : `\`${scheme.name}\` in the ${scheme.in}`
    out(`| \`${name}\` | ${how}: ${cell(scheme.description)} |`)
  }
  out("", "Every route needs `bearer` or `apiKey` unless it says otherwise.", "", "## Routes", "")
  for (const [path, item] of Object.entries(document.paths as Record<string, Node>)) {
    for (const method of METHODS) {
      const operation = item[method]
      if (operation === undefined) continue
      out(`### \`${method.toUpperCase()} ${path}\``, "", `${operation.summary}.`, "")
      if (operation.description !== undefined) out(operation.description, "")
      if (operation.security !== undefined) {
        const schemes = (operation.security as Array<Node>).map((requirement) =>
          Object.keys(requirement).length === 0 ? "none" : `\`${Object.keys(requirement).join("` + `")}\``
        )
        out(`Authentication: ${schemes.length === 0 ? "none" : schemes.join(" or ")}.`, "")
      }
      const parameters = [...(item.parameters ?? []), ...(operation.parameters ?? [])] as Array<Node>
      if (parameters.length > 0) {
        out("| parameter | in | type | |", "|---|---|---|---|")
        for (const parameter of parameters) {
          out(
            `| \`${parameter.name}\`${parameter.required ? "" : "?"} | ${parameter.in} | ${typeOf(parameter.schema)} | ${cell(parameter.description)} |`
          )
        }
        out("")
      }
      if (operation.requestBody !== undefined) {
        const body = operation.requestBody as Node
        const types = Object.keys(body.content)
        out(
          `Body (${types.map((type) => `\`${type}\``).join(", ")}): ${typeOf(body.content[types[0]!].schema)}. ${body.description ?? ""}`,
          ""
        )
      }
      out("| status | body | when |", "|---|---|---|")
      for (const [status, response] of Object.entries(operation.responses as Record<string, Node>)) {
        const content = Object.entries((response.content ?? {}) as Record<string, Node>).map(
          ([type, media]) => `\`${type}\`: ${typeOf(media["x-event-schema"] ?? media.schema)}`
        )
        const headers = Object.keys(response.headers ?? {}).filter((name) => name !== "x-request-id")
        out(
          `| ${status} | ${content.join("<br>") || "—"} | ${cell(response.description)}${headers.length === 0 ? "" : ` Headers: ${headers.map((name) => `\`${name}\``).join(", ")}.`} |`
        )
      }
      out("")
    }
  }
  out("## Schemas", "")
  for (const [name, schema] of Object.entries(document.components.schemas as Record<string, Node>)) {
    out(`### ${name}`, "")
    if (schema.description !== undefined) out(schema.description, "")
    if (schema.type === "object" && schema.properties !== undefined) {
      out("| field | type | |", "|---|---|---|")
      for (const [key, value] of Object.entries(schema.properties as Record<string, Node>)) {
        const required = (schema.required ?? []).includes(key)
        out(`| \`${key}\`${required ? "" : "?"} | ${typeOf(value)} | ${cell(value.description)} |`)
      }
    } else {
      out(`One of: ${typeOf(schema)}.`)
    }
    out("")
  }
  return `${lines.join("\n").trimEnd()}\n`
}
