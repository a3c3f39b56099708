// The dashboard's shell: the API key form, the notice line and a hash router
// (#/runs, #/runs/<runId>, #/deployments). Each view returns a function that stops it.
import { apiKey, setApiKey } from "./api.js";
import { deploymentsView } from "./deployments.js";
import { runView } from "./run.js";
import { runsView } from "./runs.js";

const view = document.getElementById("view");
const notice = document.getElementById("notice");
let stop = () => {};

export function notify(text, kind = "error") {
  notice.textContent = text;
  notice.className = `notice ${kind}`;
  notice.hidden = !text;
}

function showKeyState() {
  document.getElementById("key-state").textContent = apiKey() ? "key set for this tab" : "no key";
}

function route() {
  stop();
  notify("");
  const hash = window.location.hash || "#/runs";
  const [, page, id] = hash.split("/");
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("current", link.dataset.nav === page);
  }
  if (!apiKey()) {
    view.replaceChildren();
    notify("Enter an API key above: the dashboard calls the API with it (kept in this tab only).", "info");
    return;
  }
  if (page === "runs" && id) stop = runView(view, decodeURIComponent(id), notify);
  else if (page === "deployments") stop = deploymentsView(view, notify);
  else stop = runsView(view, notify);
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("api-key");
  setApiKey(input.value.trim());
  input.value = "";
  showKeyState();
  route();
});

document.getElementById("forget-key").addEventListener("click", () => {
  setApiKey("");
  showKeyState();
  route();
});

window.addEventListener("hashchange", route);
showKeyState();
route();
