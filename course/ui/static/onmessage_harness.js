// Runs a student's onmessage handler in Node.js, on a minimal fake page.
//
// Used by course.checks.ch04 (the self-check of exercise 04). Reads one JSON object on
// stdin:  {"source": "(event, log) => {...}", "timeout_ms": 1000,
//          "scenarios": [["<event.data>", ...], ...]}
// and writes one JSON object on stdout:
//   {"compile_error": null | "SyntaxError: ... (line N)", "not_function": "number" | null,
//    "scenarios": [{"lines": [...], "errors": [...], "html": [...], "ran": [...]}, ...]}
// Each scenario gets a fresh page and a fresh <ul> `log`; the handler is called once per
// event.data, as the widget does: handler({data}, log). The handler runs in a vm context
// (no require, no process), in strict mode like the widget's compileHandler, and every call
// is bounded by timeout_ms.
//
// The page is a small DOM: document.createElement / createTextNode / createDocumentFragment;
// nodes with textContent, innerText, className, classList, id, title, hidden, style, dataset,
// get/set/has/removeAttribute, append, prepend, appendChild, insertBefore, removeChild,
// replaceChildren, remove, children, childNodes, first/last(Element)Child, childElementCount.
// HTML sinks (innerHTML, outerHTML, insertAdjacentHTML, document.write) are recorded and
// really parsed, so `li.innerHTML = text` turns "<img src=x onerror=...>" into an IMG element
// from markup, which is how the check sees text from the network becoming HTML.
"use strict";
const vm = require("node:vm");

const ELEMENT = 1, TEXT = 3, FRAGMENT = 11;
const VOID = new Set(["area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"]);

class FakeNode {
  constructor(doc, type) {
    this.ownerDocument = doc;
    this.nodeType = type;
    this.parentNode = null;
    this._kids = [];
  }
  get childNodes() { return this._kids.slice(); }
  get children() { return this._kids.filter((k) => k.nodeType === ELEMENT); }
  get firstChild() { return this._kids[0] ?? null; }
  get lastChild() { return this._kids.at(-1) ?? null; }
  get firstElementChild() { return this.children[0] ?? null; }
  get lastElementChild() { return this.children.at(-1) ?? null; }
  get childElementCount() { return this.children.length; }
  get parentElement() { return this.parentNode?.nodeType === ELEMENT ? this.parentNode : null; }
  get textContent() { return this._kids.map((k) => k.textContent).join(""); }
  set textContent(value) {
    this._setKids([]);
    const text = value === null || value === undefined ? "" : String(value);
    if (text) this._insert(this.ownerDocument.createTextNode(text), null);
  }
  hasChildNodes() { return this._kids.length > 0; }
  contains(node) {
    for (let n = node; n; n = n.parentNode) if (n === this) return true;
    return false;
  }
  _node(x) { return x instanceof FakeNode ? x : this.ownerDocument.createTextNode(String(x)); }
  _insert(node, before) {
    if (!(node instanceof FakeNode)) throw new TypeError("parameter 1 is not of type 'Node'");
    if (node.contains(this)) throw new Error("HierarchyRequestError: a node cannot contain itself");
    if (node.nodeType === FRAGMENT) {
      for (const kid of node.childNodes) this._insert(kid, before);
      return node;
    }
    if (node.parentNode) node.parentNode._detach(node);
    const at = before ? this._kids.indexOf(before) : -1;
    if (at < 0) this._kids.push(node); else this._kids.splice(at, 0, node);
    node.parentNode = this;
    return node;
  }
  _detach(node) {
    const at = this._kids.indexOf(node);
    if (at >= 0) this._kids.splice(at, 1);
    node.parentNode = null;
  }
  _setKids(nodes) {
    for (const kid of this._kids) kid.parentNode = null;
    this._kids = [];
    for (const node of nodes) this._insert(node, null);
  }
  append(...items) { for (const x of items) this._insert(this._node(x), null); }
  prepend(...items) { const first = this.firstChild; for (const x of items) this._insert(this._node(x), first); }
  appendChild(node) { return this._insert(node, null); }
  insertBefore(node, ref) { return this._insert(node, ref ?? null); }
  removeChild(node) { this._detach(node); return node; }
  replaceChildren(...items) { this._setKids(items.map((x) => this._node(x))); }
  remove() { if (this.parentNode) this.parentNode._detach(this); }
}

class FakeText extends FakeNode {
  constructor(doc, data) { super(doc, TEXT); this.data = String(data); }
  get nodeName() { return "#text"; }
  get textContent() { return this.data; }
  set textContent(value) { this.data = String(value); }
  get nodeValue() { return this.data; }
  set nodeValue(value) { this.data = String(value); }
}

class FakeFragment extends FakeNode {
  constructor(doc) { super(doc, FRAGMENT); }
  get nodeName() { return "#document-fragment"; }
}

class FakeClassList {
  constructor(el) { this._el = el; }
  _get() { return this._el.className.split(/\s+/).filter(Boolean); }
  _set(names) { this._el.className = [...new Set(names)].join(" "); }
  get length() { return this._get().length; }
  get value() { return this._el.className; }
  item(i) { return this._get()[i] ?? null; }
  contains(name) { return this._get().includes(String(name)); }
  add(...names) { this._set([...this._get(), ...names.map(String)]); }
  remove(...names) { this._set(this._get().filter((n) => !names.map(String).includes(n))); }
  toggle(name, force) {
    const on = force === undefined ? !this.contains(name) : Boolean(force);
    if (on) this.add(name); else this.remove(name);
    return on;
  }
  toString() { return this.value; }
}

function escapeText(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

class FakeElement extends FakeNode {
  constructor(doc, tag, fromMarkup = false) {
    super(doc, ELEMENT);
    this.localName = String(tag).toLowerCase();
    this.fromMarkup = fromMarkup;
    this._attrs = new Map();
    this.style = {};
    this.dataset = {};
    this.hidden = false;
    this.scrollTop = 0;
  }
  get tagName() { return this.localName.toUpperCase(); }
  get nodeName() { return this.tagName; }
  get className() { return this._attrs.get("class") ?? ""; }
  set className(value) { this._attrs.set("class", String(value)); }
  get classList() { return new FakeClassList(this); }
  get id() { return this._attrs.get("id") ?? ""; }
  set id(value) { this._attrs.set("id", String(value)); }
  get title() { return this._attrs.get("title") ?? ""; }
  set title(value) { this._attrs.set("title", String(value)); }
  get scrollHeight() { return 0; }
  get innerText() { return this.textContent; }
  set innerText(value) { this.textContent = value; }
  getAttribute(name) { return this._attrs.get(String(name).toLowerCase()) ?? null; }
  setAttribute(name, value) { this._attrs.set(String(name).toLowerCase(), String(value)); }
  hasAttribute(name) { return this._attrs.has(String(name).toLowerCase()); }
  removeAttribute(name) { this._attrs.delete(String(name).toLowerCase()); }
  addEventListener() {}
  removeEventListener() {}
  get innerHTML() { return this._kids.map(serialize).join(""); }
  set innerHTML(html) { this._setKids(this.ownerDocument._parse("innerHTML", html)); }
  get outerHTML() { return serialize(this); }
  set outerHTML(html) {
    const nodes = this.ownerDocument._parse("outerHTML", html);
    const parent = this.parentNode;
    if (!parent) return;
    for (const node of nodes) parent._insert(node, this);
    this.remove();
  }
  insertAdjacentHTML(position, html) {
    const fragment = this.ownerDocument.createDocumentFragment();
    fragment.append(...this.ownerDocument._parse("insertAdjacentHTML", html));
    this._adjacent(position, fragment);
  }
  insertAdjacentText(position, text) { this._adjacent(position, this.ownerDocument.createTextNode(text)); }
  insertAdjacentElement(position, el) { return this._adjacent(position, el); }
  _adjacent(position, node) {
    switch (String(position).toLowerCase()) {
      case "beforebegin": return this.parentNode?._insert(node, this) ?? null;
      case "afterbegin": return this._insert(node, this.firstChild);
      case "beforeend": return this._insert(node, null);
      case "afterend": return this.parentNode?._insert(node, this.nextSibling) ?? null;
      default: throw new SyntaxError(`insertAdjacent*: unknown position ${position}`);
    }
  }
  get nextSibling() {
    if (!this.parentNode) return null;
    const kids = this.parentNode._kids;
    return kids[kids.indexOf(this) + 1] ?? null;
  }
}

function serialize(node) {
  if (node.nodeType === TEXT) return escapeText(node.data);
  if (node.nodeType === FRAGMENT) return node._kids.map(serialize).join("");
  const attrs = [...node._attrs].map(([k, v]) => ` ${k}="${v.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}"`);
  const open = `<${node.localName}${attrs.join("")}>`;
  return VOID.has(node.localName) ? open : `${open}${node._kids.map(serialize).join("")}</${node.localName}>`;
}

function decodeEntities(text) {
  const named = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, name) => {
    if (name[0] === "#") {
      const code = name[1].toLowerCase() === "x" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return named[name.toLowerCase()] ?? whole;
  });
}

// A small HTML parser: enough to see which elements and attributes a string would create.
function parseHTML(doc, html) {
  const root = new FakeFragment(doc);
  const stack = [root];
  const token = /<!--[\s\S]*?-->|<\/([a-zA-Z][\w-]*)\s*>|<([a-zA-Z][\w-]*)((?:[^>"']|"[^"]*"|'[^']*')*)>|[^<]+|</g;
  const attribute = /([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g;
  for (const m of html.matchAll(token)) {
    const top = stack.at(-1);
    if (m[0].startsWith("<!--")) continue;
    if (m[1]) {  // closing tag
      const at = stack.map((n) => n.localName).lastIndexOf(m[1].toLowerCase());
      if (at > 0) stack.length = at;
    } else if (m[2]) {  // opening tag
      const el = new FakeElement(doc, m[2], true);
      for (const a of m[3].matchAll(attribute)) el._attrs.set(a[1].toLowerCase(), decodeEntities(a[2] ?? a[3] ?? a[4] ?? ""));
      top._insert(el, null);
      if (!VOID.has(el.localName) && !/\/\s*$/.test(m[3])) stack.push(el);
    } else {
      top._insert(new FakeText(doc, decodeEntities(m[0])), null);
    }
  }
  return root.childNodes;
}

class FakeDocument {
  constructor() {
    this.html = [];
    this.body = new FakeElement(this, "body");
  }
  createElement(tag) { return new FakeElement(this, tag); }
  createTextNode(text) { return new FakeText(this, text); }
  createDocumentFragment() { return new FakeFragment(this); }
  getElementById(id) { return findAll(this.body).find((n) => n.id === String(id)) ?? null; }
  write(...parts) { this.body.append(...this._parse("document.write", parts.join(""))); }
  writeln(...parts) { this.write(...parts, "\n"); }
  _parse(sink, html) {
    const text = String(html);
    this.html.push({ sink, html: text.slice(0, 200) });
    return parseHTML(this, text);
  }
}

function findAll(node) {
  const out = [];
  for (const kid of node._kids) if (kid.nodeType === ELEMENT) out.push(kid, ...findAll(kid));
  return out;
}

function markupIn(node) {
  return findAll(node).filter((el) => el.fromMarkup).map((el) => {
    const handlers = [...el._attrs.keys()].filter((k) => k.startsWith("on"));
    return { tag: el.localName, handlers };
  });
}

let sourceLines = 0;

function where(err) {
  const m = /onmessage_js:(\d+)/.exec(String(err?.stack ?? ""));
  if (!m) return "";
  return Number(m[1]) > sourceLines
    ? " (at the very end of your JavaScript: is a bracket left open?)"
    : ` (line ${m[1]} of your JavaScript)`;
}

function describe(err) {
  if (err?.code === "ERR_SCRIPT_EXECUTION_TIMEOUT") return "timeout";
  const name = err?.name ?? "Error";
  const message = err?.message ?? String(err);
  return `${name}: ${message}${where(err)}`;
}

function run(request) {
  const timeout = request.timeout_ms ?? 1000;
  const console = { log() {}, info() {}, warn() {}, error() {}, debug() {} };
  const context = vm.createContext({ console });
  context.window = context;
  let handler;
  sourceLines = String(request.source).split("\n").length;
  try {
    const script = new vm.Script(`"use strict"; (${request.source}\n)`, { filename: "onmessage_js" });
    handler = script.runInContext(context, { timeout });
  } catch (err) {
    return { compile_error: describe(err), not_function: null, scenarios: [] };
  }
  if (typeof handler !== "function") {
    return { compile_error: null, not_function: handler === null ? "null" : typeof handler, scenarios: [] };
  }
  context.__handler = handler;
  const call = new vm.Script("__handler(__event, __log)", { filename: "harness" });
  const scenarios = [];
  let timedOut = false;  // a handler that loops forever is not called again
  for (const events of request.scenarios) {
    const doc = new FakeDocument();
    const log = doc.createElement("ul");
    doc.body.append(log);
    context.document = doc;
    const errors = [];
    for (const data of events) {
      context.__event = { type: "message", data };
      context.__log = log;
      if (timedOut) {
        errors.push("skipped");
        continue;
      }
      try {
        call.runInContext(context, { timeout });
      } catch (err) {
        errors.push(describe(err));
        timedOut ||= errors.at(-1) === "timeout";
      }
    }
    const lines = log.childNodes.map((node) => ({
      tag: node.nodeType === ELEMENT ? node.localName : node.nodeName,
      cls: node.nodeType === ELEMENT ? node.className : "",
      text: node.textContent,
    }));
    scenarios.push({ lines, errors, html: doc.html, markup: markupIn(doc.body) });
  }
  return { compile_error: null, not_function: null, scenarios };
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify(run(JSON.parse(input))));
});
