// A Node client of ragql, as an application backend would write one: plain fetch for a query and
// a mutation with variables, the standard graphql-ws client (over the ws package) for the
// answerStream subscription. Prints one JSON object with what it saw; exits 1 on any error.
//   node client.mjs http://127.0.0.1:<port>/graphql
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const endpoint = process.argv[2];
if (!endpoint) {
  console.error("usage: node client.mjs http://127.0.0.1:<port>/graphql");
  process.exit(2);
}

async function request(query, variables) {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (!response.ok || body.errors) throw new Error(`HTTP ${response.status}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

const SEARCH = `query Search($q: String!, $filter: MetadataFilter) {
  search(query: $q, first: 3, options: { mode: HYBRID, filter: $filter }) {
    queryId
    hits { document { id title year } scores { dense keyword fused } }
  }
}`;
const FEEDBACK = `mutation Feedback($input: FeedbackInput!) {
  submitFeedback(input: $input) { duplicate feedback { id kind } errors { code message } }
}`;
const ASK = `subscription Ask($q: String!) {
  answerStream(question: $q) {
    __typename
    ... on AnswerDelta { text }
    ... on AnswerDone { text citations { number title } }
    ... on AnswerError { code message }
  }
}`;

const out = {};
const { search } = await request(SEARCH, {
  q: "heist crew",
  filter: { all: [{ field: "year", op: "GTE", value: 1990 }] },
});
out.search = search.hits.map((h) => ({ title: h.document.title, year: h.document.year, fused: h.scores.fused }));

const key = `node-${process.pid}-${Date.now()}`;
const input = { kind: "LIKE", userId: "node-client", documentId: search.hits[0].document.id, queryId: search.queryId, idempotencyKey: key };
const first = (await request(FEEDBACK, { input })).submitFeedback;
const again = (await request(FEEDBACK, { input })).submitFeedback;
out.feedback = { first: first.duplicate, again: again.duplicate, sameEvent: first.feedback.id === again.feedback.id, errors: first.errors };

const client = createClient({ url: endpoint.replace(/^http/, "ws"), webSocketImpl: WebSocket, retryAttempts: 0 });
out.events = [];
out.answer = "";
try {
  for await (const result of client.iterate({ query: ASK, variables: { q: "Which films are about time travel?" } })) {
    if (result.errors) throw new Error(JSON.stringify(result.errors));
    const event = result.data.answerStream;
    out.events.push(event.__typename);
    if (event.__typename === "AnswerDelta") out.answer += event.text;
    if (event.__typename === "AnswerDone") out.done = { text: event.text, citations: event.citations.length };
  }
} finally {
  await client.dispose();
}
console.log(JSON.stringify(out));
