// The official `phoenix` client (npm, pinned in js/package-lock.json) against the course's
// channel server.  Run by tests/test_channels.py:
//
//   NODE_PATH=js/node_modules node tests/js/phoenix_client.js ws://127.0.0.1:PORT/socket NAME
//
// It prints one JSON object per line on stdout (what the test asserts on) and reads
// commands on stdin, one per line: `push TEXT` pushes new_msg {"body": TEXT} and prints
// the reply; `quit` leaves and exits.  It exits by itself after 20 s whatever happens.
"use strict";
const WebSocket = require("ws");
const { Socket, Presence } = require("phoenix");
const readline = require("readline");

const [url, name] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
setTimeout(() => { out({ event: "gave_up" }); process.exit(2); }, 20000).unref();

const socket = new Socket(url, {
  transport: WebSocket,
  reconnectAfterMs: () => 100,
  rejoinAfterMs: () => 100,
  heartbeatIntervalMs: 1000,
});
socket.onOpen(() => out({ event: "socket_open" }));
socket.onClose(() => out({ event: "socket_close" }));
socket.connect();

const channel = socket.channel("room:lobby", { name });
const presence = new Presence(channel);
presence.onSync(() => {
  const names = presence.list((key, { metas }) => ({ name: key, tabs: metas.length }));
  names.sort((a, b) => (a.name < b.name ? -1 : 1));
  out({ event: "presence", names });
});
channel.on("new_msg", (payload) => out({ event: "new_msg", payload }));
channel.on("typing", (payload) => out({ event: "typing", payload }));
channel.join()
  .receive("ok", (response) => out({ event: "joined", response }))
  .receive("error", (response) => out({ event: "join_error", response }))
  .receive("timeout", () => out({ event: "join_timeout" }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.startsWith("push ")) {
    channel.push("new_msg", { body: line.slice(5) }, 5000)
      .receive("ok", (response) => out({ event: "push_ok", response }))
      .receive("error", (response) => out({ event: "push_error", response }))
      .receive("timeout", () => out({ event: "push_timeout" }));
  } else if (line === "quit") {
    channel.leave().receive("ok", () => { out({ event: "left" }); socket.disconnect(() => process.exit(0)); });
  }
});
