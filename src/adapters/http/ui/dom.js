// Small DOM helpers: elements, times, durations, status badges and a JSON viewer.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

export function when(iso, precise = false) {
  if (!iso) return "";
  const date = new Date(iso);
  if (!precise) return date.toLocaleString(undefined, { hour12: false });
  const time = date.toLocaleTimeString(undefined, { hour12: false });
  return `${date.toLocaleDateString()} ${time}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

export function seconds(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function runDuration(run) {
  const start = run.startedAt || run.createdAt;
  if (!start) return "";
  const end = run.completedAt ? Date.parse(run.completedAt) : Date.now();
  return seconds(end - Date.parse(start));
}

export function badge(status) {
  return h("span", { class: `badge status-${status}`, text: status });
}

export function stuckBadge(stuck) {
  if (!stuck) return null;
  return h("span", { class: "badge stuck", title: stuck.message, text: `stuck: ${stuck.reason}` });
}

export function shortName(name) {
  // "step//./src/workflows/order//processPayment" -> "processPayment"
  if (!name) return "";
  const parts = String(name).split("//");
  return parts[parts.length - 1] || name;
}

// A collapsible tree for any JSON value.
export function jsonView(value, open = true) {
  return h("div", { class: "json" }, node(value, open, 0));
}

function node(value, open, depth) {
  if (value === null || value === undefined) return h("span", { class: "j-null", text: "null" });
  if (typeof value === "string") return h("span", { class: "j-str", text: JSON.stringify(value) });
  if (typeof value === "number") return h("span", { class: "j-num", text: String(value) });
  if (typeof value === "boolean") return h("span", { class: "j-bool", text: String(value) });
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (entries.length === 0) return h("span", { class: "j-punct", text: isArray ? "[]" : "{}" });
  const summary = isArray ? `[${entries.length}]` : `{${entries.length}}`;
  return h(
    "details",
    { open: open && depth < 3 },
    h("summary", { class: "j-punct", text: summary }),
    h(
      "ul",
      {},
      entries.map(([key, child]) =>
        h("li", {}, h("span", { class: "j-key", text: isArray ? `${key}: ` : `${JSON.stringify(key)}: ` }), node(child, open, depth + 1)),
      ),
    ),
  );
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", { text: title }), ...children);
}

export function errorText(error) {
  if (error && error.status === 401) return "The API refused the key: enter a valid API key above.";
  if (error && error.status === 403) return `This key may not do that: ${error.message}`;
  return error && error.message ? error.message : String(error);
}

// Call fn now and then every ms after it settles, until the returned function is called.
export function poll(fn, ms) {
  let stopped = false;
  let timer;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
