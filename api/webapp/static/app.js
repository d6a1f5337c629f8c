// ragql's reference app: the API used as a frontend would use it. Queries and mutations go over
// fetch (POST /graphql, JSON or the multipart upload spec); subscriptions over the websocket with
// the standard graphql-ws client, vendored from npm (api/webapp/vendor.py), so nothing is fetched
// from a CDN. No framework: each panel is a form, a render function and a few DOM helpers.
import { createClient } from "./vendor/graphql-ws@6.4.2/dist/client.js";

const $ = (id) => document.getElementById(id);
const ENDPOINT = new URL("/graphql", location.href);
const PRODUCTION = document.documentElement.dataset.environment === "production";
const TOKEN_KEY = "ragql.token";

// ---------------------------------------------------------------- transport

// In memory and in sessionStorage only (gone when the tab closes); never in localStorage or a cookie.
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let socket = null;

function authHeaders() {
  return token ? { authorization: token.includes(" ") ? token : `Bearer ${token}` } : {};
}

class ApiError extends Error {
  constructor(errors) {
    super(errors.map((e) => `${e.extensions?.code ?? "ERROR"}: ${e.message}`).join("; "));
    this.errors = errors;
  }
}

async function graphql(query, variables = {}) {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", ...authHeaders() },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json().catch(() => ({ errors: [{ message: `HTTP ${response.status}` }] }));
  if (body.errors?.length) throw new ApiError(body.errors);
  return body.data;
}

function subscriptions() {
  if (!socket) {
    const url = new URL(ENDPOINT);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    // connectionParams is read on every (re)connect, so a token entered later is used.
    socket = createClient({ url: url.href, connectionParams: () => authHeaders(), retryAttempts: 2 });
  }
  return socket;
}

function subscribe(query, variables, onData) {
  return new Promise((resolve, reject) => {
    subscriptions().subscribe(
      { query, variables },
      {
        next: (result) => (result.errors ? reject(new ApiError(result.errors)) : onData(result.data)),
        error: (error) => reject(error instanceof Error ? error : new Error(describeClose(error))),
        complete: resolve,
      },
    );
  });
}

function describeClose(event) {
  if (Array.isArray(event)) return new ApiError(event).message;
  return event?.reason ? `websocket closed: ${event.code} ${event.reason}` : `websocket error ${event?.code ?? ""}`;
}

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const decoder = document.createElement("textarea");
function unescapeHtml(text) {
  decoder.innerHTML = text; // a textarea's content is never parsed as markup: this only decodes entities
  return decoder.value;
}

// The API's snippet is HTML-escaped text with the query terms in <mark>: rebuilt as DOM nodes, so
// nothing else in it could ever become markup.
function snippetNodes(snippet) {
  const nodes = [];
  let marked = false;
  for (const part of snippet.split(/(<\/?mark>)/)) {
    if (part === "<mark>") marked = true;
    else if (part === "</mark>") marked = false;
    else if (part) nodes.push(marked ? el("mark", {}, unescapeHtml(part)) : document.createTextNode(unescapeHtml(part)));
  }
  return nodes;
}

// Reasons name documents as *Title*: shown in italics.
function reasonNodes(reason) {
  return reason.split(/(\*[^*]+\*)/).map((part) =>
    part.startsWith("*") && part.endsWith("*") && part.length > 2 ? el("em", {}, part.slice(1, -1)) : part,
  );
}

const fmt = (value) => (value === null || value === undefined ? "–" : value.toFixed(3));
const ranked = (value, rank) => (value === null || value === undefined ? "–" : `${fmt(value)} (#${rank})`);

function status(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

// ---------------------------------------------------------------- search

const DOCUMENT_FIELDS = "id title genre year rating";
const SEARCH = `query Search($q: String!, $options: SearchOptions) {
  search(query: $q, first: 8, options: $options) {
    queryId tookMs fusion totalCandidates
    hits {
      snippet score
      document { ${DOCUMENT_FIELDS} }
      scores { dense keyword fused rerank denseRank keywordRank fusedRank }
    }
  }
}`;
const SIMILAR = `query Similar($id: ID!) {
  similarDocuments(id: $id, first: 5) { score snippet document { ${DOCUMENT_FIELDS} } }
}`;

function currentFilter() {
  const all = [];
  if ($("genre").value) all.push({ field: "genre", op: "EQ", value: $("genre").value });
  if ($("year-min").value) all.push({ field: "year", op: "GTE", value: Number($("year-min").value) });
  return all.length ? { all } : null;
}

function docLabel(doc) {
  return [doc.genre, doc.year, doc.rating !== null && doc.rating !== undefined ? `★ ${doc.rating}` : null]
    .filter((x) => x !== null && x !== undefined)
    .join(" · ");
}

function feedbackButtons(doc, queryId) {
  return el(
    "span",
    { class: "feedback" },
    el("button", { type: "button", class: "like", title: "like", onclick: () => sendFeedback("LIKE", doc, queryId) }, "like"),
    el(
      "button",
      { type: "button", class: "dislike", title: "dislike", onclick: () => sendFeedback("DISLIKE", doc, queryId) },
      "dislike",
    ),
  );
}

function scoreTable(s) {
  return el(
    "span",
    { class: "scores" },
    el("span", { class: "score-dense" }, `dense ${ranked(s.dense, s.denseRank)}`),
    el("span", { class: "score-keyword" }, `keyword ${ranked(s.keyword, s.keywordRank)}`),
    el("span", { class: "score-fused" }, `fused ${ranked(s.fused, s.fusedRank)}`),
    s.rerank !== null && s.rerank !== undefined ? el("span", { class: "score-rerank" }, `rerank ${fmt(s.rerank)}`) : null,
  );
}

async function search(event) {
  event?.preventDefault();
  status("search-status", "searching…");
  try {
    const options = { mode: $("mode").value, filter: currentFilter() };
    const { search: result } = await graphql(SEARCH, { q: $("q").value, options });
    $("results").replaceChildren(
      ...result.hits.map((hit) =>
        el(
          "li",
          { class: "hit", dataset: { id: hit.document.id, genre: hit.document.genre ?? "", year: hit.document.year ?? "" } },
          el("div", { class: "hit-head" }, el("strong", { class: "title" }, hit.document.title), " ", el("span", { class: "muted" }, docLabel(hit.document))),
          el("p", { class: "snippet" }, ...snippetNodes(hit.snippet)),
          el(
            "div",
            { class: "hit-foot" },
            el("span", { class: "score" }, `score ${fmt(hit.score)}`),
            scoreTable(hit.scores),
            feedbackButtons(hit.document, result.queryId),
            el("button", { type: "button", class: "more-like-this", onclick: () => similar(hit.document) }, "more like this"),
          ),
        ),
      ),
    );
    status(
      "search-status",
      `${result.hits.length} hits · ${options.mode.toLowerCase()} · ${result.fusion} · ${result.totalCandidates} candidates · ${result.tookMs.toFixed(0)} ms`,
    );
  } catch (error) {
    status("search-status", String(error.message ?? error), true);
  }
}

async function similar(doc) {
  try {
    const { similarDocuments } = await graphql(SIMILAR, { id: doc.id });
    $("similar-to").textContent = doc.title;
    $("similar-list").replaceChildren(
      ...similarDocuments.map((hit) =>
        el("li", { dataset: { id: hit.document.id } }, el("strong", { class: "title" }, hit.document.title), " ", el("span", { class: "muted" }, `${docLabel(hit.document)} · ${fmt(hit.score)}`)),
      ),
    );
    $("similar").hidden = false;
  } catch (error) {
    status("search-status", String(error.message ?? error), true);
  }
}

async function loadGenres() {
  // The facet values come from the documents themselves (first page of the catalogue).
  const { documents } = await graphql(`{ documents(first: 100) { edges { node { genre } } } }`);
  const genres = [...new Set(documents.edges.map((e) => e.node.genre).filter(Boolean))].sort();
  $("genre").append(...genres.map((g) => el("option", { value: g }, g)));
}

// ---------------------------------------------------------------- feedback and recommendations

const FEEDBACK = `mutation Feedback($input: FeedbackInput!) {
  submitFeedback(input: $input) { duplicate feedback { id kind } errors { field code message } }
}`;
const RECOMMENDATIONS = `query Recs($user: ID!) {
  recommendations(userId: $user, first: 6) {
    queryId strategy tookMs
    items { score reasons document { ${DOCUMENT_FIELDS} } }
  }
}`;

async function sendFeedback(kind, doc, queryId) {
  const user = $("user").value.trim();
  status("recs-status", `${kind.toLowerCase()} ${doc.title} as ${user}…`);
  try {
    const input = { kind, userId: user, documentId: doc.id, queryId, idempotencyKey: crypto.randomUUID() };
    const { submitFeedback } = await graphql(FEEDBACK, { input });
    if (submitFeedback.errors.length) throw new ApiError(submitFeedback.errors.map((e) => ({ message: e.message, extensions: { code: e.code } })));
    await recommendations(null, `${kind === "LIKE" ? "liked" : "disliked"} ${doc.title}`);
  } catch (error) {
    status("recs-status", String(error.message ?? error), true);
  }
}

async function recommendations(event, because = "") {
  event?.preventDefault();
  try {
    const { recommendations: result } = await graphql(RECOMMENDATIONS, { user: $("user").value.trim() });
    $("recs").replaceChildren(
      ...result.items.map((item) =>
        el(
          "li",
          { class: "rec", dataset: { id: item.document.id } },
          el("div", {}, el("strong", { class: "title" }, item.document.title), " ", el("span", { class: "muted" }, `${docLabel(item.document)} · ${fmt(item.score)}`)),
          el("ul", { class: "reasons" }, ...item.reasons.map((r) => el("li", {}, ...reasonNodes(r)))),
          feedbackButtons(item.document, result.queryId),
        ),
      ),
    );
    $("recs").dataset.strategy = result.strategy;
    status("recs-status", `${because ? because + " · " : ""}${result.strategy} · ${result.tookMs.toFixed(0)} ms`);
  } catch (error) {
    status("recs-status", String(error.message ?? error), true);
  }
}

// ---------------------------------------------------------------- answers

const ANSWER = `subscription Ask($q: String!) {
  answerStream(question: $q) {
    __typename
    ... on AnswerSources { sources { snippet document { ${DOCUMENT_FIELDS} text } } }
    ... on AnswerDelta { text }
    ... on AnswerDone { text generator tookMs firstTokenMs citations { number title document { id title } } }
    ... on AnswerError { code message }
  }
}`;

let sources = [];

// The answer so far, with each [n] a button that shows source n.
function renderAnswer(text) {
  const nodes = text.split(/(\[\d+\])/).map((part) => {
    const m = /^\[(\d+)\]$/.exec(part);
    if (!m || !sources[Number(m[1]) - 1]) return part;
    return el("button", { type: "button", class: "citation", dataset: { n: m[1] }, onclick: () => showCitation(Number(m[1])) }, part);
  });
  $("answer").replaceChildren(...nodes);
}

function showCitation(n) {
  const source = sources[n - 1];
  const detail = $("citation-detail");
  detail.replaceChildren(
    el("h3", {}, `[${n}] `, el("span", { class: "title" }, source.document.title)),
    el("p", { class: "muted" }, docLabel(source.document)),
    el("p", { class: "snippet" }, ...snippetNodes(source.snippet)),
  );
  detail.hidden = false;
  detail.dataset.n = String(n);
  for (const li of $("sources").children) li.classList.toggle("cited", li.dataset.n === String(n));
}

async function ask(event) {
  event?.preventDefault();
  let text = "";
  sources = [];
  $("answer").replaceChildren();
  $("answer").dataset.state = "streaming";
  $("citation-detail").hidden = true;
  $("sources").replaceChildren();
  status("answer-meta", "retrieving…");
  try {
    await subscribe(ANSWER, { q: $("question").value }, ({ answerStream: e }) => {
      if (e.__typename === "AnswerSources") {
        sources = e.sources;
        $("sources").replaceChildren(
          ...sources.map((s, i) => el("li", { dataset: { n: String(i + 1) } }, `[${i + 1}] `, el("span", { class: "title" }, s.document.title))),
        );
        status("answer-meta", "writing…");
      } else if (e.__typename === "AnswerDelta") {
        text += e.text;
        renderAnswer(text);
      } else if (e.__typename === "AnswerDone") {
        renderAnswer(e.text);
        $("answer").dataset.state = "done";
        const first = e.firstTokenMs === null ? "" : `, first token ${e.firstTokenMs.toFixed(0)} ms`;
        status("answer-meta", `${e.generator} · ${e.citations.length} citations · ${e.tookMs.toFixed(0)} ms${first}`);
      } else if (e.__typename === "AnswerError") {
        $("answer").dataset.state = "error";
        status("answer-meta", `${e.code}: ${e.message}`, true);
      }
    });
  } catch (error) {
    $("answer").dataset.state = "error";
    status("answer-meta", String(error.message ?? error), true);
  }
}

// ---------------------------------------------------------------- upload

// ASYNC returns a job at once and streams its progress (the ingestion jobs of issue 12). A server
// without jobs rejects `mode` as an unknown field: then the same files go in SYNC and the payload
// itself is the result.
const UPLOAD_ASYNC = `mutation Upload($files: [Upload!]!) {
  uploadDocuments(input: {files: $files, mode: ASYNC}) {
    job { id state documentsDone documentsTotal }
    errors { field code message }
  }
}`;
const UPLOAD_SYNC = `mutation Upload($files: [Upload!]!) {
  uploadDocuments(input: {files: $files}) {
    results { index status document { id title chunkCount } }
    chunksEmbedded
    errors { field code message }
  }
}`;
const PROGRESS = `subscription Progress($id: ID!) {
  ingestionProgress(jobId: $id) {
    id state documentsDone documentsTotal chunksEmbedded
    documentsCreated documentsUpdated documentsUnchanged documentsFailed
    errors { index field code message }
  }
}`;

async function postUpload(query, files) {
  // The GraphQL multipart request spec: operations, map, then one part per file.
  const form = new FormData();
  form.append("operations", JSON.stringify({ query, variables: { files: files.map(() => null) } }));
  form.append("map", JSON.stringify(Object.fromEntries(files.map((_, i) => [String(i), [`variables.files.${i}`]]))));
  files.forEach((file, i) => form.append(String(i), file, file.name));
  const response = await fetch(ENDPOINT, { method: "POST", headers: authHeaders(), body: form });
  const body = await response.json().catch(() => ({ errors: [{ message: `HTTP ${response.status}` }] }));
  return body;
}

// graphql-core's words for an input field or a payload field the schema does not have.
const noJobs = (errors) => errors?.some((e) => /unknown field 'mode'|Cannot query field 'job'/i.test(e.message));

function showProgress(done, total, label) {
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.max = Math.max(total, 1);
  bar.value = done;
  status("upload-status", label);
}

function userErrors(errors) {
  return errors.map((e) => el("li", { class: "error" }, `${e.code}${e.field ? ` (${e.field})` : ""}: ${e.message}`));
}

async function upload(event) {
  event?.preventDefault();
  const files = [...$("files").files];
  $("upload-results").replaceChildren();
  showProgress(0, files.length, `uploading ${files.length} file(s)…`);
  try {
    let body = await postUpload(UPLOAD_ASYNC, files);
    if (noJobs(body.errors)) {
      $("upload-panel").dataset.mode = "sync";
      body = await postUpload(UPLOAD_SYNC, files);
      if (body.errors?.length) throw new ApiError(body.errors);
      const payload = body.data.uploadDocuments;
      showProgress(files.length, files.length, `ingested ${payload.results.length} document(s), ${payload.chunksEmbedded} chunks (sync: this server has no ingestion jobs)`);
      $("upload-results").replaceChildren(
        ...payload.results.map((r) => el("li", { dataset: { status: r.status } }, `${r.status.toLowerCase()}: `, el("strong", { class: "title" }, r.document.title), ` · ${r.document.chunkCount} chunks`)),
        ...userErrors(payload.errors),
      );
      return;
    }
    if (body.errors?.length) throw new ApiError(body.errors);
    $("upload-panel").dataset.mode = "async";
    const { job, errors } = body.data.uploadDocuments;
    $("upload-results").replaceChildren(...userErrors(errors));
    if (!job) return;
    showProgress(job.documentsDone, job.documentsTotal, `job ${job.id}: ${job.state.toLowerCase()}`);
    await subscribe(PROGRESS, { id: job.id }, ({ ingestionProgress: p }) => {
      showProgress(p.documentsDone, p.documentsTotal, `job ${p.id}: ${p.state.toLowerCase()} · ${p.documentsDone}/${p.documentsTotal} documents · ${p.chunksEmbedded} chunks`);
      $("upload-panel").dataset.state = p.state;
      if (["SUCCEEDED", "FAILED", "CANCELLED"].includes(p.state)) {
        const summary = `${p.state.toLowerCase()}: ${p.documentsCreated} created, ${p.documentsUpdated} updated, ${p.documentsUnchanged} unchanged, ${p.documentsFailed} failed, ${p.chunksEmbedded} chunks`;
        $("upload-results").replaceChildren(el("li", { dataset: { status: p.state } }, summary), ...userErrors(p.errors));
      } else if (p.errors.length) $("upload-results").replaceChildren(...userErrors(p.errors));
    });
  } catch (error) {
    status("upload-status", String(error.message ?? error), true);
  }
}

// ---------------------------------------------------------------- start

async function start() {
  $("token-form").hidden = !PRODUCTION && !token;
  $("token").value = token;
  $("token-hint").textContent = PRODUCTION ? "production: every request needs a token (from your identity provider, or an API key from createApiKey)" : "";
  try {
    const { serverInfo: info } = await graphql(`{ serverInfo { version environment keywordBackend generator database } }`);
    status("server-info", `ragql ${info.version} · ${info.environment} · ${info.database} database · keyword ${info.keywordBackend} · ${info.generator} answers`);
    await loadGenres();
    await Promise.all([search(), recommendations()]);
  } catch (error) {
    status("server-info", String(error.message ?? error), true);
    $("token-form").hidden = false;
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  socket?.dispose();
  socket = null;
  start();
});
$("search-form").addEventListener("submit", search);
$("recs-form").addEventListener("submit", recommendations);
$("ask-form").addEventListener("submit", ask);
$("upload-form").addEventListener("submit", upload);
// Filters apply at once, as a user expects of a select.
for (const id of ["mode", "genre"]) $(id).addEventListener("change", search);
start();
