// The messenger page (course.net.messenger), on Phoenix's official client, vendored unchanged.
//
// Every URL is relative to the page, so it works at http://HOST:PORT/ and behind a path
// prefix such as jupyter-server-proxy's …/proxy/PORT/.  Text from the network is always
// set with textContent, never as HTML.
import { Socket, Presence } from "./vendor/phoenix-1.8.16.mjs";

const TYPING_THROTTLE_MS = 1000;  // send "typing" at most once a second while typing
const TYPING_EXPIRES_MS = 3000;   // a typist not heard from for 3 s is no longer shown
const PUSH_TIMEOUT_MS = 5000;     // no reply within this: "not delivered"
const ROOM_NAME = /^[A-Za-z0-9_-]{1,32}$/;

// The page's folder: a path without its final slash (…/proxy/8765) still means the folder.
const here = new URL(location.href);
if (!here.pathname.endsWith("/")) here.pathname += "/";
here.search = "";
here.hash = "";

const $ = (id) => document.getElementById(id);
const joinForm = $("join"), nickname = $("nickname"), roomInput = $("room");
const knownRooms = $("known-rooms"), roomList = $("room-list"), roomTitle = $("room-title");
const statusLine = $("status"), messages = $("messages"), typingLine = $("typing");
const online = $("online"), compose = $("compose"), text = $("text");

let socket = null;
let channel = null;        // the room joined (a Phoenix Channel)
let presence = null;       // its Presence
let rooms = [];            // names offered in the room list
const byId = new Map();    // message id -> its <li>
const delivered = new Set();  // ids of our own messages the server acknowledged
const typists = new Map();    // name -> expiry timer
let typingSentAt = 0;         // when we last told the room we are typing (0: we are not)

function setStatus(label, cls) {
  statusLine.textContent = label;
  statusLine.className = "status " + (cls || "");
}

function myName() {
  return nickname.value.trim();
}

// --- messages -------------------------------------------------------------------------

function markDelivered(li) {
  if (li.querySelector(".delivered")) return;
  const mark = document.createElement("span");
  mark.className = "delivered";
  mark.textContent = "✓ delivered";
  li.append(mark);
}

function addMessage(msg) {
  if (byId.has(msg.id)) return;
  const li = document.createElement("li");
  li.className = "message";
  li.dataset.id = String(msg.id);
  const who = document.createElement("span");
  who.className = "name";
  who.textContent = msg.name;
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = msg.body;
  li.append(who, body);
  if (delivered.has(msg.id)) markDelivered(li);
  byId.set(msg.id, li);
  messages.append(li);
  messages.scrollTop = messages.scrollHeight;
}

function addError(line) {
  const li = document.createElement("li");
  li.className = "error";
  li.textContent = line;
  messages.append(li);
}

// --- who is typing ----------------------------------------------------------------------

function renderTyping() {
  const names = [...typists.keys()].sort();
  if (names.length === 0) typingLine.textContent = "";
  else if (names.length === 1) typingLine.textContent = `${names[0]} is typing…`;
  else typingLine.textContent = `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
}

function typistStopped(name) {
  clearTimeout(typists.get(name));
  if (typists.delete(name)) renderTyping();
}

function typistTyping(name) {
  clearTimeout(typists.get(name));
  typists.set(name, setTimeout(() => typistStopped(name), TYPING_EXPIRES_MS));
  renderTyping();
}

function clearTypists() {
  for (const timer of typists.values()) clearTimeout(timer);
  typists.clear();
  renderTyping();
}

// Ephemeral and throttled: at most one "typing" a second; the others expire it.
function onInput() {
  if (!channel) return;
  if (text.value.trim() === "") {
    stopTyping();
  } else if (Date.now() - typingSentAt >= TYPING_THROTTLE_MS) {
    typingSentAt = Date.now();
    channel.push("typing", { typing: true });  // the server sends no reply: fire and forget
  }
}

function stopTyping() {
  if (channel && typingSentAt !== 0) channel.push("typing", { typing: false });
  typingSentAt = 0;
}

// --- rooms ------------------------------------------------------------------------------

function renderRooms(current) {
  if (current && !rooms.includes(current)) rooms.push(current);
  knownRooms.replaceChildren(...rooms.map((name) => {
    const option = document.createElement("option");
    option.value = name;
    return option;
  }));
  roomList.replaceChildren(...rooms.map((name) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "#" + name;
    if (name === current) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => { roomInput.value = name; join(name); });
    li.append(button);
    return li;
  }));
}

function renderOnline(p) {
  if (p !== presence) return;  // a room we already left
  const names = p.list((name) => name).sort();
  online.replaceChildren(...names.map((name) => {
    const li = document.createElement("li");
    li.textContent = name;
    return li;
  }));
}

function join(room) {
  const name = myName();
  if (!ROOM_NAME.test(room) || !name) {
    setStatus("a room is 1 to 32 letters, digits, _ or -, and you need a name", "closed");
    return;
  }
  if (channel) {
    stopTyping();
    channel.leave();
  }
  messages.replaceChildren();
  byId.clear();
  online.replaceChildren();
  clearTypists();
  renderRooms(room);
  roomTitle.textContent = "#" + room;
  // Params as a function: an automatic rejoin (after a reconnect) uses the current name.
  const ch = socket.channel("room:" + room, () => ({ name: myName() }));
  const p = new Presence(ch);
  channel = ch;
  presence = p;
  p.onSync(() => renderOnline(p));
  ch.on("new_msg", (msg) => {
    if (ch !== channel) return;
    typistStopped(msg.name);
    addMessage(msg);
  });
  ch.on("typing", ({ name: who, typing }) => {
    if (ch !== channel || who === myName()) return;
    if (typing) typistTyping(who); else typistStopped(who);
  });
  ch.join()
    .receive("ok", ({ history }) => {
      if (ch !== channel) return;
      messages.replaceChildren();  // a rejoin brings the history again
      byId.clear();
      for (const msg of history || []) addMessage(msg);
      setStatus(`connected · #${room} as ${myName()}`, "open");
    })
    .receive("error", ({ reason, detail }) => {
      setStatus(`cannot join #${room}: ${detail || reason}`, "closed");
    })
    .receive("timeout", () => setStatus(`no answer joining #${room}; retrying`, "closed"));
}

// --- wiring -----------------------------------------------------------------------------

joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  join(roomInput.value.trim());
});

compose.addEventListener("submit", (event) => {
  event.preventDefault();  // no reload: the message goes over the channel
  const body = text.value.trim();
  if (!body || !channel) return;
  typingSentAt = 0;  // the message itself ends the typing, for the others too
  channel.push("new_msg", { body }, PUSH_TIMEOUT_MS)
    .receive("ok", ({ id }) => {
      delivered.add(id);
      const li = byId.get(id);
      if (li) markDelivered(li);
    })
    .receive("error", ({ reason, detail }) => addError(`not sent: ${detail || reason}`))
    .receive("timeout", () => addError(`not delivered (no reply within ${PUSH_TIMEOUT_MS / 1000} s): ${body}`));
  text.value = "";
});

text.addEventListener("input", onInput);

async function start() {
  let config = { rooms: ["lobby"], heartbeat_interval_ms: 30000 };
  try {
    const response = await fetch(new URL("config.json", here));
    if (response.ok) config = await response.json();
  } catch (err) {
    setStatus("no config.json; using defaults", "closed");
  }
  rooms = [...config.rooms];
  const params = new URLSearchParams(location.search);  // ?name=ada&room=lobby prefill the form
  nickname.value = params.get("name") || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
  roomInput.value = params.get("room") || rooms[0];
  renderRooms(null);

  const url = new URL("socket", here);  // Phoenix appends /websocket?vsn=2.0.0
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new Socket(url.href, {
    heartbeatIntervalMs: config.heartbeat_interval_ms,
    reconnectAfterMs: (tries) => [500, 1000, 2000, 5000][tries - 1] || 10000,
  });
  socket.onOpen(() => { if (channel) setStatus("connected", "open"); });
  socket.onClose(() => setStatus("disconnected; reconnecting…", "closed"));
  socket.connect();
  join(roomInput.value.trim());
  if (window.top === window) text.focus();  // not inside a frame: focusing would scroll the parent
}

start();
