// The operator console: hash-routed views over the public API (see api.js). No framework:
// views build DOM with h(), never innerHTML, so nothing the API returns is parsed as markup.
import { api, ApiFailure, followOperation, ROLES, session, TERMINAL } from "./api.js";
import { runPage, runsPage } from "./runs.js";

const OPERATION_TYPES = [
  "CLUSTER_DEPLOY", "CLUSTER_UPDATE", "CLUSTER_DELETE", "CLUSTER_REGISTER", "CLUSTER_UNREGISTER",
  "CLOUD_CONNECT", "KUBECONFIG_GENERATE", "CLUSTER_RESYNC", "UPDATE_RUN",
];
const STATUSES = ["PENDING", "AWAITING_APPROVAL", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED", "REJECTED"];
// Browsers keep ~6 HTTP/1.1 connections per host: a list streams a few operations and polls the rest.
const MAX_LIST_STREAMS = 4;
const LIST_REFRESH_MS = 4000;

const $ = (id) => document.getElementById(id);
let me = null; // {keyId, organizationId, role, name}
let viewAbort = new AbortController();

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
// A list's totalCount, shown as an estimate ("~551,000") when the API says it is one.
const countOf = (page) => (page.totalCountExact === false ? `~${page.totalCount.toLocaleString("en-US")}` : String(page.totalCount));
const badge = (status) => h("span", { class: `badge s-${status}`, "data-status": status }, (status || "—").replaceAll("_", " "));
const opLink = (id) => h("a", { href: `#/operations/${encodeURIComponent(id)}`, class: "mono" }, id);
const clusterLink = (id, name) => h("a", { href: `#/clusters/${encodeURIComponent(id)}` }, name || id);

function announce(text) {
  $("announcer").textContent = text;
}

function roleAtLeast(role) {
  return me && ROLES.indexOf(me.role) >= ROLES.indexOf(role);
}

// ---------- progress bar fed by an operation's SSE stream ----------

function progressBar(label) {
  const fill = h("div", { class: "fill" });
  const pct = h("span", { class: "pct", text: "0%" });
  const bar = h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "aria-label": label },
    h("div", { class: "track" }, fill),
    pct,
  );
  bar.set = (value, status) => {
    const v = Math.max(0, Math.min(100, Number(value) || 0));
    fill.style.width = `${v}%`;
    pct.textContent = `${v}%`;
    bar.setAttribute("aria-valuenow", String(v));
    bar.classList.toggle("done", status === "SUCCEEDED");
    bar.classList.toggle("failed", status === "FAILED" || status === "REJECTED" || status === "CANCELLED");
  };
  return bar;
}

// Applies one streamed event to a live summary {status, progressPercentage, currentPhase, message}.
function applyEvent(live, event) {
  if (event.progressPercentage !== null && event.progressPercentage !== undefined) {
    live.progressPercentage = event.progressPercentage;
  }
  if (event.phase) live.currentPhase = event.phase;
  if (event.message) live.message = event.message;
  if (event.kind === "status" && event.labels?.status) live.status = event.labels.status;
  if (live.status === "SUCCEEDED") live.progressPercentage = 100;
}

// ---------- sign in ----------

async function signIn(key) {
  session.key = key;
  try {
    me = await api("/v1/whoami");
  } catch (error) {
    session.key = null;
    me = null;
    throw error;
  }
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-text").textContent = `${me.name} · ${me.role}`;
  $("who").dataset.role = me.role;
  refreshApprovalCount();
}

function signOut(message = "") {
  session.key = null;
  me = null;
  viewAbort.abort();
  $("view").replaceChildren();
  $("nav").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("api-key").value = "";
  $("api-key").focus();
}

session.onUnauthorized = () =>
  signOut(
    me
      ? "The API key is no longer accepted (revoked or expired). Sign in again."
      : "That API key was refused: it is unknown, revoked or expired.",
  );

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    await signIn($("api-key").value.trim());
    $("api-key").value = "";
    render();
  } catch (error) {
    if (!$("sign-in-error").textContent) $("sign-in-error").textContent = error.message;
  }
});
$("sign-out").addEventListener("click", () => signOut());

let approvalTimer = null;
async function refreshApprovalCount() {
  clearTimeout(approvalTimer);
  if (!me) return;
  try {
    // Owners count what they may still decide; other roles, everything waiting.
    const page =
      me.role === "owner"
        ? await api("/v1/approvals", { query: { limit: 100 } })
        : await api("/v1/operations", { query: { status: "AWAITING_APPROVAL", limit: 1 } });
    const count = $("approval-count");
    count.textContent = countOf(page);
    count.classList.toggle("hot", page.totalCount > 0);
  } catch {
    /* the next refresh tries again */
  }
  approvalTimer = setTimeout(refreshApprovalCount, 10000);
}

// ---------- routing ----------

function route() {
  const hash = location.hash.replace(/^#/, "") || "/clusters";
  const [path, queryString] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(queryString || "") };
}

async function render(moveFocus = false) {
  if (!me) return;
  viewAbort.abort();
  viewAbort = new AbortController();
  const signal = viewAbort.signal;
  const { parts, query } = route();
  const section = parts[0] || "clusters";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = $("view");
  view.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  try {
    let content;
    if (section === "clusters" && parts[1]) content = await clusterPage(parts[1], signal);
    else if (section === "clusters") content = await clustersPage(signal);
    else if (section === "operations" && parts[1]) content = await operationPage(parts[1], signal);
    else if (section === "operations") content = await operationsPage(query, signal, false);
    else if (section === "approvals") content = await operationsPage(query, signal, true);
    else if (section === "runs" && parts[1]) content = await runPage(parts[1], signal, me.role);
    else if (section === "runs") content = await runsPage(signal);
    else content = h("p", { text: "No such page." });
    if (signal.aborted) return;
    view.replaceChildren(content);
    const title = view.querySelector("h1");
    document.title = `${title ? title.textContent : "console"} · clusterflow`;
    if (moveFocus && title) {
      // Screen readers and keyboards start on the new page's heading, not the old link.
      title.tabIndex = -1;
      title.focus();
    }
  } catch (error) {
    if (signal.aborted) return;
    view.replaceChildren(h("div", { class: "card errorbox", role: "alert" }, h("h1", { text: "Could not load this page" }), h("p", { text: error.message })));
  }
}

function every(ms, signal, fn) {
  const timer = setInterval(() => {
    if (!document.hidden) fn().catch(() => {});
  }, ms);
  signal.addEventListener("abort", () => clearInterval(timer));
}

// ---------- clusters ----------

async function clustersPage(signal) {
  const tbody = h("tbody");
  const fill = async () => {
    const clusters = await api("/v1/clusters", { signal });
    const signature = JSON.stringify(clusters);
    if (signature === tbody.dataset.signature) return; // keep focus and selection while nothing changes
    tbody.dataset.signature = signature;
    tbody.replaceChildren(
      ...clusters.map((c) =>
        h(
          "tr",
          { "data-cluster": c.clusterName },
          h("td", {}, clusterLink(c.clusterId, c.clusterName)),
          h("td", { text: c.provider }),
          h("td", { text: c.region }),
          h("td", { text: c.kubernetesVersion || "—" }),
          h("td", {}, badge(c.state)),
          h("td", {}, c.activeOperationId ? opLink(c.activeOperationId) : h("span", { class: "muted", text: "none" })),
        ),
      ),
    );
    if (!clusters.length) tbody.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "empty", text: "No clusters yet." })));
  };
  await fill();
  every(5000, signal, fill);
  return h(
    "section",
    {},
    h("h1", { text: "Clusters" }),
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden", text: "Clusters of the organization" }),
      h("thead", {}, h("tr", {}, ...["Name", "Provider", "Region", "Version", "State", "Active operation"].map((t) => h("th", { scope: "col", text: t })))),
      tbody,
    ),
  );
}

function statusDetail(detail) {
  if (!detail || detail.status === "UNSPECIFIED") return "—";
  const parts = [detail.status, detail.reason, detail.suggestedAction && `Suggested: ${detail.suggestedAction}`];
  return parts.filter(Boolean).join(" · ");
}

function nodeGroupRows(cluster) {
  const rows = [];
  const add = (group, role) => {
    if (!group) return;
    rows.push(
      h(
        "tr",
        {},
        h("td", { text: group.name || "—" }),
        h("td", { text: role }),
        h("td", { text: (group.machineTypes || []).join(", ") || group.machineType || "—" }),
        h("td", { text: group.minNode ?? "—" }),
        h("td", { text: group.maxNode ?? "—" }),
        h("td", { text: group.instanceType || "—" }),
      ),
    );
  };
  add(cluster.controlPlaneNode, "control plane");
  for (const group of cluster.workerNodes || []) add(group, "workers");
  return rows;
}

async function clusterPage(clusterId, signal) {
  const cluster = await api(`/v1/clusters/${encodeURIComponent(clusterId)}`, { signal });
  const [spec, history] = await Promise.all([
    api(`/v1/clusters/${encodeURIComponent(clusterId)}/spec`, { signal }).catch((e) => ({ failed: e.message })),
    api(`/v1/clusters/${encodeURIComponent(clusterId)}/operations`, { signal, query: { limit: 50 } }),
  ]);
  const page = h("section", {}, h("h1", {}, `Cluster ${cluster.clusterName} `, badge(cluster.state)));
  page.append(
    h(
      "div",
      { class: "card" },
      h(
        "dl",
        { class: "facts" },
        ...[
          ["ID", h("span", { class: "mono", text: cluster.clusterId })],
          ["Provider", cluster.provider],
          ["Region", cluster.region],
          ["Kubernetes", cluster.kubernetesVersion || "—"],
          ["Labels", Object.entries(cluster.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "none"],
          ["Active operation", cluster.activeOperationId ? opLink(cluster.activeOperationId) : "none"],
          ["Upgrade", statusDetail(cluster.upgradeStatus)],
          ["Rollback", statusDetail(cluster.rollbackStatus)],
          ["Created", when(cluster.createdTimestamp)],
          ["Updated", when(cluster.lastUpdatedTimestamp)],
        ].flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]),
      ),
    ),
  );
  if (cluster.activeOperationId) {
    const bar = progressBar(`Progress of ${cluster.activeOperationId}`);
    const line = h("p", { class: "muted", "aria-live": "polite" });
    const card = h("div", { class: "card", id: "active-operation" }, h("h2", {}, "Active operation ", opLink(cluster.activeOperationId)), bar, line);
    page.append(card);
    const active = await api(`/v1/operations/${encodeURIComponent(cluster.activeOperationId)}`, { signal });
    if (active.status === "AWAITING_APPROVAL") {
      const reasons = actionReasons(active, me.role, me.keyId);
      const feedback = h("p", { role: "status", id: "card-feedback" });
      const rerender = () => {
        if (!signal.aborted) render();
      };
      line.textContent = `AWAITING APPROVAL · ${active.message || ""}`;
      card.append(
        decisionForm(active, {
          prefix: "card-",
          reason: reasons.decide,
          onDecided: (action, outcome) => {
            const verb = action === "APPROVE" ? "Approved" : "Rejected";
            feedback.className = "";
            feedback.textContent = `${verb}; the operation is now ${outcome.status}${outcome.remaining ? `, ${outcome.remaining} more approval${outcome.remaining === 1 ? "" : "s"} needed` : ""}.`;
            announce(feedback.textContent);
            refreshApprovalCount();
            setTimeout(rerender, 1500);
          },
          onRefused: (action, error) => {
            feedback.className = "error";
            feedback.textContent = `${action === "APPROVE" ? "Approve" : "Reject"} refused: ${error instanceof ApiFailure ? `${error.code}: ` : ""}${error.message}`;
          },
        }),
        feedback,
      );
    }
    const live = { status: active.status, progressPercentage: active.progressPercentage };
    followOperation(cluster.activeOperationId, {
      signal,
      onEvent: (event) => {
        applyEvent(live, event);
        bar.set(live.progressPercentage, live.status);
        line.textContent = `${live.status} · ${live.currentPhase || ""} · ${live.message || ""}`;
      },
    });
  }
  if (cluster.provider === "registered") {
    const box = h("div", { class: "card", id: "registration" }, h("h2", { text: "Registration" }));
    try {
      const reg = await api(`/v1/clusters/${encodeURIComponent(cluster.clusterName)}/registration`, { signal });
      box.append(
        h(
          "dl",
          { class: "facts" },
          h("dt", { text: "Agent" }), h("dd", {}, badge(reg.connectionStatus)),
          h("dt", { text: "Last health check" }), h("dd", { text: when(reg.lastHealthCheck) }),
          h("dt", { text: "Registration" }), h("dd", {}, reg.operationId ? opLink(reg.operationId) : "—", " ", reg.status ? badge(reg.status) : ""),
          h("dt", { text: "Message" }), h("dd", { text: reg.message || "—" }),
          h("dt", { text: "Agent version" }), h("dd", { text: reg.agent?.version || reg.agent?.agentVersion || "—" }),
          h("dt", { text: "Revoked" }), h("dd", { text: reg.revoked ? "yes" : "no" }),
        ),
        reg.error ? h("p", { class: "error", text: reg.error.message }) : "",
        reg.instructions?.message ? h("p", { class: "muted", text: reg.instructions.message }) : "",
      );
    } catch (error) {
      box.append(h("p", { class: "error", text: error.message }));
    }
    page.append(box);
  }
  page.append(
    h("h2", { text: "Node groups" }),
    h(
      "table",
      { id: "node-groups" },
      h("thead", {}, h("tr", {}, ...["Name", "Role", "Machine types", "Min", "Max", "Capacity"].map((t) => h("th", { scope: "col", text: t })))),
      h(
        "tbody",
        {},
        ...(nodeGroupRows(cluster).length
          ? nodeGroupRows(cluster)
          : [h("tr", {}, h("td", { colspan: "6", class: "empty", text: "No node groups reported yet." }))]),
      ),
    ),
  );
  page.append(h("h2", { text: "Operation history" }), operationsTable(history.operations, { withCluster: false }).table);
  page.append(
    h("h2", { text: "Spec" }),
    h("pre", { tabindex: "0", "aria-label": "Cluster spec document" }, spec.failed ? spec.failed : JSON.stringify(spec, null, 2)),
  );
  return page;
}

// ---------- operations list (live) ----------

function operationsTable(operations, { withCluster = true } = {}) {
  const rows = new Map();
  const tbody = h("tbody");
  const headers = ["Operation", "Type", ...(withCluster ? ["Cluster"] : []), "Status", "Progress", "Phase", "Message", "Created"];
  const upsert = (op) => {
    let row = rows.get(op.operationId);
    if (!row) {
      const cells = {
        status: h("td"),
        bar: progressBar(`Progress of ${op.operationId}`),
        phase: h("td"),
        message: h("td"),
      };
      const tr = h(
        "tr",
        { "data-operation": op.operationId },
        h("td", {}, opLink(op.operationId)),
        h("td", { text: op.operationType }),
        withCluster ? h("td", {}, op.clusterId ? clusterLink(op.clusterId, op.clusterName) : "—") : null,
        cells.status,
        h("td", {}, cells.bar),
        cells.phase,
        cells.message,
        h("td", { text: when(op.createdAt) }),
      );
      row = { tr, cells, live: { ...op } };
      rows.set(op.operationId, row);
      tbody.append(tr);
    } else {
      Object.assign(row.live, op);
    }
    paint(row);
    return row;
  };
  const paint = (row) => {
    const { live, cells } = row;
    if (cells.status.dataset.status !== live.status) {
      cells.status.replaceChildren(badge(live.status));
      cells.status.dataset.status = live.status;
    }
    cells.bar.set(live.progressPercentage, live.status);
    cells.phase.textContent = live.currentPhase || "—";
    cells.message.textContent = live.message || "";
  };
  for (const op of operations) upsert(op);
  const table = h(
    "table",
    {},
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { scope: "col", text: t })))),
    tbody,
  );
  if (!operations.length) tbody.append(h("tr", { class: "placeholder" }, h("td", { colspan: String(headers.length), class: "empty", text: "No operations." })));
  return { table, rows, upsert, paint, tbody };
}

async function operationsPage(query, signal, approvalsOnly) {
  const filters = {
    operationType: query.get("type") || "",
    status: approvalsOnly ? "AWAITING_APPROVAL" : query.get("status") || "",
    clusterId: query.get("cluster") || "",
  };
  // The approvals view lists what this key may decide (`/v1/approvals`): not its own operations
  // under four eyes, nor ones it has decided. Other roles see everything waiting, read-only.
  const mine = approvalsOnly && me.role === "owner";
  const load = async () => {
    if (!mine) return api("/v1/operations", { signal, query: { ...filters, limit: 100 } });
    const page = await api("/v1/approvals", { signal, query: { limit: 100 } });
    const keep = page.operations.filter(
      (op) => (!filters.operationType || op.operationType === filters.operationType) && (!filters.clusterId || op.clusterId === filters.clusterId),
    );
    return { ...page, operations: keep, totalCount: keep.length };
  };
  const first = await load();
  const list = operationsTable(first.operations);
  const streams = new Map(); // operationId -> AbortController
  const total = h("p", { class: "muted", "aria-live": "polite" });

  const stream = (row) => {
    const id = row.live.operationId;
    if (streams.has(id) || TERMINAL.has(row.live.status) || row.live.status === "AWAITING_APPROVAL") return;
    if (streams.size >= MAX_LIST_STREAMS) return;
    const controller = new AbortController();
    signal.addEventListener("abort", () => controller.abort());
    streams.set(id, controller);
    followOperation(id, {
      signal: controller.signal,
      onEvent: (event) => {
        const before = row.live.status;
        applyEvent(row.live, event);
        list.paint(row);
        if (before !== row.live.status) announce(`${id} is ${row.live.status.toLowerCase().replaceAll("_", " ")}`);
      },
      onConnection: (state) => {
        if (state === "closed") streams.delete(id);
      },
    });
  };
  const sync = (page) => {
    if (mine) {
      // Decided elsewhere (another owner, a link): it is no longer this key's to decide.
      const listed = new Set(page.operations.map((op) => op.operationId));
      for (const [id, row] of list.rows) {
        if (!listed.has(id)) {
          row.tr.remove();
          list.rows.delete(id);
        }
      }
    }
    total.textContent = `${countOf(page)} operation${page.totalCount === 1 ? "" : "s"}${streams.size ? `, ${streams.size} streaming live` : ""}`;
    for (const op of page.operations) {
      const known = list.rows.get(op.operationId);
      // A streamed row is fresher than the list; let the list only settle it.
      if (known && streams.has(op.operationId) && !TERMINAL.has(op.status)) continue;
      if (!known) list.tbody.querySelector("tr.placeholder")?.remove();
      const row = list.upsert(op);
      if (!known && list.tbody.firstChild !== row.tr) list.tbody.prepend(row.tr);
    }
    for (const row of list.rows.values()) stream(row);
  };
  sync(first);
  every(LIST_REFRESH_MS, signal, async () => sync(await load()));

  const select = (id, label, name, values) => {
    const el = h(
      "select",
      { id, name, onchange: () => applyFilters() },
      h("option", { value: "", text: "any" }),
      ...values.map((v) => h("option", { value: v, text: v.replaceAll("_", " ") })),
    );
    el.value = filters[name];
    return h("div", {}, h("label", { for: id, text: label }), el);
  };
  const applyFilters = () => {
    const params = new URLSearchParams();
    const type = $("filter-type").value;
    const status = $("filter-status")?.value;
    const cluster = $("filter-cluster").value.trim();
    if (type) params.set("type", type);
    if (status) params.set("status", status);
    if (cluster) params.set("cluster", cluster);
    location.hash = `#/${approvalsOnly ? "approvals" : "operations"}${params.size ? `?${params}` : ""}`;
  };
  const clusterInput = h("input", { id: "filter-cluster", name: "clusterId", value: filters.clusterId, placeholder: "cl_…" });
  clusterInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") applyFilters();
  });
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter operations", onsubmit: (e) => { e.preventDefault(); applyFilters(); } },
    select("filter-type", "Type", "operationType", OPERATION_TYPES),
    approvalsOnly ? null : select("filter-status", "Status", "status", STATUSES),
    h("div", {}, h("label", { for: "filter-cluster", text: "Cluster ID" }), clusterInput),
    h("div", {}, h("button", { type: "submit", class: "secondary", text: "Apply" })),
  );
  return h(
    "section",
    {},
    h("h1", { text: approvalsOnly ? "Awaiting approval" : "Operations" }),
    approvalsOnly
      ? h("p", {
          class: "muted",
          text: mine
            ? "Operations waiting for a decision you may make: not your own requests when the policy requires a different approver, nor ones you have already decided. Open one to approve or reject it."
            : "Operations waiting for an owner's decision. Only owners approve or reject them.",
        })
      : null,
    form,
    total,
    list.table,
  );
}

// ---------- one operation ----------

// Why an action is unavailable to this key on this record; null when it is available.
export function actionReasons(op, role, keyId = null) {
  const rank = ROLES.indexOf(role);
  const state = TERMINAL.has(op.status)
    ? `has ended (${op.status.toLowerCase()})`
    : `is ${op.status.replaceAll("_", " ").toLowerCase()}`;
  const needs = (wanted) => `Needs the ${wanted} role; this key is ${role}.`;
  const approver = op.approval?.requiredRole || "owner";
  return {
    cancel:
      rank < ROLES.indexOf("editor")
        ? needs("editor")
        : op.status === "CANCELLING"
          ? "A cancel is already in progress."
          : !op.isCancelable
            ? `This operation ${state}; only pending, running or awaiting-approval operations can be cancelled.`
            : null,
    force:
      rank < ROLES.indexOf("admin")
        ? needs("admin")
        : !(op.isCancelable || op.status === "CANCELLING")
          ? `This operation ${state}; there is nothing to cancel.`
          : null,
    decide:
      rank < ROLES.indexOf(approver)
        ? needs(approver)
        : !op.isApprovable
          ? `Only an operation awaiting approval can be decided; this one ${state}.`
          : keyId && op.approval?.requireDifferentApprover && op.userId === keyId
            ? "The organization requires a different approver: another owner must decide the operation you requested."
            : keyId && (op.approval?.received || []).some((r) => r.by === keyId)
              ? `You have already decided; ${op.approval.remaining} more approval${op.approval.remaining === 1 ? "" : "s"} from other owners needed.`
              : null,
  };
}

// How far an operation's approval has come, in words: "1 of 2 approvals (rule prod)".
function approvalProgress(approval) {
  const approvals = (approval.received || []).filter((r) => r.decision === "APPROVE").length;
  const rule = approval.rule ? ` · rule ${approval.rule.name}${approval.rule.labelSelector ? ` (${approval.rule.labelSelector})` : ""}` : "";
  const eyes = approval.requireDifferentApprover ? " · requester may not decide" : "";
  return `${approvals} of ${approval.required || 1} approval${(approval.required || 1) === 1 ? "" : "s"}${rule}${eyes}`;
}

// Approve / Reject with an optional comment (and token, for one handed over out of band).
// `prefix` keeps element IDs unique when a page shows more than one; `onDecided` gets the outcome.
function decisionForm(op, { prefix = "", reason, onDecided, onRefused, withToken = false }) {
  const path = `/v1/operations/${encodeURIComponent(op.operationId)}/approval`;
  const id = (name) => `${prefix}${name}`;
  const comment = h("textarea", { id: id("approval-comment"), name: "comment", rows: "2", maxlength: "1000" });
  const token = withToken ? h("input", { id: id("approval-token"), name: "token", type: "password", autocomplete: "off", spellcheck: "false" }) : null;
  const decide = (action) => async () => {
    const body = { action, comment: comment.value.trim() || null, planHash: op.approval?.planHash || null };
    if (token && token.value.trim()) body.token = token.value.trim();
    try {
      const outcome = await api(path, { method: "POST", body });
      if (token) token.value = "";
      onDecided(action, outcome);
    } catch (error) {
      onRefused(action, error);
    }
  };
  const approve = h("button", { type: "button", id: id("approve-button"), text: "Approve", onclick: decide("APPROVE") });
  const reject = h("button", { type: "button", class: "danger", id: id("reject-button"), text: "Reject", onclick: decide("REJECT") });
  return actionBox(
    id("action-decide"),
    "Approve or reject (owner)",
    reason,
    op.approval ? h("p", { class: "muted", text: approvalProgress(op.approval) }) : null,
    h("div", {}, h("label", { for: id("approval-comment"), text: "Comment (optional)" }), comment),
    token ? h("div", {}, h("label", { for: id("approval-token"), text: "Approval token (optional: only one handed to you)" }), token) : null,
    h("div", { class: "row" }, approve, reject),
  );
}

function splitRemedy(message) {
  const at = message.search(/\bRemedy:\s*/i);
  if (at < 0) return [message, null];
  return [message.slice(0, at).trim(), message.slice(at).replace(/^Remedy:\s*/i, "")];
}

function actionBox(id, title, reason, ...controls) {
  const reasonId = `${id}-reason`;
  for (const control of controls.flat()) {
    if (!(control instanceof HTMLElement)) continue;
    for (const el of control.matches("button, input, textarea") ? [control] : control.querySelectorAll("button, input, textarea")) {
      el.disabled = Boolean(reason);
      if (reason) el.setAttribute("aria-describedby", reasonId);
    }
  }
  return h(
    "div",
    { class: "action", id, role: "group", "aria-labelledby": `${id}-title` },
    h("h3", { id: `${id}-title`, text: title }),
    ...controls,
    reason ? h("p", { class: "reason", id: reasonId, text: reason }) : null,
  );
}

function confirmDialog(title, text, okLabel) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true }));
}

async function operationPage(operationId, signal) {
  const path = `/v1/operations/${encodeURIComponent(operationId)}`;
  let op = await api(path, { signal });
  const page = h("section", { "data-operation": operationId });
  const heading = h("h1");
  const bar = progressBar(`Progress of ${operationId}`);
  const phase = h("span", { class: "mono" });
  const message = h("span");
  const connection = h("span", { class: "conn" });
  const details = h("div");
  const actions = h("div", { class: "actions" });
  const feedback = h("p", { role: "status", id: "action-feedback" });
  const log = h("ol", { class: "log", role: "log", "aria-label": "Event log", tabindex: "0" });
  const live = { ...op };

  const paintHead = () => {
    heading.replaceChildren(`${op.operationType.replaceAll("_", " ").toLowerCase()} `, h("span", { class: "mono", text: operationId }), " ", badge(live.status));
    bar.set(live.progressPercentage, live.status);
    phase.textContent = live.currentPhase || "—";
    message.textContent = live.message || "";
  };

  const paintDetails = () => {
    const facts = [
      ["Cluster", op.clusterId ? clusterLink(op.clusterId, op.clusterName) : "—"],
      ["Requested by", op.userId || "—"],
      ["Attempt", String(op.attempt)],
      ["Created", when(op.createdAt)],
      ["Started", when(op.startedAt)],
      ["Completed", when(op.completedAt)],
    ];
    if (op.approval) {
      facts.push(["Approval", `needs ${op.approval.requiredRole}; expires ${when(op.approval.expiresAt)}`]);
      facts.push(["Approvals", approvalProgress(op.approval)]);
      for (const r of op.approval.received || []) {
        facts.push([r.decision === "APPROVE" ? "Approved" : "Rejected", `by ${r.by} at ${when(r.at)}${r.comment ? ` — “${r.comment}”` : ""}`]);
      }
      if (op.approval.planHash) facts.push(["Plan hash", h("span", { class: "mono", text: op.approval.planHash })]);
      if (op.approval.decision) facts.push(["Decision", `${op.approval.decision} by ${op.approval.decidedBy || "?"} at ${when(op.approval.decidedAt)}${op.approval.comment ? ` — “${op.approval.comment}”` : ""}`]);
    }
    if (op.cancellation) facts.push(["Cancellation", `requested by ${op.cancellation.requestedBy || "?"} at ${when(op.cancellation.requestedAt)}${op.cancellation.forced ? " (forced)" : ""}`]);
    const parts = [h("div", { class: "card" }, h("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)])))];
    if (op.error) {
      const [what, remedy] = splitRemedy(op.error.message);
      parts.push(
        h(
          "div",
          { class: "card errorbox", id: "error", role: "alert" },
          h("h2", {}, "Error ", h("span", { class: "mono", text: op.error.code })),
          h("p", { text: what }),
          h("p", { class: "muted", text: op.error.retryable ? "Retryable: running the operation again may succeed." : "Permanent: fix the cause before trying again." }),
          remedy ? h("div", { class: "remedy" }, h("strong", { text: "Remedy: " }), remedy) : null,
        ),
      );
    }
    const meta = op.metadata || {};
    if (meta.cleanedUp || meta.leftBehind) {
      parts.push(
        h("div", { class: "card" }, h("h2", { text: "Cleanup" }),
          h("p", {}, h("strong", { text: "Cleaned up: " }), (meta.cleanedUp || []).join(", ") || "nothing"),
          h("p", {}, h("strong", { text: "Left behind: " }), (meta.leftBehind || []).join(", ") || "nothing")),
      );
    }
    details.replaceChildren(...parts);
  };

  const act = async (label, call) => {
    feedback.textContent = `${label}…`;
    feedback.className = "";
    try {
      const outcome = await call();
      feedback.textContent = `${label} accepted; the operation is now ${outcome.status}.`;
      announce(feedback.textContent);
      op = await api(path, { signal });
      Object.assign(live, op);
      paintAll();
    } catch (error) {
      feedback.className = "error";
      feedback.textContent = `${label} refused: ${error instanceof ApiFailure ? `${error.code}: ` : ""}${error.message}`;
    }
  };

  const paintActions = () => {
    const reasons = actionReasons({ ...op, status: live.status, isCancelable: op.isCancelable && !TERMINAL.has(live.status) && live.status !== "CANCELLING", isApprovable: op.isApprovable && live.status === "AWAITING_APPROVAL" }, me.role, me.keyId);
    const cancel = h("button", {
      type: "button", class: "danger", id: "cancel-button", text: "Cancel operation",
      onclick: async () => {
        if (await confirmDialog("Cancel this operation?", `${operationId} stops; its cleanup runs and the record lists what was cleaned up and what was left behind.`, "Cancel operation")) {
          act("Cancel", () => api(`${path}/cancel`, { method: "POST" }));
        }
      },
    });
    const force = h("button", {
      type: "button", class: "danger", id: "force-button", text: "Force cancel",
      onclick: async () => {
        if (await confirmDialog("Force cancel?", "The workflow is terminated if the graceful cancel has not finished within the grace period: cleanup may be incomplete.", "Force cancel")) {
          act("Force cancel", () => api(`${path}/cancel`, { method: "POST", query: { force: "true" } }));
        }
      },
    });
    actions.replaceChildren(
      actionBox("action-cancel", "Cancel", reasons.cancel, cancel),
      actionBox("action-force", "Force cancel (admin)", reasons.force, force),
      decisionForm(op, {
        reason: reasons.decide,
        withToken: true,
        onDecided: (action, outcome) => act(action === "APPROVE" ? "Approve" : "Reject", async () => outcome),
        onRefused: (action, error) => act(action === "APPROVE" ? "Approve" : "Reject", async () => { throw error; }),
      }),
    );
  };

  const paintAll = () => {
    paintHead();
    paintDetails();
    paintActions();
  };
  paintAll();

  let lastAnnounced = live.currentPhase;
  followOperation(operationId, {
    signal,
    onEvent: async (event) => {
      const before = live.status;
      applyEvent(live, event);
      log.append(
        h(
          "li",
          { class: event.level, "data-sequence": String(event.sequence) },
          h("span", { class: "mono", text: `#${event.sequence}` }),
          h("span", { class: "mono", text: new Date(event.timestamp).toLocaleTimeString() }),
          h("span", { class: "mono", text: event.phase || event.kind }),
          h("span", { text: event.message }),
        ),
      );
      log.scrollTop = log.scrollHeight;
      paintHead();
      if (live.currentPhase !== lastAnnounced) {
        lastAnnounced = live.currentPhase;
        announce(`Phase ${live.currentPhase}, ${live.progressPercentage}%`);
      }
      if (before !== live.status) {
        announce(`Operation ${live.status.toLowerCase().replaceAll("_", " ")}`);
        op = await api(path, { signal }).catch(() => op);
        Object.assign(live, { ...op, progressPercentage: Math.max(op.progressPercentage, live.progressPercentage) });
        if (live.status === "SUCCEEDED") live.progressPercentage = 100;
        if (TERMINAL.has(live.status) && feedback.className !== "error") feedback.textContent = "";
        paintAll();
        refreshApprovalCount();
      }
    },
    onConnection: (state) => {
      connection.textContent = { live: "● live", reconnecting: "reconnecting…", closed: "stream ended" }[state] || state;
    },
  });

  page.append(
    heading,
    h("div", { class: "card" }, bar, h("p", {}, h("strong", { text: "Phase: " }), phase, " · ", message, " ", connection)),
    details,
    h("h2", { text: "Actions" }),
    actions,
    feedback,
    h("h2", { text: "Event log" }),
    log,
  );
  return page;
}

// ---------- start ----------

window.addEventListener("hashchange", () => render(true));
(async () => {
  if (session.key) {
    try {
      await signIn(session.key);
      render();
      return;
    } catch {
      /* fall through to the sign-in form */
    }
  }
  signOut();
})();
