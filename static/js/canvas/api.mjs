// The canvas's calls to the server: live validation, saving a version, starting a run and
// reading its steps. `fetch` is given (window's in the page, a fake in tests/js/api.test.mjs);
// `urls` are the page's config: validateUrl, versionsUrl, runsUrl, and runUrl and stepUrl with
// RUN (and NODE) standing for the ids.

/** The message of a refused save: the server's errors, else its whole answer. */
export function saveErrorText(body) {
  return body.errors ? body.errors.map((e) => e.message).join(" ") : JSON.stringify(body);
}

/** The message of a refused run: the server's detail, else its whole answer. */
export function runErrorText(body) {
  return body.detail || JSON.stringify(body);
}

/** The errors of a validation answer; an HTTP error without a list becomes one error. */
export function validationErrors(body, ok) {
  return body.errors || (ok ? [] : [{ message: JSON.stringify(body), code: "http" }]);
}

export function networkError(error) {
  return {
    message: `Could not reach the server to check the workflow: ${error}.`,
    code: "network",
  };
}

export function makeApi({ fetch, csrfToken, urls }) {
  const post = (url, data) =>
    fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(data),
      credentials: "same-origin",
    });

  return {
    /** The server's errors for `graph` (never throws: a failed call is one "network" error). */
    async validate(graph) {
      try {
        const response = await post(urls.validateUrl, { graph });
        return validationErrors(await response.json(), response.ok);
      } catch (error) {
        return [networkError(error)];
      }
    },

    /** Save a version: {ok: true, version} with the server's answer, or {ok: false, message}. */
    async saveVersion({ graph, message, draft }) {
      const response = await post(urls.versionsUrl, { graph, message, draft });
      const body = await response.json();
      if (!response.ok) return { ok: false, message: saveErrorText(body) };
      return { ok: true, version: body };
    },

    /** Start a run of a saved version, from the trigger `trigger_node` (any trigger: one
     * other than "Start by hand" is fired by hand) and, for an alert trigger, for `school`:
     * {ok: true, run} or {ok: false, message}. */
    async startRun(version, { trigger_node, school } = {}) {
      const request = { version };
      if (trigger_node) request.trigger_node = trigger_node;
      if (school) request.school = school;
      const response = await post(urls.runsUrl, request);
      const body = await response.json();
      if (!response.ok) return { ok: false, message: runErrorText(body) };
      return { ok: true, run: body };
    },

    /** A run with its steps; throws on an HTTP error or a network failure. */
    async getRun(id) {
      const response = await fetch(urls.runUrl.replace("RUN", id), { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return response.json();
    },

    /** The address of a step's detail fragment (fetched by htmx). */
    stepUrl(runId, nodeId) {
      return urls.stepUrl.replace("RUN", runId).replace("NODE", encodeURIComponent(nodeId));
    },
  };
}
