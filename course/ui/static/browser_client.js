// The browser side of course.ui.browser.BrowserClient (an anywidget module).
//
// The WebSocket lives in the page (JupyterLab's tab), not in the kernel: this
// is exactly the JavaScript a web page runs.  initialize() runs once per widget
// model and owns the connection; render() runs once per view (each place the
// widget is displayed) and only draws.  State goes back to Python through
// synced traitlets: ready_state, received, last_message, close_code, error...
// course/ui/browser.py puts kernel_url.js (urlFromPage, unreachableHint) in front
// of this file: together they are the widget's module.

const READY = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];
const MAX_LINES = 200;
// anywidget hands initialize() and render() different model facades, so the
// per-model state is found through a synced id (BrowserClient._instance).
const STATES = new Map();

// The default onmessage handler: one line per message, always as text.
function defaultHandler(event, log) {
  const li = document.createElement("li");
  li.className = "ws-browser-received";
  li.textContent = typeof event.data === "string"
    ? "← " + event.data
    : `← [binary, ${event.data.byteLength} bytes]`;
  log.append(li);
}

function compileHandler(source) {
  if (!source) return defaultHandler;
  // The handler is code the notebook's author wrote (exercise of chapter 4):
  // compiling it is like pasting it in the page's console.
  const fn = new Function(`"use strict"; return (${source});`)();
  if (typeof fn !== "function") throw new TypeError("the handler source is not a function expression");
  return fn;
}

function initialize({ model }) {
  const state = {
    ws: null, entries: [], views: new Set(), handler: defaultHandler, live: false,
  };
  const key = model.get("_instance");
  STATES.set(key, state);

  const sync = (changes) => {
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    model.save_changes();
  };
  const redraw = () => state.views.forEach((view) => view.draw());
  const remember = (entry) => {
    state.entries.push(entry);
    if (state.entries.length > MAX_LINES) state.entries.shift();
  };
  const note = (text, cls) => {
    remember({ text, cls });
    state.views.forEach((view) => view.note({ text, cls }));
  };

  function setHandler() {
    try {
      state.handler = compileHandler(model.get("handler_js"));
      sync({ handler_error: "" });
    } catch (err) {
      state.handler = defaultHandler;
      sync({ handler_error: String(err) });
    }
    redraw();
  }

  function connect() {
    if (state.ws) { state.ws.onclose = null; state.ws.close(1000, "reconnecting"); state.ws = null; }
    const port = model.get("port"), url = model.get("url");
    if (!state.live || (!port && !url)) return;
    if (!("WebSocket" in window)) {  // feature detection
      sync({ error: "this browser has no WebSocket API" });
      return;
    }
    const mode = model.get("mode") || "auto";
    let target;
    try {
      target = url || urlFromPage(port, model.get("path") || "/", { mode, kind: "ws" });
    } catch (err) {
      sync({ error: String(err) });
      return redraw();
    }
    let opened = false;
    let ws;
    try {
      ws = new WebSocket(target);  // may throw SyntaxError / SecurityError (mixed content)
    } catch (err) {
      sync({ url_in_use: target, error: `could not create a WebSocket for ${target}: ${err.message}` });
      return redraw();
    }
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    sync({ ready_state: ws.readyState, url_in_use: target, error: "" });
    ws.onopen = () => {
      opened = true;
      sync({ ready_state: ws.readyState });
      note(`open: ${target}`, "ws-browser-note");
    };
    ws.onmessage = (event) => {
      remember({ data: event.data });
      const last = typeof event.data === "string" ? event.data : `[binary, ${event.data.byteLength} bytes]`;
      sync({ received: model.get("received") + 1, last_message: last });
      state.views.forEach((view) => view.show(event.data));
    };
    ws.onerror = () => { /* the close event that follows carries the details */ };
    ws.onclose = (event) => {
      if (state.ws === ws) state.ws = null;
      sync({ ready_state: WebSocket.CLOSED, close_code: event.code, close_reason: event.reason });
      if (!opened) {
        sync({ error: unreachableHint(target, url ? "url" : resolveMode(location.hostname, mode)) });
        return redraw();
      }
      note(`closed: code ${event.code}${event.reason ? " (" + event.reason + ")" : ""}, ` +
           `wasClean ${event.wasClean}`, "ws-browser-note");
    };
  }

  model.on("change:handler_js", setHandler);
  model.on("change:port", connect);
  model.on("change:url", connect);
  model.on("change:mode", connect);
  model.on("msg:custom", (msg) => {
    if (msg.command === "go") {
      // The kernel answered our hello: this model is alive, not a copy restored from the
      // notebook file (whose server is long gone). Only now open the WebSocket.
      if (!state.live) { state.live = true; connect(); redraw(); }
    } else if (msg.command === "send") {
      state.send(msg.text);
    } else if (msg.command === "reconnect") {
      connect();
    } else if (msg.command === "close" && state.ws) {
      state.ws.close(msg.code || 1000, msg.reason || "");
    }
  });
  state.send = (text) => {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      note("not sent: the socket is not OPEN", "ws-browser-note");
      return false;
    }
    ws.send(text);
    sync({ sent: model.get("sent") + 1, buffered_amount: ws.bufferedAmount });
    note("→ " + text, "ws-browser-sent");
    return true;
  };
  setHandler();
  model.send({ event: "hello" });  // dropped silently when no kernel holds this widget
  return () => {
    STATES.delete(key);
    if (state.ws) { state.ws.onclose = null; state.ws.close(1000, "widget closed"); }
  };
}

function render({ model, el }) {
  const state = STATES.get(model.get("_instance"));
  el.classList.add("ws-browser");
  const status = document.createElement("div");
  status.className = "ws-browser-state";
  const error = document.createElement("div");
  error.className = "ws-browser-error";
  const log = document.createElement("ul");
  log.className = "ws-browser-log";
  const form = document.createElement("div");
  form.className = "ws-browser-form";
  const input = document.createElement("input");
  input.className = "ws-browser-input";
  input.placeholder = "type a message for the server, then Enter";
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Send";
  form.append(input, button);
  el.append(status, log, form, error);

  const view = {
    show(data) {
      try {
        state.handler({ data }, log);
      } catch (err) {
        const li = document.createElement("li");
        li.className = "ws-browser-error";
        li.textContent = "the onmessage handler threw: " + err;
        log.append(li);
      }
      while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
      log.scrollTop = log.scrollHeight;
    },
    note(entry) {
      const li = document.createElement("li");
      li.className = entry.cls;
      li.textContent = entry.text;
      log.append(li);
    },
    draw() {
      log.replaceChildren();
      for (const entry of state.entries) {
        if ("data" in entry) view.show(entry.data);
        else view.note(entry);
      }
      view.status();
    },
    status() {
      const rs = model.get("ready_state");
      status.textContent = state.live
        ? `readyState ${rs} (${READY[rs] ?? "?"}) · ${model.get("url_in_use")} · ` +
          `received ${model.get("received")} · sent ${model.get("sent")}`
        : "waiting for the kernel (a widget saved in the notebook file stays idle: " +
          "run its cell to start it)";
      const text = model.get("error") || (model.get("handler_error") &&
        "your handler does not compile: " + model.get("handler_error"));
      error.textContent = text || "";
      error.hidden = !text;
    },
  };
  const submit = () => { if (input.value && state.send(input.value)) input.value = ""; };
  // Keys typed here are ours: without stopPropagation, JupyterLab's notebook
  // shortcuts (Enter = edit the cell, A/B = insert a cell...) would fire too.
  input.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter") { event.preventDefault(); submit(); }
  });
  button.addEventListener("click", submit);
  for (const name of ["ready_state", "received", "sent", "error", "handler_error", "url_in_use"]) {
    model.on(`change:${name}`, view.status);
  }
  state.views.add(view);
  view.draw();
  return () => {
    state.views.delete(view);
    for (const name of ["ready_state", "received", "sent", "error", "handler_error", "url_in_use"]) {
      model.off(`change:${name}`, view.status);
    }
  };
}

export default { initialize, render };
