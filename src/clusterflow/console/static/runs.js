// Fleet update runs in the console: the list, and a run page with its stages as columns and a
// progress bar per cluster. Polls GET /v1/update-runs/{id} (a run's state is its stages and
// clusters, which that record holds whole). Same rules as app.js: DOM built with h(), never
// innerHTML; styles come from runs.css (the console's CSP allows no inline style).
import { api, ROLES } from "./api.js";

const REFRESH_MS = 1500;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function stylesheet() {
  if (document.querySelector('link[href="runs.css"]')) return;
  document.head.append(h("link", { rel: "stylesheet", href: "runs.css" }));
}

const badge = (status) => h("span", { class: `badge s-${status}`, "data-status": status }, (status || "—").replaceAll("_", " "));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function bar(label, value, status) {
  const v = Math.max(0, Math.min(100, Number(value) || 0));
  const fill = h("div", { class: "fill" });
  fill.style.width = `${v}%`;
  const el = h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(v), "aria-label": label },
    h("div", { class: "track" }, fill),
    h("span", { class: "pct", text: `${v}%` }),
  );
  el.classList.toggle("done", status === "SUCCEEDED");
  el.classList.toggle("failed", status === "FAILED" || status === "CANCELLED");
  return el;
}

function every(ms, signal, fn) {
  const timer = setInterval(() => {
    if (!document.hidden) fn().catch(() => {});
  }, ms);
  signal.addEventListener("abort", () => clearInterval(timer));
}

export async function runsPage(signal) {
  stylesheet();
  const tbody = h("tbody");
  const fill = async () => {
    const data = await api("/v1/update-runs", { signal });
    tbody.replaceChildren(
      ...data.runs.map((run) =>
        h(
          "tr",
          { "data-run": run.runId },
          h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.runId)}` }, run.name)),
          h("td", {}, badge(run.status)),
          h("td", { text: run.targetVersion }),
          h("td", { text: when(run.createdAt) }),
          h("td", { text: run.message || "" }),
        ),
      ),
    );
    if (!data.runs.length) tbody.append(h("tr", {}, h("td", { colspan: "5", class: "muted", text: "No update runs yet." })));
  };
  await fill();
  every(4000, signal, fill);
  return h(
    "section",
    { class: "card" },
    h("h1", { text: "Update runs" }),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...["Run", "Status", "Version", "Created", "Message"].map((t) => h("th", { scope: "col", text: t })))),
      tbody,
    ),
  );
}

function gateList(gates, canApprove, act) {
  return gates.map((gate) =>
    h(
      "li",
      { class: "gate", "data-gate": gate.id },
      `${gate.timing} · ${gate.type === "approval" ? "approval" : "not before"} ${gate.name || gate.id} `,
      badge(gate.status),
      gate.type === "approval" && (gate.status === "WAITING" || gate.status === "PENDING")
        ? h("button", {
            type: "button",
            disabled: !canApprove,
            title: canApprove ? undefined : "approving a gate needs the owner role",
            onclick: () => act(`gates/${encodeURIComponent(gate.id)}/approve`, {}),
            text: `Approve ${gate.id}`,
          })
        : null,
      gate.opensAt ? h("span", { class: "muted", text: ` opens ${when(gate.opensAt)}` }) : null,
    ),
  );
}

function stageColumn(stage, canApprove, act) {
  const gates = [...stage.beforeGates, ...stage.afterGates];
  return h(
    "section",
    { class: "stage", "aria-label": `stage ${stage.name}`, "data-stage": stage.name },
    h("h2", {}, `${stage.name} `, badge(stage.status)),
    h("p", { class: "muted", text: `${stage.succeeded} updated · ${stage.failed} failed · ${stage.skipped} skipped` }),
    gates.length ? h("ul", { class: "gates" }, gateList(gates, canApprove, act)) : null,
    ...stage.groups.map((group) =>
      h(
        "div",
        { class: "group" },
        h("h3", {}, `${group.name} `, h("span", { class: "muted", text: `(${group.maxConcurrency} at once)` })),
        group.beforeGates.length + group.afterGates.length
          ? h("ul", { class: "gates" }, gateList([...group.beforeGates, ...group.afterGates], canApprove, act))
          : null,
        h(
          "ul",
          { class: "clusters" },
          ...group.clusters.map((cluster) =>
            h(
              "li",
              { "data-cluster": cluster.clusterId },
              h("span", { class: "name" }, cluster.clusterName, " ", badge(cluster.status)),
              bar(`cluster ${cluster.clusterName}`, cluster.status === "SUCCEEDED" ? 100 : cluster.progressPercentage, cluster.status),
              cluster.reason ? h("span", { class: "muted", text: cluster.reason }) : null,
            ),
          ),
        ),
      ),
    ),
  );
}

export async function runPage(runId, signal, role) {
  stylesheet();
  const may = (needed) => ROLES.indexOf(role) >= ROLES.indexOf(needed);
  const root = h("div");
  const error = h("p", { class: "error", role: "alert" });
  let latest = null;
  const act = async (path, body) => {
    error.textContent = "";
    try {
      await api(`/v1/update-runs/${encodeURIComponent(runId)}/${path}`, { method: "POST", body });
      await draw();
    } catch (failure) {
      error.textContent = failure.message;
    }
  };
  const draw = async () => {
    const run = await api(`/v1/update-runs/${encodeURIComponent(runId)}`, { signal });
    const signature = JSON.stringify(run);
    if (latest === signature) return;
    latest = signature;
    const active = !["SUCCEEDED", "FAILED", "CANCELLED", "REJECTED"].includes(run.operationStatus);
    const done = run.summary.total - run.summary.pending - run.summary.running;
    const editor = may("editor");
    const reason = editor ? undefined : "needs the editor role";
    root.replaceChildren(
      h("h1", { text: `Update run ${run.name}` }),
      h(
        "div",
        { class: "card run-head" },
        h("p", {}, badge(run.status), ` → ${run.targetVersion} · `, h("a", { href: `#/operations/${encodeURIComponent(run.runId)}`, class: "mono" }, run.runId)),
        bar("run", run.summary.total ? Math.round((done * 100) / run.summary.total) : 0, run.status),
        h("p", { text: run.message || "" }),
        h(
          "div",
          { class: "buttons" },
          h("button", { type: "button", disabled: !active || !editor || run.status !== "RUNNING", title: reason, onclick: () => act("pause"), text: "Pause" }),
          h("button", { type: "button", disabled: !active || !editor || !["PAUSED", "HALTED"].includes(run.status), title: reason, onclick: () => act("resume"), text: "Resume" }),
          h("button", { type: "button", class: "danger", disabled: !active || !editor || !run.isCancelable, title: reason, onclick: () => act("cancel"), text: "Cancel run" }),
        ),
        error,
      ),
      h("div", { class: "stages" }, ...run.stages.map((stage) => stageColumn(stage, active && may("owner"), act))),
    );
    if (run.skipped.length) {
      root.append(
        h("div", { class: "card" }, h("h2", { text: "Not updated" }), h("ul", {}, ...run.skipped.map((s) => h("li", { text: `${s.clusterName}: ${s.reason}` })))),
      );
    }
  };
  await draw();
  every(REFRESH_MS, signal, draw);
  return root;
}

