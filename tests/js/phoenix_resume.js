// The official `phoenix` client resuming through the fault relay (chapter 6).  Run by
// tests/test_resume.py:
//
//   NODE_PATH=js/node_modules node tests/js/phoenix_resume.js ws://127.0.0.1:PORT/socket NAME COUNT TOTAL
//
// It joins room:lobby with params given as a closure, which Phoenix re-evaluates on every
// rejoin: {name, client, last_seq}.  Server -> client: each new_msg carries `seq`; the
// next one is delivered, an older one is a duplicate and dropped, a gap is counted (the
// server replays on rejoin, so none should come).  Client -> server: it pushes COUNT
// messages "NAME-i" with an id each; every push stays in the outbox until its ok reply,
// and after each rejoin every unacknowledged one is pushed again, in order, with the same
// id (the server deduplicates).  It never pushes while not joined, so Phoenix's own push
// buffer cannot reorder anything.  It prints JSON lines: {"event": "joined", joins,
// resume} on each join, then {"event": "done", ...} once everything is acknowledged and
// TOTAL messages were delivered, and exits.  It gives up after 40 s.
"use strict";
const WebSocket = require("ws");
const { Socket } = require("phoenix");

const [url, name, countArg, totalArg] = process.argv.slice(2);
const count = Number(countArg);
const total = Number(totalArg);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
setTimeout(() => { out({ event: "gave_up", lastSeen, unacked: outbox.size }); process.exit(2); }, 40000).unref();

const client = `${name}-${Math.random().toString(36).slice(2, 10)}`;
let lastSeen = 0;          // the last seq delivered
let joins = 0;
const counts = { duplicates: 0, gaps: 0, resyncs: 0, acked: 0, pushes: 0 };
const delivered = [];      // bodies, in the order delivered
const outbox = new Map();  // id -> {body, join}: unacknowledged, in the order first sent
let next = 0;              // messages created so far

const socket = new Socket(url, {
  transport: WebSocket,
  heartbeatIntervalMs: 100,              // a blackhole is noticed in about 0.2 s
  reconnectAfterMs: () => 10 + Math.floor(Math.random() * 40),
  rejoinAfterMs: () => 20,
  timeout: 2000,
});
const channel = socket.channel("room:lobby", () => ({ name, client, last_seq: lastSeen }));

channel.on("new_msg", (payload) => {
  const seq = payload.seq;
  if (seq === lastSeen + 1) {
    lastSeen = seq;
    delivered.push(payload.body);
    maybeDone();
  } else if (seq <= lastSeen) {
    counts.duplicates += 1;
  } else {
    counts.gaps += 1;
  }
});

function push(id) {
  const entry = outbox.get(id);
  entry.join = joins;
  counts.pushes += 1;
  channel.push("new_msg", { body: entry.body, id }, 2000)
    .receive("ok", () => {
      if (outbox.delete(id)) counts.acked += 1;
      maybeDone();
    })
    .receive("error", (response) => out({ event: "push_error", id, response }));
  // "timeout": nothing to do; the rejoin after the reconnect pushes it again
}

function sendSome() {
  for (let i = 0; i < 25 && next < count; i++) {
    const id = `${client}-${next}`;
    outbox.set(id, { body: `${name}-${next}`, join: 0 });
    next += 1;
    if (channel.canPush()) push(id);  // else the next rejoin sends it, in order
  }
  if (next < count) setTimeout(sendSome, 10);
}

channel.join()
  .receive("ok", (response) => {
    joins += 1;
    if (response.resume === "resync") {
      counts.resyncs += 1;
      lastSeen = response.seq;
    }
    out({ event: "joined", joins, resume: response.resume });
    for (const [id, entry] of outbox) {
      if (entry.join < joins) push(id);   // sent on a dead connection, or never sent
    }
    if (joins === 1) sendSome();
  })
  .receive("error", (response) => out({ event: "join_error", response }));
socket.connect();

let finished = false;
function maybeDone() {
  if (finished || next < count || outbox.size || lastSeen < total) return;
  finished = true;
  out({ event: "done", client, lastSeen, delivered, joins, ...counts });
  socket.disconnect(() => process.exit(0));
}
