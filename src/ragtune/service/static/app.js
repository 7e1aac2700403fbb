// The ragtune web page: plain JavaScript, no build step, no libraries.
//
// Every request carries the pasted key as `Authorization: Bearer <key>`; the key's scopes
// (GET /v1/whoami) decide which tabs show. Everything that comes from the server is put on the
// page with textContent / createElement, never as HTML: documents may contain hostile text.
"use strict";

const KEY_STORAGE = "ragtune.key";
const MODEL_PREFIX = "kb:";
const REFUSALS = {
  "no-passages": "no passage in the knowledge base matched the question",
  retrieval: "no passage was close enough to the question",
  model: "the model said the documents do not answer it",
  confidence: "the model was not confident enough in its answer",
  unsupported: "the judge found no passage that supports the answer",
  flagged: "the answer's only evidence was passages flagged for instruction-like text",
};
const RECOMMENDATIONS = {
  rag: "RAG: retrieve from your documents",
  "fine-tune": "Fine-tune the model",
  hybrid: "Hybrid: fine-tune and retrieve",
  neither: "Neither: a good prompt is enough",
};

const state = {
  key: "",
  who: null,
  loaded: new Set(), // tabs whose data has been fetched for this key
  reportUrl: null, // the blob: URL of the report shown (revoked when replaced)
  kbOfAnswer: "", // the knowledge base the shown answer came from (its citations' passages)
  evidence: [], // the shown answer's verified claims: what the passage viewer highlights
};

const $ = (selector) => document.querySelector(selector);

/** An element with attributes and children; strings become text nodes (never HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  node.replaceChildren();
  return node;
}

/** Append children to `node`, skipping null/undefined/false (what a condition left out). */
function put(node, ...children) {
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// ---------------------------------------------------------------- the API and its errors

class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function errorOf(response) {
  let type = "http_error";
  let message = `${response.status} ${response.statusText || "error"}`;
  try {
    const data = await response.json();
    if (data && data.error) {
      type = data.error.type || type;
      message = data.error.message || message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, type, message);
}

/** fetch with the key; JSON in (`json`) or any body (`body`); JSON out unless `raw`. */
async function api(path, { method = "GET", json, body, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "network", `cannot reach the server (${err.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return raw ? response : response.json();
}

/** `path` with the selected knowledge base as `?kb=` (when one is chosen). */
function withKb(path, kb = selectedKb()) {
  if (!kb) return path;
  return `${path}${path.includes("?") ? "&" : "?"}kb=${encodeURIComponent(kb)}`;
}

function selectedKb() {
  return $("#kb").value;
}

function showError(err) {
  const box = $("#error");
  const text = err instanceof ApiError && err.status
    ? `${err.message} (${err.status} ${err.type})`
    : String(err && err.message ? err.message : err);
  $("#error-text").textContent = text;
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
  $("#error-text").textContent = "";
}

/** Run an async action; its error goes to the error area. */
async function guarded(action) {
  try {
    await action();
  } catch (err) {
    showError(err);
    if (!(err instanceof ApiError)) console.warn(err);
  }
}

/** An ISO date string or Unix seconds (document versions carry those) as local time. */
function formatDate(value) {
  if (value === null || value === undefined || value === "") return "–";
  const date = new Date(typeof value === "number" ? value * 1000 : value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

function formatNumber(value, digits = 2) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

// ---------------------------------------------------------------- key and identity

function can(scope) {
  const scopes = state.who ? state.who.scopes : [];
  return scopes.includes("admin") || scopes.includes(scope);
}

async function useKey(key) {
  state.key = key;
  state.who = null;
  state.loaded.clear();
  resetPanels();
  try {
    state.who = await api("/v1/whoami");
  } catch (err) {
    $("#app").hidden = true;
    $("#identity").hidden = true;
    throw err;
  }
  clearError();
  showIdentity();
  await loadKnowledgeBases();
  showTabs();
}

function showIdentity() {
  const who = state.who;
  const groups = who.sees_everything
    ? "sees every document"
    : who.groups.length ? `groups: ${who.groups.join(", ")}` : "no groups: public documents only";
  $("#whoami").textContent = `Signed in as ${who.name || who.id} (${who.id}) · scopes: `
    + `${who.scopes.join(", ")} · ${groups}`;
  $("#identity").hidden = false;
}

async function loadKnowledgeBases() {
  const select = $("#kb");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "server default" }));
  if (!can("read")) return;
  const models = await api("/v1/models");
  for (const model of models.data || []) {
    const name = String(model.id).startsWith(MODEL_PREFIX)
      ? String(model.id).slice(MODEL_PREFIX.length) : String(model.id);
    select.append(el("option", { value: name, text: name }));
  }
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function forgetKey() {
  localStorage.removeItem(KEY_STORAGE);
  state.key = "";
  state.who = null;
  state.loaded.clear();
  $("#api-key").value = "";
  $("#identity").hidden = true;
  $("#app").hidden = true;
  resetPanels();
  clearError();
  $("#api-key").focus();
}

/** Empty every panel (another key must not see what the last one fetched). */
function resetPanels() {
  for (const selector of ["#answer", "#citations", "#passage", "#documents tbody",
    "#document-view", "#upload-report", "#checklist-questions", "#assessment", "#reports",
    "#traces tbody", "#trace-view"]) {
    clear($(selector));
  }
  for (const selector of ["#passage", "#document-view", "#upload-report", "#assessment",
    "#trace-view", "#report-view", "#citations-title"]) {
    $(selector).hidden = true;
  }
  $("#answer").dataset.state = "empty";
  $("#answer-meta").textContent = "";
  $("#documents-note").textContent = "";
  dropReport();
}

// ---------------------------------------------------------------- tabs

function tabs() {
  return [...document.querySelectorAll('[role="tab"]')];
}

function showTabs() {
  let first = null;
  for (const tab of tabs()) {
    const allowed = tab.dataset.needs.split(" ").some(can);
    tab.hidden = !allowed;
    if (allowed && !first) first = tab;
  }
  $("#app").hidden = false;
  const current = tabs().find((t) => t.getAttribute("aria-selected") === "true" && !t.hidden);
  selectTab(current || first, false);
}

function selectTab(tab, focus = true) {
  if (!tab) return;
  for (const other of tabs()) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  const name = tab.id.replace("tab-", "");
  if (!state.loaded.has(name)) {
    state.loaded.add(name);
    guarded(LOADERS[name]);
  }
}

function onTabKey(event) {
  const visible = tabs().filter((t) => !t.hidden);
  const at = visible.indexOf(event.target);
  const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: visible.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  selectTab(visible[(moves[event.key] + visible.length) % visible.length]);
}

// ---------------------------------------------------------------- ask

/** The server-sent events of a response body, as {event, data} with data parsed as JSON. */
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: true });
    if (done) buffer += decoder.decode();
    buffer = buffer.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const parsed = parseEvent(block);
      if (parsed) yield parsed;
    }
    if (done) {
      const parsed = parseEvent(buffer);
      if (parsed) yield parsed;
      return;
    }
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  try {
    return { event, data: JSON.parse(text) };
  } catch {
    return { event, data: text };
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("#question").value.trim();
  if (!question) {
    showError(new Error("Type a question first."));
    $("#question").focus();
    return;
  }
  clearError();
  const button = $("#ask-button");
  const answer = $("#answer");
  const kb = selectedKb();
  button.disabled = true;
  answer.setAttribute("aria-busy", "true");
  clear(answer);
  clear($("#citations"));
  $("#citations-title").hidden = true;
  $("#passage").hidden = true;
  $("#answer-meta").textContent = "";
  answer.dataset.state = "waiting";
  answer.append(el("p", { class: "status", text: "Searching the documents and checking the answer…" }));
  const body = { question, stream: true, drafts: true };
  if (kb) body.kb = kb;
  try {
    const response = await api("/v1/ask", { method: "POST", json: body, raw: true });
    const type = response.headers.get("content-type") || "";
    if (!type.startsWith("text/event-stream")) {
      showAnswer(await response.json(), kb);
      return;
    }
    let draft = null;
    let checked = null;
    let finished = false;
    const piece = (data) => (data && typeof data.text === "string" ? data.text : "");
    // a streamed text shown as plain text under its label, replacing what was there
    const pane = (label) => {
      clear(answer);
      answer.dataset.state = "drafting";
      const text = el("p", { class: "draft" });
      answer.append(el("p", { class: "status", text: label }), text);
      return text;
    };
    for await (const { event: name, data } of serverEvents(response)) {
      if (name === "draft") {
        // the model's words as it writes them, not yet verified
        draft = draft || pane("Draft, not yet verified:");
        draft.textContent += piece(data);
      } else if (name === "token") {
        // the verdict is in: what follows is the checked answer (or the refusal)
        checked = checked || pane("Checked answer:");
        checked.textContent += piece(data);
      } else if (name === "answer") {
        showAnswer(data, kb);
        finished = true;
      } else if (name === "error") {
        throw new ApiError(500, data.type || "server_error", data.message || String(data));
      }
    }
    if (!finished) throw new ApiError(0, "stream", "the answer stream ended without an answer");
  } catch (err) {
    clear(answer);
    answer.dataset.state = "failed";
    answer.append(el("p", { class: "status", text: "No answer: see the error above." }));
    throw err;
  } finally {
    button.disabled = false;
    answer.removeAttribute("aria-busy");
  }
}

/** The answer text with each [n] marker as a button that opens citation n's passage. */
function answerText(text, citations) {
  const byNumber = new Map(citations.map((c) => [c.number, c]));
  const paragraph = el("p", { class: "answer-text" });
  const marker = /\[(\d+)\]/g;
  let last = 0;
  for (const match of text.matchAll(marker)) {
    const citation = byNumber.get(Number(match[1]));
    if (!citation) continue;
    paragraph.append(text.slice(last, match.index));
    paragraph.append(citeButton(citation, `[${citation.number}]`, "cite"));
    last = match.index + match[0].length;
  }
  paragraph.append(text.slice(last));
  return paragraph;
}

function citeButton(citation, label, className) {
  return el("button", {
    type: "button",
    class: className,
    dataset: { chunk: citation.chunk_id, number: String(citation.number) },
    title: `Show passage ${citation.number}: ${citation.title || citation.doc_id}`,
    "aria-label": `Source ${citation.number}: ${citation.title || citation.doc_id}`,
    text: label,
    onclick: () => guarded(() => showPassage(citation)),
  });
}

function showAnswer(data, kb) {
  state.kbOfAnswer = kb;
  const verification = data.verification || null;
  state.evidence = verification && Array.isArray(verification.claims) ? verification.claims : [];
  const answer = clear($("#answer"));
  const citations = Array.isArray(data.citations) ? data.citations : [];
  if (data.refused) {
    answer.dataset.state = "refused";
    const why = REFUSALS[data.refusal_reason] || data.refusal_reason || "no reason given";
    answer.append(el("div", { class: "refusal" },
      el("p", { class: "refusal-title" }, el("strong", { text: "No answer." }),
        ` The service declined: ${why}.`),
      el("p", { class: "refusal-text", text: data.answer || "" })));
  } else {
    answer.dataset.state = "final";
    answer.append(answerText(String(data.answer || ""), citations));
  }
  const list = clear($("#citations"));
  for (const citation of citations) {
    const where = [citation.source || citation.doc_id];
    if (citation.page !== null && citation.page !== undefined) where.push(`page ${citation.page}`);
    list.append(el("li", {},
      citeButton(citation, `[${citation.number}] ${citation.title || citation.doc_id}`,
        "cite-item"),
      citation.inferred ? el("span", { class: "tag", text: "attributed" }) : null,
      (citation.flags || []).map((f) => el("span", { class: "tag warn", text: f })),
      el("span", { class: "where", text: where.join(", ") }),
      citation.snippet ? el("span", { class: "snippet", text: citation.snippet }) : null));
  }
  $("#citations-title").hidden = citations.length === 0;
  showEvidence(data.refused ? null : verification, citations);
  const meta = [];
  const gen = data.generation;
  if (gen) {
    meta.push(`${gen.prompt_tokens} prompt + ${gen.output_tokens} output tokens`);
    if (typeof gen.seconds === "number") meta.push(`generated in ${gen.seconds.toFixed(1)} s`);
  }
  if (data.timings_ms && typeof data.timings_ms.total === "number") {
    meta.push(`${Math.round(data.timings_ms.total)} ms in all`);
  }
  $("#answer-meta").textContent = meta.join(" · ");
}

/** Each claim of a verified (or marked unverified) answer, its judge's score and a button
 *  that opens the passage with its supporting sentence highlighted. */
function showEvidence(verification, citations) {
  const list = clear($("#evidence"));
  $("#evidence-title").hidden = !verification;
  if (!verification) return;
  $("#evidence-title").textContent = verification.verified
    ? "Evidence: every claim is supported"
    : "Evidence: not verified (returned because the request allowed it)";
  const byChunk = new Map(citations.map((c) => [c.chunk_id, c]));
  for (const claim of verification.claims) {
    const citation = byChunk.get(claim.chunk_id) || (claim.chunk_id ? {
      number: claim.passage, chunk_id: claim.chunk_id, doc_id: claim.doc_id, title: "" } : null);
    list.append(el("li", { class: claim.supported ? "supported" : "unsupported" },
      el("span", { class: "verdict", text: claim.supported ? "supported" : "not supported" }),
      el("span", { class: "claim", text: claim.text }),
      el("span", { class: "where", text: `score ${Number(claim.score).toFixed(2)}` }),
      citation ? citeButton(citation, "show evidence", "cite-item") : null));
  }
}

/** The chunk's text with the evidence sentences of the shown answer marked. */
function highlighted(chunk) {
  const quote = el("blockquote", { class: "passage-text" });
  const spans = state.evidence
    .filter((c) => c.chunk_id === chunk.chunk_id && c.start !== null && c.start >= chunk.start)
    .map((c) => [c.start - chunk.start, c.end - chunk.start])
    .sort((a, b) => a[0] - b[0]);
  let at = 0;
  for (const [start, end] of spans) {
    if (start < at) continue;
    quote.append(chunk.text.slice(at, start));
    quote.append(el("mark", { class: "evidence", text: chunk.text.slice(start, end) }));
    at = end;
  }
  quote.append(chunk.text.slice(at));
  return quote;
}

async function showPassage(citation) {
  const panel = $("#passage");
  for (const button of document.querySelectorAll(".cite, .cite-item")) {
    button.setAttribute("aria-pressed", String(button.dataset.chunk === citation.chunk_id));
  }
  clear(panel);
  panel.hidden = false;
  panel.setAttribute("aria-busy", "true");
  panel.append(el("p", { class: "status", text: `Loading passage ${citation.number}…` }));
  try {
    const chunk = await api(withKb(`/v1/chunks/${encodeURIComponent(citation.chunk_id)}`,
      state.kbOfAnswer));
    clear(panel);
    const meta = [`${chunk.doc_id}`, `version ${chunk.version}`,
      `characters ${chunk.start}–${chunk.end}`];
    if (chunk.page !== null && chunk.page !== undefined) meta.push(`page ${chunk.page}`);
    put(panel,
      el("p", { class: "eyebrow", text: `Source [${citation.number}]` }),
      el("h3", { text: chunk.title || chunk.doc_id }),
      chunk.heading && chunk.heading !== chunk.title
        ? el("p", { class: "heading", text: chunk.heading }) : null,
      highlighted(chunk),
      (chunk.flags || []).length
        ? el("p", { class: "warn-line", text: `Flagged: ${chunk.flags.join(", ")}` }) : null,
      el("p", { class: "meta", text: meta.join(" · ") }),
      el("button", { type: "button", class: "secondary", text: "Close",
        onclick: () => { panel.hidden = true; } }));
  } catch (err) {
    clear(panel);
    panel.append(el("p", { class: "status", text: "The passage could not be loaded." }));
    throw err;
  } finally {
    panel.removeAttribute("aria-busy");
  }
}

// ---------------------------------------------------------------- documents

async function loadDocuments() {
  $("#upload-form").hidden = !can("ingest");
  const body = $("#documents tbody");
  const note = $("#documents-note");
  if (!can("read")) {
    clear(body);
    note.textContent = "This key may add documents but not list them (it lacks the read scope).";
    return;
  }
  const data = await api(withKb("/v1/documents"));
  clear(body);
  const docs = data.documents || [];
  note.textContent = `${docs.length} document${docs.length === 1 ? "" : "s"} in `
    + `“${data.kb}” visible to this key.`;
  for (const doc of docs) {
    const open = () => guarded(() => showDocument(doc.id));
    const row = el("tr", { dataset: { doc: doc.id }, onclick: open },
      el("td", {}, el("button", { type: "button", class: "link", text: doc.title || doc.id,
        onclick: (e) => { e.stopPropagation(); open(); } })),
      el("td", { class: "mono", text: doc.id }),
      el("td", { class: "num", text: String(doc.version) }),
      el("td", { class: "num", text: String(doc.chunks) }),
      el("td", {}, (doc.groups || []).length
        ? doc.groups.map((g) => el("span", { class: "tag", text: g }))
        : el("span", { class: "hint", text: "everyone" })),
      el("td", {}, can("ingest") ? el("button", { type: "button", class: "danger small",
        text: "Delete", "aria-label": `Delete ${doc.title || doc.id}`,
        onclick: (e) => { e.stopPropagation(); guarded(() => deleteDocument(doc)); } }) : null));
    body.append(row);
  }
}

async function showDocument(id) {
  const view = $("#document-view");
  const doc = await api(withKb(`/v1/documents/${encodeURIComponent(id)}?text=true`));
  clear(view);
  const facts = el("dl", { class: "facts" });
  const fact = (name, value) => facts.append(el("dt", { text: name }), el("dd", { text: value }));
  fact("ID", doc.id);
  fact("Source", doc.source || "–");
  fact("Format", doc.format || "–");
  fact("Version", String(doc.version));
  fact("Chunks", String(doc.chunks));
  fact("Groups", (doc.groups || []).join(", ") || "everyone");
  for (const [name, value] of Object.entries(doc.metadata || {})) fact(name, String(value));
  const versions = el("table", { class: "data compact" },
    el("thead", {}, el("tr", {}, ["Version", "Event", "Characters", "Chunks", "When"].map(
      (h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, (doc.versions || []).map((v) => el("tr", {},
      el("td", { class: "num", text: String(v.version) }), el("td", { text: v.event }),
      el("td", { class: "num", text: String(v.chars) }),
      el("td", { class: "num", text: String(v.chunks) }),
      el("td", { text: formatDate(v.created_at) })))));
  view.append(
    el("div", { class: "section-head" }, el("h3", { text: doc.title || doc.id }),
      el("button", { type: "button", class: "secondary", text: "Close",
        onclick: () => { view.hidden = true; } })),
    facts,
    el("h4", { text: "History" }), el("div", { class: "table-wrap" }, versions),
    el("h4", { text: "Text" }), el("pre", { class: "document-text", text: doc.text || "" }));
  view.hidden = false;
  view.scrollIntoView({ block: "nearest" });
}

async function deleteDocument(doc) {
  const name = `“${doc.title || doc.id}” (${doc.id})`;
  if (!window.confirm(`Delete ${name}? Its passages go too.`)) return;
  await api(withKb(`/v1/documents/${encodeURIComponent(doc.id)}`), { method: "DELETE" });
  $("#document-view").hidden = true;
  await loadDocuments();
}

async function upload(event) {
  event.preventDefault();
  clearError();
  const files = $("#upload-files").files;
  if (!files.length) {
    showError(new Error("Choose at least one file to upload."));
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  // left out when empty: the server then uses the key's groups ("" would mean none: public)
  const groups = $("#upload-groups").value.trim();
  if (groups) form.append("groups", groups);
  if (selectedKb()) form.append("kb", selectedKb());
  const button = $("#upload-button");
  const box = $("#upload-report");
  button.disabled = true;
  clear(box).append(el("p", { class: "status", text: `Uploading ${files.length} file(s)…` }));
  box.hidden = false;
  try {
    const report = await api("/v1/documents/files", { method: "POST", body: form });
    showIngestReport(report);
    $("#upload-files").value = "";
  } catch (err) {
    clear(box).append(el("p", { class: "status", text: "Nothing was added." }));
    throw err;
  } finally {
    button.disabled = false;
  }
  await loadDocuments();
}

function showIngestReport(report) {
  const box = clear($("#upload-report"));
  const n = (key) => Number(report[key] || 0);
  box.append(el("p", { class: "ingest-summary",
    text: `Knowledge base “${report.kb}”: ${n("added")} added, ${n("updated")} updated, `
      + `${n("unchanged")} unchanged; ${n("chunks_written")} passages written, `
      + `${n("chunks_embedded")} embedded.` }));
  const failed = report.failed || [];
  if (failed.length) {
    box.append(el("p", { class: "warn-line", text: `${failed.length} failed:` }),
      el("ul", { class: "failures" }, failed.map((f) => el("li", {},
        el("span", { class: "mono", text: f.document }), `: ${f.error}`))));
  }
  box.hidden = false;
}

// ---------------------------------------------------------------- checklist

const choiceValues = new Map(); // radio id -> the choice's JSON value (booleans stay booleans)

async function loadChecklist() {
  const [checklist, reports] = await Promise.all([api("/v1/checklist"), api("/v1/reports")]);
  const holder = clear($("#checklist-questions"));
  choiceValues.clear();
  checklist.questions.forEach((question, i) => {
    const fieldset = el("fieldset", { class: "question", dataset: { key: question.key } },
      el("legend", {}, el("span", { class: "number", text: `${i + 1}` }), question.text));
    const choices = el("div", { class: "choices" });
    question.choices.forEach((choice, j) => {
      const id = `q-${question.key}-${j}`;
      choiceValues.set(id, choice.value);
      choices.append(el("label", { for: id, class: "choice" },
        el("input", { type: "radio", id, name: question.key, value: String(j), required: true }),
        el("span", { text: choice.label })));
    });
    fieldset.append(choices);
    holder.append(fieldset);
  });
  const select = $("#assess-report");
  select.replaceChildren(el("option", { value: "", text: "none: answers only" }));
  for (const report of reports.reports || []) {
    select.append(el("option", { value: report.name,
      text: `${report.name}${report.experiment ? ` (${report.experiment})` : ""}` }));
  }
}

async function assessAnswers(event) {
  event.preventDefault();
  clearError();
  const answers = {};
  const missing = [];
  for (const fieldset of document.querySelectorAll("#checklist-questions fieldset")) {
    const picked = fieldset.querySelector("input:checked");
    if (picked) answers[fieldset.dataset.key] = choiceValues.get(picked.id);
    else missing.push(fieldset.querySelector(".number").textContent);
  }
  if (missing.length) {
    showError(new Error(`Answer every question first (missing: ${missing.join(", ")}).`));
    return;
  }
  const body = { answers };
  if ($("#assess-report").value) body.report = $("#assess-report").value;
  const result = await api("/v1/assess", { method: "POST", json: body });
  const box = clear($("#assessment"));
  box.dataset.recommendation = result.recommendation;
  box.append(
    el("p", { class: "eyebrow", text: "Recommendation" }),
    el("h3", { class: `verdict verdict-${result.recommendation}`,
      text: RECOMMENDATIONS[result.recommendation] || result.recommendation }),
    el("p", { class: "meta", text: Object.entries(result.scores || {}).map(
      ([need, score]) => `${need} need: ${score}`).join(" · ") }),
    el("h4", { text: "Why" }),
    el("ul", { class: "reasons" }, (result.reasons || []).map((r) => el("li", { text: r }))));
  if ((result.warnings || []).length) {
    box.append(el("h4", { text: "Watch out" }),
      el("ul", { class: "warnings" }, result.warnings.map((w) => el("li", { text: w }))));
  }
  if ((result.decided_by || []).length) {
    box.append(el("h4", { text: "Measured" }), el("table", { class: "data compact" },
      el("thead", {}, el("tr", {}, ["Metric", "Architecture", "Value"].map(
        (h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, result.decided_by.map((d) => el("tr", {},
        el("td", { text: d.metric }), el("td", { text: d.arch }),
        el("td", { class: "num", text: typeof d.value === "number"
          ? String(Math.round(d.value * 1000) / 1000) : String(d.value) }))))));
  }
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

// ---------------------------------------------------------------- reports

async function loadReports() {
  const data = await api("/v1/reports");
  const list = clear($("#reports"));
  const reports = data.reports || [];
  if (!reports.length) {
    list.append(el("li", { class: "empty", text: "No lab reports yet: `ragtune compare` or "
      + "`ragtune demo` writes them." }));
    return;
  }
  for (const report of reports) {
    list.append(el("li", {},
      el("button", { type: "button", class: "card", dataset: { report: report.name },
        onclick: () => guarded(() => openReport(report)) },
        el("strong", { text: report.experiment || report.name }),
        el("span", { class: "meta", text: `${report.name} · ${formatDate(report.created_at)}` }),
        report.recommendation
          ? el("span", { class: "tag", text: `recommends ${report.recommendation}` }) : null,
        (report.architectures || []).length
          ? el("span", { class: "meta", text: `compared: ${report.architectures.join(", ")}` })
          : null)));
  }
}

function dropReport() {
  if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
  state.reportUrl = null;
  $("#report-frame").removeAttribute("src");
  $("#report-open").removeAttribute("href");
}

async function openReport(report) {
  const response = await api(`/v1/reports/${encodeURIComponent(report.name)}`, { raw: true });
  const html = await response.text();
  dropReport();
  state.reportUrl = URL.createObjectURL(new Blob([html], { type: "text/html" }));
  $("#report-title").textContent = report.experiment || report.name;
  $("#report-frame").src = state.reportUrl;
  $("#report-open").href = state.reportUrl;
  $("#report-view").hidden = false;
  $("#report-view").scrollIntoView({ block: "nearest" });
}

// ---------------------------------------------------------------- traces

async function loadTraces(event) {
  if (event) event.preventDefault();
  const body = $("#traces tbody");
  const raw = $("#traces-below").value.trim(); // empty: every trace
  const below = Number(raw);
  const query = raw && Number.isFinite(below) ? `below=${encodeURIComponent(below)}&` : "";
  let data;
  try {
    data = await api(`/v1/traces?${query}limit=50`);
  } catch (err) {
    const why = { 403: "Traces need an admin key.", 404: "This server keeps no traces." };
    clear(body).append(el("tr", {}, el("td", { colspan: "6", class: "hint",
      text: why[err.status] || "Traces could not be loaded." })));
    if (err.status in why) return; // said in the table: not an error to shout about
    throw err;
  }
  clear(body);
  const traces = data.traces || [];
  if (!traces.length) {
    body.append(el("tr", {}, el("td", { colspan: "6", class: "hint",
      text: raw ? "No trace below that groundedness." : "No trace yet." })));
  }
  for (const trace of traces) {
    const open = () => guarded(() => showTrace(trace.id));
    body.append(el("tr", { dataset: { trace: trace.id }, onclick: open },
      el("td", {}, el("button", { type: "button", class: "link", text: formatDate(trace.created_at),
        onclick: (e) => { e.stopPropagation(); open(); } })),
      el("td", { text: trace.question }),
      el("td", { text: trace.refused ? `(refused) ${trace.answer || ""}` : trace.answer || "" }),
      el("td", { class: "num", text: formatNumber(trace.groundedness) }),
      el("td", { class: "num", text: typeof trace.latency_ms === "number"
        ? `${Math.round(trace.latency_ms)} ms` : "–" }),
      el("td", { class: "num",
        text: `${trace.prompt_tokens ?? "–"} / ${trace.output_tokens ?? "–"}` })));
  }
}

async function showTrace(id) {
  const trace = await api(`/v1/traces/${encodeURIComponent(id)}`);
  const view = clear($("#trace-view"));
  const facts = el("dl", { class: "facts" });
  const fact = (name, value) => facts.append(el("dt", { text: name }), el("dd", { text: value }));
  fact("ID", String(trace.id));
  fact("When", formatDate(trace.created_at));
  fact("Knowledge base", trace.kb || "–");
  fact("Groundedness", formatNumber(trace.groundedness));
  fact("Latency", typeof trace.latency_ms === "number"
    ? `${Math.round(trace.latency_ms)} ms` : "–");
  fact("Tokens", `${trace.prompt_tokens ?? "–"} prompt, ${trace.output_tokens ?? "–"} output`);
  view.append(
    el("div", { class: "section-head" }, el("h3", { text: trace.question }),
      el("button", { type: "button", class: "secondary", text: "Close",
        onclick: () => { view.hidden = true; } })),
    facts,
    el("h4", { text: trace.refused ? "Answer (refused)" : "Answer" }),
    el("p", { class: "answer-text", text: trace.answer || "" }));
  if (Array.isArray(trace.claims) && trace.claims.length) {
    view.append(el("h4", { text: "Claims" }), el("ul", { class: "claims" },
      trace.claims.map((c) => el("li", { class: c.supported ? "supported" : "unsupported" },
        el("span", { class: "tag", text: c.supported ? "supported" : "unsupported" }),
        ` ${c.claim} `, el("span", { class: "meta", text: `(${formatNumber(c.score)})` })))));
  }
  if (Array.isArray(trace.passages) && trace.passages.length) {
    view.append(el("h4", { text: "Passages in the prompt" }), el("ol", { class: "passages" },
      trace.passages.map((p) => el("li", {},
        el("strong", { text: `[${p.number}] ${p.title || p.doc_id}` }),
        el("span", { class: "meta", text: ` ${p.doc_id}` }),
        el("blockquote", { class: "passage-text", text: p.text || "" })))));
  }
  view.hidden = false;
  view.scrollIntoView({ block: "nearest" });
}

const LOADERS = {
  ask: async () => {},
  documents: loadDocuments,
  checklist: loadChecklist,
  reports: loadReports,
  traces: loadTraces,
};

// ---------------------------------------------------------------- wiring

function start() {
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (!key) {
      showError(new Error("Paste an API key (rt_…) first."));
      return;
    }
    localStorage.setItem(KEY_STORAGE, key);
    guarded(() => useKey(key));
  });
  $("#key-forget").addEventListener("click", forgetKey);
  $("#error-close").addEventListener("click", clearError);
  for (const tab of tabs()) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", onTabKey);
  }
  $("#kb").addEventListener("change", () => {
    state.loaded.delete("documents");
    const documents = $("#tab-documents");
    if (documents.getAttribute("aria-selected") === "true") selectTab(documents, false);
  });
  $("#ask-form").addEventListener("submit", (event) => guarded(() => ask(event)));
  $("#question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#ask-form").requestSubmit();
  });
  $("#upload-form").addEventListener("submit", (event) => guarded(() => upload(event)));
  $("#documents-refresh").addEventListener("click", () => guarded(loadDocuments));
  $("#checklist-form").addEventListener("submit", (event) => guarded(() => assessAnswers(event)));
  $("#reports-refresh").addEventListener("click", () => guarded(loadReports));
  $("#traces-form").addEventListener("submit", (event) => guarded(() => loadTraces(event)));

  const saved = localStorage.getItem(KEY_STORAGE);
  if (saved) {
    $("#api-key").value = saved;
    guarded(() => useKey(saved));
  } else {
    $("#api-key").focus();
  }
}

start();
