// Runs: a filterable, paginated table that refreshes itself, and a form to trigger a run.
import { api } from "./api.js";
import { badge, clear, errorText, h, poll, runDuration, section, shortName, stuckBadge, when } from "./dom.js";

const STATUSES = ["", "pending", "running", "completed", "failed", "cancelled"];
const REFRESH_MS = 2000;

export function runsView(root, notify) {
  const state = { cursors: [undefined], page: 0, live: true };
  const body = h("tbody", { id: "runs-body" });
  const pageLabel = h("span", { class: "muted", id: "runs-page" });
  const status = h("select", { name: "status", id: "filter-status" },
    STATUSES.map((s) => h("option", { value: s, text: s || "any status" })));
  const workflow = h("input", { name: "workflowName", id: "filter-workflow", placeholder: "workflow name" });
  const deployment = h("input", { name: "deploymentId", id: "filter-deployment", placeholder: "deployment id" });
  const stuck = h("input", { type: "checkbox", id: "filter-stuck" });
  const live = h("input", { type: "checkbox", id: "live", checked: true });
  const older = h("button", { type: "button", id: "older", text: "Older →" });
  const newer = h("button", { type: "button", id: "newer", text: "← Newer" });
  const size = h("select", { id: "page-size" }, [20, 50, 100].map((n) => h("option", { value: n, text: `${n} a page` })));

  const restart = () => {
    state.cursors = [undefined];
    state.page = 0;
    refresh();
  };
  const filters = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); restart(); } },
    status, workflow, deployment,
    h("label", {}, stuck, " stuck only"),
    size,
    h("button", { type: "submit", text: "Filter" }),
    h("label", { class: "live" }, live, " live refresh"));
  for (const input of [status, stuck, size]) input.addEventListener("change", restart);
  live.addEventListener("change", () => { state.live = live.checked; });
  older.addEventListener("click", () => { state.page += 1; refresh(); });
  newer.addEventListener("click", () => { state.page = Math.max(0, state.page - 1); refresh(); });

  async function refresh() {
    const query = {
      status: status.value,
      workflowName: workflow.value.trim(),
      deploymentId: deployment.value.trim(),
      stuck: stuck.checked ? "true" : "",
      limit: size.value,
      cursor: state.cursors[state.page],
      resolveData: "none",
    };
    try {
      const page = await api("/v1/runs", { query });
      state.cursors[state.page + 1] = page.hasMore ? page.cursor : undefined;
      clear(body, page.data.length ? page.data.map(row) : h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No runs." })));
      older.disabled = !page.hasMore;
      newer.disabled = state.page === 0;
      pageLabel.textContent = `page ${state.page + 1}`;
      notify("");
    } catch (error) {
      notify(errorText(error));
    }
  }

  const table = h("table", { class: "runs" },
    h("thead", {}, h("tr", {}, ["Run", "Status", "Workflow", "Deployment", "Started", "Duration"].map((t) => h("th", { text: t })))),
    body);
  clear(root,
    triggerForm(notify),
    section("Runs", filters, table, h("div", { class: "pager" }, newer, pageLabel, older)));
  const stopPolling = poll(() => (state.live || body.childElementCount === 0 ? refresh() : null), REFRESH_MS);
  return stopPolling;
}

function row(run) {
  const link = h("a", { href: `#/runs/${encodeURIComponent(run.runId)}`, class: "mono", text: run.runId });
  return h("tr", { dataset: { runId: run.runId } },
    h("td", {}, link),
    h("td", {}, badge(run.status), " ", stuckBadge(run.stuck)),
    h("td", { title: run.workflowName, text: shortName(run.workflowName) }),
    h("td", { class: "mono", text: run.deploymentId }),
    h("td", { text: when(run.startedAt || run.createdAt) }),
    h("td", { text: runDuration(run) }));
}

function triggerForm(notify) {
  const name = h("input", { id: "trigger-workflow", name: "workflowName", placeholder: "workflow name", required: true });
  const input = h("input", { id: "trigger-input", name: "input", placeholder: "input: a JSON array of arguments", value: "[]" });
  const deployment = h("input", { id: "trigger-deployment", name: "deploymentId", placeholder: "deployment id (default: the active one)" });
  const form = h("form", { class: "trigger", id: "trigger-form" },
    name, input, deployment, h("button", { type: "submit", text: "Trigger" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let args;
    try {
      args = JSON.parse(input.value || "[]");
    } catch {
      notify("The input must be JSON (an array of arguments, or one value).");
      return;
    }
    const body = { workflowName: name.value.trim(), input: Array.isArray(args) ? args : [args] };
    if (deployment.value.trim()) body.deploymentId = deployment.value.trim();
    try {
      const run = await api("/v1/runs", { method: "POST", body, idempotent: true });
      window.location.hash = `#/runs/${encodeURIComponent(run.runId)}`;
    } catch (error) {
      notify(errorText(error));
    }
  });
  return section("Trigger a run", form);
}
