// The console's only way to the server: the public REST API and its SSE streams.
// The API key lives in sessionStorage (gone when the tab closes) and travels as a header only.

const KEY_SLOT = "clusterflow.apiKey";

export const ROLES = ["viewer", "editor", "admin", "owner"];
export const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "REJECTED"]);

export class ApiFailure extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const session = {
  get key() {
    return sessionStorage.getItem(KEY_SLOT);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_SLOT, value);
    else sessionStorage.removeItem(KEY_SLOT);
  },
  onUnauthorized: () => {},
};

function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session.key}`, ...extra };
}

export async function api(path, { method = "GET", body, query, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = authHeaders({ Accept: "application/json" });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  let document = null;
  try {
    document = await response.json();
  } catch {
    document = null;
  }
  if (!response.ok) {
    const error = (document && document.error) || {};
    if (response.status === 401) session.onUnauthorized();
    let message = (document && document.message) || `${response.status} ${response.statusText}`;
    if (response.status === 429) message += ` (retry after ${response.headers.get("Retry-After") || "a moment"}s)`;
    throw new ApiFailure(response.status, error.code || `HTTP_${response.status}`, message, error.details);
  }
  return document ? document.data : null;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

// Splits a text/event-stream into events (https://html.spec.whatwg.org/#event-stream-interpretation).
class SseParser {
  constructor(onEvent, onRetry) {
    this.buffer = "";
    this.fields = { data: [] };
    this.onEvent = onEvent;
    this.onRetry = onRetry;
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.fields.data.length) {
        this.onEvent({ id: this.fields.id, event: this.fields.event || "message", data: this.fields.data.join("\n") });
      }
      this.fields = { data: [] };
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.fields.data.push(value);
    else if (name === "id") this.fields.id = value;
    else if (name === "event") this.fields.event = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}

// Follows an operation's events until its terminal status event. EventSource cannot send an
// Authorization header, so this reads the SSE body with fetch() and, when the connection drops,
// reconnects with Last-Event-ID: the server resumes exactly after the last event seen.
export async function followOperation(operationId, { onEvent, onConnection = () => {}, signal }) {
  let lastEventId = null;
  let retryMs = 2000;
  let finished = false;
  while (!signal.aborted && !finished) {
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      const response = await fetch(`/v1/operations/${encodeURIComponent(operationId)}/events?follow=true`, {
        headers,
        signal,
        cache: "no-store",
      });
      if (response.status === 401) {
        session.onUnauthorized();
        return;
      }
      if (!response.ok || !response.body) {
        if (response.status === 404 || response.status === 403) {
          onConnection("closed", `stream refused: ${response.status}`);
          return;
        }
        throw new Error(`stream answered ${response.status}`);
      }
      onConnection("live");
      const parser = new SseParser(
        (raw) => {
          lastEventId = raw.id ?? lastEventId;
          const event = JSON.parse(raw.data);
          if (event.kind === "status" && TERMINAL.has(event.labels?.status)) finished = true;
          onEvent(event);
        },
        (ms) => {
          retryMs = ms;
        },
      );
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } catch (error) {
      if (signal.aborted) return;
      onConnection("reconnecting", String(error.message || error));
    }
    if (finished || signal.aborted) break;
    try {
      // A stream that closed without a terminal event: the record says whether there is more.
      const record = await api(`/v1/operations/${encodeURIComponent(operationId)}`, { signal });
      if (TERMINAL.has(record.status)) break;
    } catch {
      if (signal.aborted) break;
    }
    onConnection("reconnecting");
    await sleep(retryMs, signal);
  }
  onConnection("closed");
}
