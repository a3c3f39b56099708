// One run: its summary and cancel button, a step timeline (a bar per attempt; sleeps and
// hook waits drawn as gaps with their reason), pending hooks with a resume form, its
// input/output/error, its streams tailing live and the event log. Refreshes until it ends.
import { all, api, tail } from "./api.js";
import { badge, clear, errorText, h, jsonView, poll, runDuration, section, seconds, shortName, stuckBadge, when } from "./dom.js";

const REFRESH_MS = 1500;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function runView(root, runId, notify) {
  const path = `/v1/runs/${encodeURIComponent(runId)}`;
  const parts = {
    summary: h("div", { id: "run-summary" }),
    timeline: h("div", { id: "timeline", class: "timeline" }),
    hooks: h("div", { id: "hooks" }),
    data: h("div", { id: "run-data", class: "columns" }),
    streams: h("div", { id: "streams" }),
    events: h("div", { id: "events" }),
  };
  clear(root,
    h("p", {}, h("a", { href: "#/runs", text: "← all runs" })),
    parts.summary,
    section("Timeline", parts.timeline),
    section("Pending hooks", parts.hooks),
    section("Input, output and error", parts.data),
    section("Streams", parts.streams),
    section("Event log", parts.events));

  const tails = new Map(); // stream name -> AbortController
  let finished = false;
  let shownEvents = -1;
  let shownHooks = "";
  let shownData = "";

  async function refresh() {
    if (finished) return;
    try {
      const [run, events, hooks, streams] = await Promise.all([
        api(path),
        all(`${path}/events`),
        api(`${path}/hooks`, { query: { limit: 100 } }),
        api(`${path}/streams`),
      ]);
      renderSummary(parts.summary, run, path, notify, refresh);
      clear(parts.timeline, timeline(run, events));
      const hookKey = JSON.stringify(hooks.data.map((x) => x.hookId));
      if (hookKey !== shownHooks) {
        shownHooks = hookKey;
        clear(parts.hooks, hooksList(hooks.data, notify, refresh));
      }
      const dataKey = JSON.stringify([run.status, run.output, run.error]);
      if (dataKey !== shownData) {
        shownData = dataKey;
        clear(parts.data, runData(run));
      }
      if (events.length !== shownEvents) {
        shownEvents = events.length;
        clear(parts.events, eventLog(events));
      }
      for (const stream of streams.data) {
        if (!tails.has(stream.name)) tails.set(stream.name, openTail(parts.streams, path, stream.name));
      }
      if (!streams.data.length && !parts.streams.childElementCount) {
        parts.streams.append(h("p", { class: "muted", id: "no-streams", text: "No streams." }));
      }
      finished = TERMINAL.has(run.status);
      notify("");
    } catch (error) {
      notify(errorText(error));
    }
  }

  const stopPolling = poll(refresh, REFRESH_MS);
  return () => {
    stopPolling();
    for (const controller of tails.values()) controller.abort();
  };
}

function renderSummary(node, run, path, notify, refresh) {
  const cancel = h("button", { type: "button", id: "cancel-run", class: "danger", text: "Cancel run" });
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api(`${path}/cancel`, { method: "POST" });
      await refresh();
    } catch (error) {
      notify(errorText(error));
      cancel.disabled = false;
    }
  });
  const facts = [
    ["Workflow", run.workflowName],
    ["Deployment", run.deploymentId],
    ["Created", when(run.createdAt)],
    ["Started", when(run.startedAt)],
    ["Ended", when(run.completedAt)],
    ["Duration", runDuration(run)],
  ];
  clear(node, h("section", { class: "card summary" },
    h("h1", {}, h("span", { class: "mono", text: run.runId }), " ",
      h("span", { id: "run-status" }, badge(run.status)), " ", stuckBadge(run.stuck),
      TERMINAL.has(run.status) ? null : cancel),
    h("dl", {}, facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v || "—" })])),
    run.stuck ? h("p", { class: "warning", id: "stuck-note" },
      `Stuck since ${when(run.stuck.since)} (${run.stuck.reason}): ${run.stuck.message}`) : null,
    run.execution && run.execution.lastError ? h("p", { class: "warning" },
      `The engine is retrying: ${run.execution.lastError}`) : null));
}

// Lanes of the timeline, from the event log: one per step (a bar per attempt), one per
// sleep and one per hook (a gap: the run waits, with the reason).
export function lanes(events, endMs) {
  const byId = new Map();
  const order = [];
  const lane = (id, kind, label) => {
    if (!byId.has(id)) {
      byId.set(id, { id, kind, label, segments: [], open: null });
      order.push(id);
    }
    const found = byId.get(id);
    if (label && !found.label) found.label = label;
    return found;
  };
  const close = (found, at, status, detail) => {
    if (!found || !found.open) return;
    found.segments.push({ ...found.open, end: at, status, detail });
    found.open = null;
  };
  for (const event of events) {
    const at = Date.parse(event.createdAt);
    const data = event.eventData || {};
    const id = event.correlationId;
    switch (event.eventType) {
      case "step_created":
        lane(id, "step", data.stepName);
        break;
      case "step_started": {
        const found = lane(id, "step");
        close(found, at, "lost", "the attempt did not finish");
        found.open = { start: at, attempt: found.segments.length + 1 };
        break;
      }
      case "step_retrying":
        close(byId.get(id), at, "retrying", errorMessage(data.error));
        break;
      case "step_failed":
        close(byId.get(id), at, "failed", errorMessage(data.error));
        break;
      case "step_completed":
        close(byId.get(id), at, "completed", "");
        break;
      case "wait_created": {
        const found = lane(id, "sleep", data.resumeAt ? `sleep until ${when(data.resumeAt)}` : "sleep");
        found.open = { start: at };
        break;
      }
      case "wait_completed":
        close(byId.get(id), at, "slept", "");
        break;
      case "hook_created": {
        const found = lane(id, "hook", `waiting for hook ${data.token || id}`);
        found.open = { start: at };
        break;
      }
      case "hook_received":
        close(byId.get(id), at, "received", "");
        break;
      case "hook_disposed":
        close(byId.get(id), at, "disposed", "");
        break;
      default:
        break;
    }
  }
  for (const found of byId.values()) {
    if (found.open) close(found, endMs, found.kind === "step" ? "running" : "waiting", "");
  }
  return order.map((id) => byId.get(id));
}

function errorMessage(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return error.message || JSON.stringify(error);
}

function timeline(run, events) {
  const start = Date.parse(run.createdAt);
  const end = run.completedAt ? Date.parse(run.completedAt) : Date.now();
  const span = Math.max(1, end - start);
  const found = lanes(events, end);
  if (!found.length) return h("p", { class: "muted", text: "No steps, sleeps or hooks yet." });
  const pct = (ms) => `${Math.min(100, Math.max(0, ((ms - start) / span) * 100)).toFixed(3)}%`;
  const rows = found.map((item) => {
    const track = h("div", { class: "track" });
    for (const segment of item.segments) {
      const took = seconds(segment.end - segment.start);
      const label = item.kind === "step" ? `#${segment.attempt} ${segment.status} · ${took}` : `${item.label} · ${took}`;
      const bar = h("div", {
        class: `bar ${item.kind === "step" ? "attempt" : "gap"} s-${segment.status}`,
        title: [label, segment.detail].filter(Boolean).join("\n"),
        dataset: { kind: item.kind, status: segment.status },
      }, h("span", { text: label }));
      bar.style.left = pct(segment.start);
      bar.style.width = `max(3px, calc(${pct(segment.end)} - ${pct(segment.start)}))`;
      track.append(bar);
    }
    const name = item.kind === "step" ? shortName(item.label) : item.label;
    return h("div", { class: `lane lane-${item.kind}` },
      h("div", { class: "lane-name", title: item.label || item.id, text: name || item.id }), track);
  });
  return h("div", {},
    h("div", { class: "axis" }, h("span", { text: when(run.createdAt) }),
      h("span", { text: seconds(span) }), h("span", { text: run.completedAt ? when(run.completedAt) : "now" })),
    rows,
    h("div", { class: "legend muted" },
      h("span", { class: "swatch s-completed", text: "completed" }), h("span", { class: "swatch s-retrying", text: "failed, retried" }),
      h("span", { class: "swatch s-failed", text: "failed" }), h("span", { class: "swatch s-running", text: "running" }),
      h("span", { class: "swatch gap", text: "waiting (sleep or hook)" })));
}

function hooksList(hooks, notify, refresh) {
  if (!hooks.length) return h("p", { class: "muted", text: "No pending hooks." });
  return hooks.map((hook) => {
    const payload = h("textarea", { class: "payload", rows: 3, placeholder: "payload (JSON)", text: "{}" });
    const resume = h("button", { type: "submit", text: "Resume" });
    const form = h("form", { class: "hook", dataset: { hookId: hook.hookId } },
      h("div", {}, h("strong", { text: "token " }), h("code", { class: "token", text: hook.token || "(hidden: needs runs:write)" }),
        h("span", { class: "muted", text: ` · created ${when(hook.createdAt)}` })),
      hook.metadata ? jsonView(hook.metadata, false) : null,
      payload, resume);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let value;
      try {
        value = JSON.parse(payload.value || "null");
      } catch {
        notify("The payload must be JSON.");
        return;
      }
      resume.disabled = true;
      try {
        await api("/v1/runs/resume", { method: "POST", body: { token: hook.token, payload: value } });
        notify("Hook resumed.", "ok");
        await refresh();
      } catch (error) {
        notify(errorText(error));
        resume.disabled = false;
      }
    });
    if (!hook.token) resume.disabled = true;
    return form;
  });
}

function runData(run) {
  const box = (title, id, value) => h("div", { class: "data", id }, h("h3", { text: title }), jsonView(value));
  return [
    box("Input", "run-input", run.input),
    run.status === "completed" ? box("Output", "run-output", run.output) : null,
    run.error ? box("Error", "run-error", run.error) : null,
  ];
}

function openTail(container, path, name) {
  container.querySelector("#no-streams")?.remove();
  const out = h("pre", { class: "stream", dataset: { stream: name } });
  const state = h("span", { class: "muted", text: "live" });
  container.append(h("div", { class: "stream-box" }, h("h3", {}, h("code", { text: name }), " ", state), out));
  const controller = new AbortController();
  tail(`${path}/streams/${encodeURIComponent(name)}`, (text) => {
    out.textContent += text;
    out.scrollTop = out.scrollHeight;
  }, controller.signal)
    .then(() => { state.textContent = "closed"; })
    .catch((error) => { if (error.name !== "AbortError") state.textContent = `stopped: ${error.message}`; });
  return controller;
}

function eventLog(events) {
  return h("table", { class: "events" },
    h("thead", {}, h("tr", {}, ["Time", "Event", "Correlation", "Data"].map((t) => h("th", { text: t })))),
    h("tbody", {}, events.map((event) => h("tr", { dataset: { eventType: event.eventType } },
      h("td", { class: "mono", text: when(event.createdAt, true) }),
      h("td", {}, h("code", { text: event.eventType })),
      h("td", { class: "mono", text: event.correlationId || "" }),
      h("td", {}, event.eventData ? jsonView(event.eventData, false) : "")))));
}
