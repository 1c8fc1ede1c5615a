// minibase.js: the browser's client of chapter 8's realtime database (course.net.minibase).
//
//   import { Minibase } from "./minibase.js";
//   const db = new Minibase(`ws://${location.host}/.ws`, { auth: { uid: "ada" } });
//   const stop = db.listen("todos", (event) => console.log(event.kind, event.key, event.value));
//   const [key, written] = db.push("todos", { text: "milk", done: false });  // listeners fire now
//   await written;                                  // the server confirmed (or it throws, rolled back)
//   await db.transaction("counter", (n) => (n || 0) + 1);
//
// The same core as the kernel's course.net.dbclient.DbClient: a server cache with the pending
// writes on top; events are the diff of the visible snapshot at each listened path (child_removed,
// child_added, child_changed, then value); writes made offline are sent again after reconnecting
// and listening again.  Nothing here builds HTML: the page shows values with textContent.

const PUSH_CHARS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

export function parsePath(path) {
  const keys = String(path).split("/").filter((k) => k !== "");
  for (const key of keys) {
    if (/[.$#\[\]\x00-\x1f\x7f]/.test(key)) throw new Error(`bad key ${JSON.stringify(key)}: keys cannot hold . $ # [ ] / or control characters`);
  }
  return keys;
}

const joinPath = (keys) => "/" + keys.join("/");
const isPrefix = (prefix, keys) => prefix.length <= keys.length && prefix.every((k, i) => k === keys[i]);
const equal = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

function canonical(value) {  // sorted keys, so that equal trees print the same
  if (value === null || typeof value !== "object") return value;
  const out = {};
  for (const key of Object.keys(value).sort()) out[key] = canonical(value[key]);
  return out;
}

export function normalize(value) {  // null and empty objects pruned, arrays as objects
  if (value === undefined || value === null) return null;
  if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`${value} is not a JSON number`);
  if (typeof value !== "object") return value;
  const out = {};
  for (const [key, child] of Object.entries(value)) {
    parsePath(key);
    const normal = normalize(child);
    if (normal !== null) out[key] = normal;
  }
  return Object.keys(out).length ? out : null;
}

export function getAt(tree, keys) {
  let node = tree;
  for (const key of keys) {
    if (node === null || typeof node !== "object") return null;
    node = key in node ? node[key] : null;
  }
  return node;
}

export function setAt(tree, keys, value) {  // a new tree; the old one is untouched
  if (keys.length === 0) return value;
  const children = tree !== null && typeof tree === "object" ? { ...tree } : {};
  const child = setAt(children[keys[0]] ?? null, keys.slice(1), value);
  if (child === null) delete children[keys[0]]; else children[keys[0]] = child;
  return Object.keys(children).length ? children : null;
}

function apply(tree, write) {
  if (write.action === "m") {
    for (const [rel, value] of Object.entries(write.data)) tree = setAt(tree, write.keys.concat(parsePath(rel)), normalize(value));
    return tree;
  }
  return setAt(tree, write.keys, write.data);
}

function keyOrder(a, b) {  // Firebase's nameCompare: 32-bit integer keys first
  const int = (k) => (/^-?\d{1,10}$/.test(k) && Math.abs(Number(k)) <= 2147483647 ? Number(k) : null);
  const x = int(a), y = int(b);
  if (x !== null && y !== null) return x - y || a.length - b.length;
  if (x !== null) return -1;
  if (y !== null) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function childEvents(path, oldValue, newValue) {
  const before = oldValue !== null && typeof oldValue === "object" ? oldValue : {};
  const after = newValue !== null && typeof newValue === "object" ? newValue : {};
  const order = Object.keys(after).sort(keyOrder);
  const prev = (key) => { const i = order.indexOf(key); return i > 0 ? order[i - 1] : null; };
  const events = [];
  for (const key of Object.keys(before).sort(keyOrder)) {
    if (!(key in after)) events.push({ kind: "child_removed", path, key, value: before[key], previous: null });
  }
  for (const key of order) {
    if (!(key in before)) events.push({ kind: "child_added", path, key, value: after[key], previous: prev(key) });
  }
  for (const key of order) {
    if (key in before && !equal(before[key], after[key])) {
      events.push({ kind: "child_changed", path, key, value: after[key], previous: prev(key) });
    }
  }
  return events;
}

export function nextPushId(nowMs, state) {  // state: {lastMs, lastRandom}; a port of NextPushId.ts
  const duplicate = nowMs === state.lastMs;
  state.lastMs = nowMs;
  const time = [];
  for (let i = 0, t = nowMs; i < 8; i++, t = Math.floor(t / 64)) time.unshift(PUSH_CHARS.charAt(t % 64));
  if (!duplicate) {
    state.lastRandom = Array.from({ length: 12 }, () => Math.floor(Math.random() * 64));
  } else {
    let i = 11;
    for (; i >= 0 && state.lastRandom[i] === 63; i--) state.lastRandom[i] = 0;
    if (i < 0) throw new Error("push id overflow");
    state.lastRandom[i]++;
  }
  return time.join("") + state.lastRandom.map((d) => PUSH_CHARS.charAt(d)).join("");
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function canonicalJSON(value) {  // as Python's json.dumps(sort_keys=True, separators=(",", ":"))
  return JSON.stringify(canonical(value));  // numbers: the server stores 2.0 as 2, as JavaScript does
}

export class DbError extends Error {
  constructor(status, text, path) {
    super(`${status} at ${path}: ${text}`);
    this.status = status;
    this.path = path;
  }
}

export class Minibase {
  constructor(url, { auth = null, onStatus = () => {} } = {}) {
    this.url = url;
    this.auth = auth;
    this.onStatus = onStatus;       // onStatus(connected: boolean)
    this.serverCache = null;
    this.pending = [];              // {action, keys, data, resolve, reject, r}
    this.listeners = new Map();     // path -> [{callback, ready}]
    this.waiting = new Map();       // r -> resolve(reply)
    this.next = 1;
    this.pushState = { lastMs: null, lastRandom: [] };
    this.offset = 0;
    this.ws = null;
    this.closed = false;
    this.delay = 50;
    this.session = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
    this.attempts = 1;
    this.connect();
  }

  get connected() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.hello; }

  connect() {
    const ws = new WebSocket(this.url);
    this.hello = false;
    ws.onmessage = (message) => this.receive(ws, message.data);
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      for (const [r, resolve] of this.waiting) resolve({ r, status: "disconnected" });
      this.waiting.clear();
      for (const write of this.pending) write.r = null;
      this.onStatus(false);
      if (!this.closed) setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(1000, this.delay * 2);
    };
    this.ws = ws;
  }

  receive(ws, text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.t === "c" && message.d.t === "h") {
      this.offset = message.d.d.ts - Date.now();
      this.hello = true;
      this.delay = 50;
      this.restore();
      this.onStatus(true);
    } else if (message.t === "d" && "r" in message.d) {
      const resolve = this.waiting.get(message.d.r);
      this.waiting.delete(message.d.r);
      if (resolve) resolve({ r: message.d.r, status: message.d.b.s, data: message.d.b.d });
    } else if (message.t === "d" && (message.d.a === "d" || message.d.a === "m")) {
      const before = this.visible();
      const keys = parsePath(message.d.b.p);
      this.serverCache = apply(this.serverCache, { action: message.d.a, keys, data: message.d.b.d });
      this.fire(before);
    }
  }

  send(action, body) {
    const r = this.next++;
    return [r, new Promise((resolve) => {
      if (!this.connected) { resolve({ r, status: "disconnected" }); return; }
      this.waiting.set(r, resolve);
      this.ws.send(JSON.stringify({ t: "d", d: { r, a: action, b: body } }));
    })];
  }

  restore() {  // after (re)connecting: auth, listens, pending writes, in this order
    if (this.auth !== null) this.send("auth", { cred: this.auth });
    for (const path of this.listeners.keys()) this.sendListen(path);
    for (const write of this.pending) this.transmit(write);
  }

  visible() { return this.pending.reduce(apply, this.serverCache); }

  value(path = "/") { return getAt(this.visible(), parsePath(path)); }

  fire(before) {
    const after = this.visible();
    if (equal(before, after)) return;
    for (const [path, entries] of this.listeners) {
      const keys = parsePath(path);
      const old = getAt(before, keys), now = getAt(after, keys);
      if (equal(old, now)) continue;
      const events = childEvents(path, old, now).concat([{ kind: "value", path, key: null, value: now, previous: null }]);
      for (const entry of entries) if (entry.ready) for (const event of events) entry.callback(event);
    }
  }

  listen(path, callback) {
    path = joinPath(parsePath(path));
    const entry = { callback, ready: false };
    const first = !this.listeners.has(path);
    if (first) this.listeners.set(path, []);
    const entries = this.listeners.get(path);
    entries.push(entry);
    if (first && this.connected) this.sendListen(path);
    else if (!first && entries.some((e) => e.ready)) this.initialize(path, entry);
    return () => {
      entries.splice(entries.indexOf(entry), 1);
      if (entries.length === 0) {
        this.listeners.delete(path);
        if (this.connected) this.send("n", { p: path });
      }
    };
  }

  initialize(path, entry) {
    entry.ready = true;
    const value = this.value(path);
    for (const event of childEvents(path, null, value)) entry.callback(event);
    entry.callback({ kind: "value", path, key: null, value, previous: null });
  }

  sendListen(path) {
    this.send("q", { p: path })[1].then((reply) => {
      for (const entry of this.listeners.get(path) || []) {
        if (reply.status === "ok" && !entry.ready) this.initialize(path, entry);
      }
    });
  }

  write(action, keys, data) {
    const before = this.visible();
    let write;
    const promise = new Promise((resolve, reject) => { write = { action, keys, data, resolve, reject, r: null }; });
    this.pending.push(write);
    this.fire(before);
    if (this.connected) this.transmit(write);
    return promise;
  }

  transmit(write) {
    const [r, reply] = this.send(write.action, { p: joinPath(write.keys), d: write.data });
    write.r = r;
    reply.then((answer) => {
      if (answer.status === "disconnected" || !this.pending.includes(write) || write.r !== r) return;
      const before = this.visible();
      this.pending.splice(this.pending.indexOf(write), 1);
      if (answer.status === "ok") {
        this.serverCache = apply(this.serverCache, write);
        this.fire(before);
        write.resolve();
      } else {
        this.fire(before);  // the rollback: listeners see the data without this write
        write.reject(new DbError(answer.status, String(answer.data), joinPath(write.keys)));
      }
    });
  }

  set(path, value) { return this.write("p", parsePath(path), normalize(value)); }

  update(path, changes) {
    for (const [rel, value] of Object.entries(changes)) { parsePath(rel); normalize(value); }
    return this.write("m", parsePath(path), { ...changes });
  }

  remove(path) { return this.set(path, null); }

  push(path, value = null) {
    const key = nextPushId(Date.now() + this.offset, this.pushState);
    return [key, this.set(joinPath(parsePath(path).concat([key])), value)];
  }

  async request(action, body) {
    for (;;) {
      while (!this.connected) await new Promise((resolve) => setTimeout(resolve, 50));
      const reply = await this.send(action, body)[1];
      if (reply.status !== "disconnected") return reply;
    }
  }

  async get(path) {
    const reply = await this.request("g", { p: joinPath(parsePath(path)) });
    if (reply.status !== "ok") throw new DbError(reply.status, String(reply.data), path);
    return reply.data;
  }

  async transaction(path, fn, maxRetries = 25) {  // compare-and-set on the SHA-256 of canonical JSON
    const keys = parsePath(path);
    let current = await this.get(path);
    for (let retries = 0; ; retries++) {
      const next = fn(current);
      if (next === undefined) return { committed: false, value: current, retries, status: "aborted" };
      const value = normalize(next);
      const hash = await sha256Hex(canonicalJSON(current));
      const attempt = `${this.session}-${this.attempts++}`;  // sent again after a reconnect: applied once
      const reply = await this.request("p", { p: joinPath(keys), d: value, h: hash, i: attempt });
      if (reply.status === "ok") return { committed: true, value, retries, status: "ok" };
      if (reply.status !== "datastale") throw new DbError(reply.status, String(reply.data), path);
      if (retries >= maxRetries) return { committed: false, value: current, retries, status: "maxretry" };
      current = reply.data;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** retries)));
    }
  }

  async onDisconnectRemove(path) {
    const reply = await this.request("o", { p: joinPath(parsePath(path)), d: null });
    if (reply.status !== "ok") throw new DbError(reply.status, String(reply.data), path);
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
