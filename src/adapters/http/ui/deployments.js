// Deployments: each with its kind, workflows, the active pointer, the runs still pinned
// to it, and a button to make it the active one.
import { api } from "./api.js";
import { clear, errorText, h, poll, section, shortName, when } from "./dom.js";

const REFRESH_MS = 5000;

export function deploymentsView(root, notify) {
  const state = { cursors: [undefined], page: 0 };
  const body = h("tbody", { id: "deployments-body" });
  const older = h("button", { type: "button", text: "Older →" });
  const newer = h("button", { type: "button", text: "← Newer" });
  older.addEventListener("click", () => { state.page += 1; refresh(); });
  newer.addEventListener("click", () => { state.page = Math.max(0, state.page - 1); refresh(); });

  async function activate(id) {
    try {
      await api(`/v1/deployments/${encodeURIComponent(id)}/activate`, { method: "POST" });
      notify(`${id} is now active.`, "ok");
      await refresh();
    } catch (error) {
      notify(errorText(error));
    }
  }

  function row(deployment) {
    const action = deployment.active
      ? h("span", { class: "badge active", text: "active" })
      : h("button", { type: "button", class: "activate", text: "Activate", onclick: () => activate(deployment.deploymentId) });
    return h("tr", { dataset: { deploymentId: deployment.deploymentId } },
      h("td", { class: "mono", text: deployment.deploymentId }),
      h("td", { text: deployment.kind }),
      h("td", { text: deployment.workflows.map((w) => shortName(w.name)).join(", ") }),
      h("td", { text: when(deployment.createdAt) }),
      h("td", {}, h("a", { href: "#/runs", class: "pinned", text: String(deployment.pinnedRuns) })),
      h("td", {}, action));
  }

  async function refresh() {
    try {
      const page = await api("/v1/deployments", { query: { limit: 50, cursor: state.cursors[state.page] } });
      state.cursors[state.page + 1] = page.hasMore ? page.cursor : undefined;
      clear(body, page.data.length ? page.data.map(row) : h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No deployments." })));
      older.disabled = !page.hasMore;
      newer.disabled = state.page === 0;
    } catch (error) {
      notify(errorText(error));
    }
  }

  clear(root, section("Deployments",
    h("table", { class: "deployments" },
      h("thead", {}, h("tr", {}, ["Deployment", "Kind", "Workflows", "Created", "Runs pinned", "Active"].map((t) => h("th", { text: t })))),
      body),
    h("div", { class: "pager" }, newer, older)));
  return poll(refresh, REFRESH_MS);
}
