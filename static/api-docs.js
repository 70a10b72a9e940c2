// Renders /api/openapi.json as a readable page: operations by tag, their parameters, bodies
// and responses, with the descriptions' Markdown (paragraphs, lists, tables, `code`, **bold**).
// Plain DOM, no libraries; text is set with textContent, never as HTML.
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

/** Inline Markdown: `code` and **bold**, as nodes appended to `node`. */
function inline(node, text) {
  text.split(/(`[^`]*`|\*\*[^*]+\*\*)/).forEach((part) => {
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) node.append(el("code", part.slice(1, -1)));
    else if (part.startsWith("**") && part.endsWith("**") && part.length > 3) node.append(el("strong", part.slice(2, -2)));
    else if (part) node.append(document.createTextNode(part));
  });
  return node;
}

/** Block Markdown: paragraphs, `- ` lists and `|` tables, separated by blank lines. */
function markdown(text) {
  const out = document.createDocumentFragment();
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split("\n").filter((l) => l.trim());
    if (!lines.length) continue;
    if (lines.every((l) => l.trim().startsWith("|"))) {
      const table = el("table");
      const rows = lines.filter((l) => !/^\|[\s:|-]+\|$/.test(l.trim()));
      rows.forEach((line, i) => {
        const row = el("tr");
        for (const cell of line.trim().slice(1, -1).split("|")) row.append(inline(el(i === 0 ? "th" : "td"), cell.trim()));
        table.append(row);
      });
      out.append(table);
    } else if (lines.every((l) => l.trim().startsWith("- "))) {
      const list = el("ul");
      for (const line of lines) list.append(inline(el("li"), line.trim().slice(2)));
      out.append(list);
    } else {
      out.append(inline(el("p"), lines.join(" ")));
    }
  }
  return out;
}

function schemaName(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.type === "array") return schemaName(schema.items) + "[]";
  return Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "");
}

function renderOperation(path, method, op) {
  const box = el("section", undefined, "op");
  const head = el("div");
  head.append(el("span", method, "method"), el("code", path));
  box.append(head);
  if (op.summary) box.append(inline(el("p"), op.summary));
  if (op.description && op.description !== op.summary) box.append(markdown(op.description));
  if (op.parameters && op.parameters.length) {
    const table = el("table");
    table.append(tr(["parameter", "in", "type", "description"], "th"));
    for (const p of op.parameters) table.append(tr([p.name, p.in, schemaName(p.schema), p.description || ""], "td"));
    box.append(table);
  }
  if (op.requestBody) {
    const types = Object.entries(op.requestBody.content || {});
    for (const [type, media] of types) box.append(el("p", "Body (" + type + "): " + schemaName(media.schema)));
  }
  const responses = el("table");
  responses.append(tr(["status", "description", "body"], "th"));
  for (const [status, r] of Object.entries(op.responses || {})) {
    const body = r.content ? Object.values(r.content).map((m) => schemaName(m.schema)).join(", ") : "";
    responses.append(tr([status, r.description || "", body], "td"));
  }
  box.append(responses);
  return box;
}

function tr(cells, tag) {
  const row = el("tr");
  for (const c of cells) row.append(inline(el(tag), c));
  return row;
}

async function main() {
  const root = document.getElementById("docs");
  try {
    const response = await fetch("/api/openapi.json");
    if (!response.ok) throw new Error("HTTP " + response.status);
    const doc = await response.json();
    root.replaceChildren(el("h1", doc.info.title + " " + doc.info.version));
    root.append(markdown(doc.info.description || ""));
    const byTag = new Map();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const tag = (op.tags && op.tags[0]) || "other";
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(renderOperation(path, method, op));
      }
    }
    for (const [tag, ops] of byTag) root.append(el("h2", tag), ...ops);
    root.append(el("p", "The raw document: /api/openapi.json"));
  } catch (e) {
    root.replaceChildren(el("p", "Could not load /api/openapi.json: " + e.message));
  }
}

main();
