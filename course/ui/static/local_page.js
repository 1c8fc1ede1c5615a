// The browser side of course.ui.browser.LocalPage (an anywidget module): a page
// served on the kernel's 127.0.0.1:PORT, shown as a frame or as a link.
// course/ui/browser.py puts kernel_url.js (urlFromPage) in front of this file:
// the frame's address follows the same rule as BrowserClient's WebSocket.
// The address is set as a property (iframe.src, a.href), never as HTML.

const STATES = new Map();  // per model, found through the synced _instance id

function initialize({ model }) {
  const state = { live: false, url: "", error: "", views: new Set() };
  const key = model.get("_instance");
  STATES.set(key, state);
  const resolve = () => {
    try {
      state.url = urlFromPage(model.get("port"), model.get("path") || "/",
                              { mode: model.get("mode") || "auto", kind: "http" });
      state.error = "";
    } catch (err) {
      state.url = "";
      state.error = String(err);
    }
    model.set("url_in_use", state.url);
    model.save_changes();
    state.views.forEach((view) => view.draw());
  };
  model.on("msg:custom", (msg) => {
    // The kernel answered our hello: its server is alive (a copy restored from a
    // saved notebook gets no answer and must not knock on a dead port).
    if (msg.command === "go" && !state.live) { state.live = true; resolve(); }
  });
  for (const name of ["port", "path", "mode"]) model.on(`change:${name}`, () => state.live && resolve());
  model.send({ event: "hello" });
  return () => STATES.delete(key);
}

function render({ model, el }) {
  const state = STATES.get(model.get("_instance"));
  el.classList.add("ws-local-page");
  const view = {
    draw() {
      el.replaceChildren();
      if (!state.live || !state.url) {
        const note = document.createElement("div");
        note.className = "ws-local-page-note";
        note.textContent = state.error ||
          "waiting for the kernel (a page saved in the notebook file stays idle: run its cell)";
        el.append(note);
      } else if (model.get("kind") === "link") {
        const a = document.createElement("a");
        a.href = state.url;
        a.target = "_blank";
        a.rel = "noopener";
        a.textContent = model.get("label") || state.url;
        el.append(a);
      } else {
        const frame = document.createElement("iframe");
        frame.src = state.url;
        frame.title = model.get("label") || state.url;
        frame.style.height = `${model.get("height")}px`;
        el.append(frame);
      }
    },
  };
  const redraw = () => view.draw();
  for (const name of ["kind", "label", "height"]) model.on(`change:${name}`, redraw);
  state.views.add(view);
  view.draw();
  return () => {
    state.views.delete(view);
    for (const name of ["kind", "label", "height"]) model.off(`change:${name}`, redraw);
  };
}

export default { initialize, render };
