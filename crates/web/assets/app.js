// The llmbasedos console's one script (served from the console's own
// origin; the Content-Security-Policy allows no other). Everything it puts
// on the page from the server's data goes in as text (textContent), except
// a tool result, which the server renders as escaped HTML.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body === undefined ? {} : body),
    });
  }

  function say(element, text, isError) {
    if (!element) return;
    element.textContent = text;
    element.classList.toggle("problem", !!isError);
  }

  // Sign-in: the one-time token sits in the fragment, which no request
  // line carries; it is removed from the address bar before anything else.
  function signIn() {
    const match = /^#t=([0-9a-fA-F]{64})$/.exec(location.hash);
    if (!match) return false;
    history.replaceState(null, "", location.pathname + location.search);
    const status = document.getElementById("signin-status");
    say(status, "Signing in…");
    fetch("/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: match[1] }),
    }).then(async (response) => {
      // Read to the end first: a navigation during the read would abort it.
      const text = await response.text();
      if (response.ok) {
        location.reload();
      } else {
        say(status, text, true);
      }
    }, () => say(status, "The console did not answer; is llmbasedos-web running?", true));
    return true;
  }

  function setupLogout() {
    const button = document.getElementById("logout");
    if (!button) return;
    button.addEventListener("click", () => {
      post("/logout").then(() => { location.href = "/"; });
    });
  }

  function setupToolSearch() {
    const input = document.getElementById("tool-search");
    const list = document.getElementById("tool-list");
    const count = document.getElementById("tool-count");
    if (!input || !list) return;
    const items = Array.from(list.children);
    input.addEventListener("input", () => {
      const needle = input.value.trim().toLowerCase();
      let shown = 0;
      for (const item of items) {
        const visible = !needle || item.dataset.search.includes(needle);
        item.hidden = !visible;
        if (visible) shown += 1;
      }
      say(count, shown + " of " + items.length + " tools");
    });
  }

  function labelOf(element) {
    const label = element.id ? document.querySelector('label[for="' + element.id + '"]') : null;
    return label ? label.textContent.trim() : JSON.parse(element.dataset.path).join(".");
  }

  function convert(text, kind) {
    if (kind === "integer" || kind === "number") {
      const number = Number(text);
      if (!Number.isFinite(number) || (kind === "integer" && !Number.isInteger(number))) {
        throw new Error(JSON.stringify(text) + " is not " + (kind === "integer" ? "an integer" : "a number"));
      }
      return number;
    }
    if (kind === "boolean") {
      if (text === "true") return true;
      if (text === "false") return false;
      throw new Error(JSON.stringify(text) + " is not true or false");
    }
    return text;
  }

  // The tool's arguments from its generated form (see form.rs).
  function collect(form) {
    const args = {};
    const problems = [];
    for (const element of form.querySelectorAll("[data-kind]")) {
      if (element.tagName === "FIELDSET") continue;
      const path = JSON.parse(element.dataset.path);
      const kind = element.dataset.kind;
      const raw = element.type === "checkbox" ? "" : element.value;
      let value;
      try {
        switch (kind) {
          case "boolean": value = element.checked; break;
          case "enum": value = raw === "" ? undefined : JSON.parse(raw); break;
          case "integer":
          case "number": value = raw.trim() === "" ? undefined : convert(raw.trim(), kind); break;
          case "string": value = raw === "" ? undefined : raw; break;
          case "array": {
            const lines = raw.split("\n").map((line) => line.trim()).filter((line) => line !== "");
            value = lines.length ? lines.map((line) => convert(line, element.dataset.items)) : undefined;
            break;
          }
          default:
            value = raw.trim() === "" ? undefined : JSON.parse(raw);
        }
      } catch (error) {
        problems.push(labelOf(element) + ": " + error.message);
        continue;
      }
      if (value === undefined) {
        if (element.required) problems.push(labelOf(element) + " is required");
        continue;
      }
      let target = args;
      for (const key of path.slice(0, -1)) {
        if (typeof target[key] !== "object" || target[key] === null) target[key] = {};
        target = target[key];
      }
      target[path[path.length - 1]] = value;
    }
    return { args, problems };
  }

  function setupToolForm() {
    const form = document.getElementById("tool-form");
    if (!form) return;
    const result = document.getElementById("result");
    const cancel = document.getElementById("cancel");
    const call = document.getElementById("call");
    const box = document.getElementById("progress-box");
    const bar = document.getElementById("progress");
    const text = document.getElementById("progress-text");
    let current = null;
    let events = null;

    function finish() {
      if (events) events.close();
      events = null;
      current = null;
      cancel.hidden = true;
      call.disabled = false;
      box.hidden = true;
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const { args, problems } = collect(form);
      if (problems.length) {
        result.replaceChildren();
        const list = document.createElement("ul");
        list.className = "problem";
        list.setAttribute("role", "alert");
        for (const problem of problems) {
          const item = document.createElement("li");
          item.textContent = problem;
          list.appendChild(item);
        }
        result.appendChild(list);
        return;
      }
      call.disabled = true;
      cancel.hidden = false;
      box.hidden = false;
      bar.removeAttribute("value");
      say(text, "Calling…");
      say(result, "");
      const response = await post("/api/tools/call", { name: form.dataset.tool, arguments: args });
      if (!response.ok) {
        say(result, await response.text(), true);
        finish();
        return;
      }
      current = (await response.json()).id;
      events = new EventSource("/api/calls/" + current + "/events");
      events.addEventListener("progress", (message) => {
        const update = JSON.parse(message.data);
        if (update.total) {
          bar.max = update.total;
          bar.value = update.progress;
          say(text, Math.round((100 * update.progress) / update.total) + " %" + (update.message ? " — " + update.message : ""));
        } else {
          say(text, String(update.progress) + (update.message ? " — " + update.message : ""));
        }
      });
      events.addEventListener("result", (message) => {
        // Rendered and escaped by the server (calls.rs).
        result.innerHTML = message.data;
        finish();
      });
      events.addEventListener("failure", (message) => {
        say(result, message.data === "cancelled" ? "Cancelled." : message.data, message.data !== "cancelled");
        finish();
      });
      events.onerror = () => {
        if (current) {
          say(result, "Lost the connection to the console while the call ran; reload to try again.", true);
          finish();
        }
      };
    });

    cancel.addEventListener("click", () => {
      if (current) post("/api/calls/" + current + "/cancel");
    });
  }

  function setupServiceControls() {
    const status = document.getElementById("control-status");
    for (const button of document.querySelectorAll("button[data-control]")) {
      button.addEventListener("click", async () => {
        const name = button.dataset.service;
        const action = button.dataset.control;
        say(status, action + " " + name + "…");
        const response = await post("/api/services/" + encodeURIComponent(name) + "/" + action);
        if (response.ok) {
          say(status, action + " " + name + ": done");
          setTimeout(() => location.reload(), 800);
        } else {
          say(status, await response.text(), true);
        }
      });
    }
  }

  function setupLogTail() {
    const button = document.getElementById("tail");
    const rows = document.getElementById("log-rows");
    if (!button || !rows) return;
    let events = null;
    button.addEventListener("click", () => {
      if (events) {
        events.close();
        events = null;
        button.setAttribute("aria-pressed", "false");
        button.textContent = "Follow live";
        return;
      }
      events = new EventSource("/api/logs/stream?" + button.dataset.query);
      button.setAttribute("aria-pressed", "true");
      button.textContent = "Stop following";
      events.addEventListener("entry", (message) => {
        const entry = JSON.parse(message.data);
        const row = document.createElement("tr");
        row.className = "priority-" + entry.priority + " live";
        for (const text of [entry.time, entry.service, entry.priority_name, entry.message]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        }
        row.lastChild.className = "message";
        rows.insertBefore(row, rows.firstChild);
        while (rows.children.length > 2000) rows.removeChild(rows.lastChild);
        const empty = document.getElementById("log-empty");
        if (empty) empty.remove();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (signIn()) return;
    setupLogout();
    setupToolSearch();
    setupToolForm();
    setupServiceControls();
    setupLogTail();
  });
})();
