// Tests of the canvas's server calls (static/js/canvas/api.mjs) with a fake fetch: the requests
// made (address, method, JSON body, CSRF header, cookies) and the answers turned into results
// and messages.
import assert from "node:assert/strict";
import { test } from "node:test";

import { makeApi, runErrorText, saveErrorText, validationErrors } from "../../static/js/canvas/api.mjs";

const URLS = {
  validateUrl: "/api/workflows/validate/",
  versionsUrl: "/api/workflows/7/versions/",
  runsUrl: "/api/workflows/7/runs/",
  runUrl: "/api/runs/RUN/",
  stepUrl: "/runs/RUN/steps/NODE/",
};

/** A fetch that answers each call with the next of `answers` ({status, body} or an Error). */
function fakeFetch(...answers) {
  const calls = [];
  const fetch = async (url, options = {}) => {
    calls.push({ url, ...options, json: options.body ? JSON.parse(options.body) : undefined });
    const answer = answers.shift();
    if (answer instanceof Error) throw answer;
    const { status = 200, body = {} } = answer;
    return {
      ok: status >= 200 && status < 300,
      status,
      json: async () => (typeof body === "string" ? JSON.parse(body) : body),
    };
  };
  return { fetch, calls };
}

function api(...answers) {
  const fake = fakeFetch(...answers);
  return { api: makeApi({ fetch: fake.fetch, csrfToken: "tok3n", urls: URLS }), calls: fake.calls };
}

const GRAPH = { nodes: [{ id: "a", kind: "notify" }], edges: [], notes: [] };

test("validate posts the graph as JSON with the CSRF header and returns the server's errors", async () => {
  const errors = [{ message: "Set a dataset.", code: "missing_param", node: "a" }];
  const { api: client, calls } = api({ body: { errors } });
  assert.deepEqual(await client.validate(GRAPH), errors);
  assert.equal(calls.length, 1);
  const [call] = calls;
  assert.equal(call.url, "/api/workflows/validate/");
  assert.equal(call.method, "POST");
  assert.deepEqual(call.headers, { "Content-Type": "application/json", "X-CSRFToken": "tok3n" });
  assert.equal(call.credentials, "same-origin");
  assert.deepEqual(call.json, { graph: GRAPH });
});

test("a valid graph has no errors", async () => {
  const { api: client } = api({ body: { errors: [] } });
  assert.deepEqual(await client.validate(GRAPH), []);
  assert.deepEqual(await api({ body: {} }).api.validate(GRAPH), []);
});

test("an HTTP error without an error list becomes one error carrying the server's answer", async () => {
  const { api: client } = api({ status: 403, body: { detail: "CSRF Failed: CSRF token missing." } });
  assert.deepEqual(await client.validate(GRAPH), [
    { message: '{"detail":"CSRF Failed: CSRF token missing."}', code: "http" },
  ]);
});

test("an HTTP error with an error list keeps the list", async () => {
  const errors = [{ message: "The graph is not a list.", code: "bad_graph" }];
  assert.deepEqual(await api({ status: 400, body: { errors } }).api.validate(GRAPH), errors);
});

test("validate never throws: a network failure or a page that is not JSON is one network error", async () => {
  const down = await api(new TypeError("Failed to fetch")).api.validate(GRAPH);
  assert.deepEqual(down, [
    { message: "Could not reach the server to check the workflow: TypeError: Failed to fetch.", code: "network" },
  ]);
  const html = await api({ status: 502, body: "<html>Bad gateway</html>" }).api.validate(GRAPH);
  assert.equal(html.length, 1);
  assert.equal(html[0].code, "network");
  assert.match(html[0].message, /^Could not reach the server to check the workflow: SyntaxError/);
});

test("saveVersion posts graph, message and draft and returns the saved version", async () => {
  const saved = { number: 3, draft: false, errors: [] };
  const { api: client, calls } = api({ status: 201, body: saved });
  const answer = await client.saveVersion({ graph: GRAPH, message: "first", draft: false });
  assert.deepEqual(answer, { ok: true, version: saved });
  assert.equal(calls[0].url, "/api/workflows/7/versions/");
  assert.equal(calls[0].method, "POST");
  assert.equal(calls[0].headers["X-CSRFToken"], "tok3n");
  assert.deepEqual(calls[0].json, { graph: GRAPH, message: "first", draft: false });
});

test("a refused save says why: the server's error messages, else its whole answer", async () => {
  const errors = [{ message: "Node a: set dataset_version." }, { message: "Edge 0 makes a loop." }];
  assert.deepEqual(await api({ status: 400, body: { errors } }).api.saveVersion({ graph: GRAPH, message: "", draft: true }), {
    ok: false,
    message: "Node a: set dataset_version. Edge 0 makes a loop.",
  });
  assert.deepEqual(await api({ status: 403, body: { detail: "You may not edit." } }).api.saveVersion({ graph: GRAPH }), {
    ok: false,
    message: '{"detail":"You may not edit."}',
  });
});

test("a save whose request fails throws (nothing is reported as saved)", async () => {
  await assert.rejects(api(new TypeError("Failed to fetch")).api.saveVersion({ graph: GRAPH }), TypeError);
});

test("startRun posts the version and returns the run, or the server's detail", async () => {
  const run = { id: 12, status: "queued", steps: [] };
  const { api: client, calls } = api({ status: 201, body: run });
  assert.deepEqual(await client.startRun(3), { ok: true, run });
  assert.equal(calls[0].url, "/api/workflows/7/runs/");
  assert.equal(calls[0].headers["X-CSRFToken"], "tok3n");
  assert.deepEqual(calls[0].json, { version: 3 });
  const fired = api({ status: 201, body: run });
  await fired.api.startRun(3, { trigger_node: "weekly", school: 4 });
  assert.deepEqual(fired.calls[0].json, { version: 3, trigger_node: "weekly", school: 4 });
  assert.deepEqual(await api({ status: 400, body: { detail: "Version 3 is a draft." } }).api.startRun(3), {
    ok: false,
    message: "Version 3 is a draft.",
  });
  assert.deepEqual(await api({ status: 400, body: { version: ["Required."] } }).api.startRun(null), {
    ok: false,
    message: '{"version":["Required."]}',
  });
});

test("getRun reads the run's address with the session's cookies and throws on an HTTP error", async () => {
  const run = { id: 12, status: "running", steps: [{ node_id: "a", status: "running" }] };
  const { api: client, calls } = api({ body: run }, { status: 404, body: { detail: "Not found." } });
  assert.deepEqual(await client.getRun(12), run);
  assert.deepEqual(calls[0], { url: "/api/runs/12/", credentials: "same-origin", json: undefined });
  await assert.rejects(client.getRun(13), { message: "HTTP 404" });
  assert.equal(calls[1].url, "/api/runs/13/");
});

test("stepUrl puts in the run id and the node id, escaped", () => {
  const { api: client } = api();
  assert.equal(client.stepUrl(12, "train_model_1"), "/runs/12/steps/train_model_1/");
  assert.equal(client.stepUrl(12, "a b/c"), "/runs/12/steps/a%20b%2Fc/");
});

test("the error texts on their own", () => {
  assert.equal(saveErrorText({ errors: [{ message: "x" }, { message: "y" }] }), "x y");
  assert.equal(saveErrorText({ detail: "no" }), '{"detail":"no"}');
  assert.equal(runErrorText({ detail: "no" }), "no");
  assert.deepEqual(validationErrors({}, true), []);
  assert.deepEqual(validationErrors({ errors: [] }, false), []);
});
