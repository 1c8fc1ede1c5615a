// How a page reaches a server listening on the kernel's 127.0.0.1:PORT.
// Shared by the widgets of course.ui.browser: course/ui/browser.py puts this file in
// front of each widget's own module (browser_client.js, local_page.js).
// course.ui.browser.url_from_page is the Python mirror of urlFromPage.
//
// Only the browser knows where it is, so the page decides:
// - a page served from a loopback host (localhost, 127.0.0.1, [::1]) is on the
//   kernel's machine: connect directly to 127.0.0.1:PORT;
// - any other page (JupyterHub, Binder) cannot reach the kernel's loopback (its
//   127.0.0.1 is the student's own computer): go through jupyter-server-proxy on
//   the page's own origin, BASE/proxy/PORT/ (wss:/https: when the page is https).
// mode "direct" or "proxy" overrides the rule (e.g. JupyterLab behind an SSH tunnel).

export const MODES = ["auto", "direct", "proxy"];

// JupyterLab writes its settings (including baseUrl, "/user/NAME/" behind
// JupyterHub) into the page as JSON.
export function jupyterBaseUrl(doc = document, loc = location) {
  const el = doc.getElementById("jupyter-config-data");
  if (el) {
    try {
      const base = JSON.parse(el.textContent).baseUrl;
      if (base) return base.endsWith("/") ? base : base + "/";
    } catch (err) { /* not JSON: fall back to the page's path */ }
  }
  const i = loc.pathname.indexOf("/lab");
  return i >= 0 ? loc.pathname.slice(0, i + 1) : "/";
}

export function isLoopbackHost(hostname) {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase().replace(/\.$/, "");
  return host === "localhost" || host.endsWith(".localhost") || host === "::1" ||
    host === "0:0:0:0:0:0:0:1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function resolveMode(hostname, mode = "auto") {
  if (!MODES.includes(mode)) throw new RangeError(`mode must be one of ${MODES.join(", ")}, got ${mode}`);
  if (mode !== "auto") return mode;
  return isLoopbackHost(hostname) ? "direct" : "proxy";
}

// kind "ws" for a WebSocket, "http" for a page (frame or link).
export function urlFromPage(port, path = "/", { mode = "auto", kind = "ws", loc = location,
                                                baseUrl = jupyterBaseUrl() } = {}) {
  if (resolveMode(loc.hostname, mode) === "direct") return `${kind}://127.0.0.1:${port}${path}`;
  const scheme = kind + (loc.protocol === "https:" ? "s" : "");
  return `${scheme}://${loc.host}${baseUrl}proxy/${port}${path}`;
}

// What to tell the student when nothing answered at `url` (mode: "direct",
// "proxy", or "url" for an address given in full).
export function unreachableHint(url, mode) {
  if (mode === "url") return `Nothing answered at ${url}. Is the server running?`;
  return mode === "proxy"
    ? `Nothing answered at ${url}. This page goes through jupyter-server-proxy (…/proxy/PORT/): ` +
      "is it installed where the Jupyter server runs (pip install jupyter-server-proxy, then " +
      "restart the server), and is the kernel's server still running?"
    : `Nothing answered at ${url}. Is the kernel's server still running? If this JupyterLab ` +
      "does not run on your computer (JupyterHub, Binder, an SSH tunnel), its 127.0.0.1 is not " +
      "yours: use mode=\"proxy\" (jupyter-server-proxy).";
}
