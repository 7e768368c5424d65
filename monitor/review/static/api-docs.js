// Renders /api/openapi.json as a readable page: operations, parameters, responses,
// schemas. Text only (textContent), so nothing in the document is parsed as HTML.

import { el } from "./review.js";

function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.type === "array") return `${typeOf(schema.items)}[]`;
  if (schema.type === "object" && schema.additionalProperties) return `{string: ${typeOf(schema.additionalProperties)}}`;
  return schema.format ? `${schema.type} (${schema.format})` : schema.type || "any";
}

function operation(path, method, op) {
  const params = op.parameters || [];
  return el("section", { class: "card", id: `${method}-${path}` },
    el("h2", {}, el("code", {}, `${method.toUpperCase()} ${path}`), " ", el("span", { class: "muted" }, op.summary || "")),
    el("p", {}, op.description || ""),
    params.length ? el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description"))),
      el("tbody", {}, params.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, typeOf(p.schema)), el("td", {}, p.description || p.schema?.description || ""))))) : null,
    op.requestBody ? el("p", {}, "Body: ", el("code", {}, Object.entries(op.requestBody.content).map(([type, c]) => `${type} ${typeOf(c.schema)}`).join(", "))) : null,
    el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "answer"))),
      el("tbody", {}, Object.entries(op.responses).map(([code, r]) => el("tr", {}, el("td", {}, code), el("td", {}, r.description, r.content ? el("span", { class: "muted" }, ` — ${Object.entries(r.content).map(([t, c]) => `${t} ${typeOf(c.schema)}`).join(", ")}`) : null))))));
}

function schemaCard(name, schema) {
  const required = new Set(schema.required || []);
  return el("div", { id: `schema-${name}` },
    el("h3", {}, el("code", {}, name)),
    schema.description ? el("p", { class: "muted" }, schema.description) : null,
    el("table", {}, el("tbody", {}, Object.entries(schema.properties || {}).map(([prop, s]) => el("tr", {},
      el("td", {}, el("code", {}, prop), required.has(prop) ? "" : el("span", { class: "muted" }, " (optional)")),
      el("td", {}, typeOf(s)),
      el("td", { class: "muted" }, s.description || ""))))));
}

const doc = await (await fetch("/api/openapi.json")).json();
document.getElementById("title").textContent = `${doc.info.title} (OpenAPI ${doc.openapi})`;
document.getElementById("description").textContent = doc.info.description;
document.getElementById("operations").replaceChildren(...Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => operation(path, method, op))));
document.getElementById("schemas").replaceChildren(...Object.entries(doc.components.schemas).map(([n, s]) => schemaCard(n, s)));
