// The official `socket.io-client` (npm, pinned in js/package-lock.json) against the course's
// channel server's Socket.IO bridge.  Run by tests/test_adapters.py:
//
//   NODE_PATH=js/node_modules node tests/js/socketio_client.js http://127.0.0.1:PORT NAME [ROOM]
//
// It connects with the default transports (HTTP long-polling, then the upgrade to
// WebSocket), emits `join` {room, name} with an ack, and prints one JSON object per line:
// {"event":"connected"}, {"event":"joined","ack":{...}}, {"event":"new_msg","payload":{...}},
// {"event":"typing",...}, {"event":"presence",...}, {"event":"ack","ack":{...}} for each
// command.  Commands on stdin: `say TEXT` (new_msg {body: TEXT}), `emit EVENT JSON` (any
// event, any payload, with an ack), `quit`.  It exits by itself after 20 s.
"use strict";
const { io } = require("socket.io-client");
const readline = require("readline");

const [url, name, room = "lobby"] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
setTimeout(() => { out({ event: "gave_up" }); process.exit(2); }, 20000).unref();

const socket = io(url, { reconnection: false });
const ack = (label) => (err, response) =>
  out(err ? { event: "ack_timeout", label } : { event: label, ack: response });
socket.on("connect", () => {
  out({ event: "connected", transport: socket.io.engine.transport.name });
  socket.timeout(5000).emit("join", { room, name }, ack("joined"));
});
socket.io.engine.on("upgrade", (transport) => out({ event: "upgraded", transport: transport.name }));
socket.on("disconnect", (reason) => out({ event: "disconnected", reason }));
for (const event of ["new_msg", "typing", "presence"]) {
  socket.on(event, (payload) => out({ event, payload }));
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.startsWith("say ")) {
    socket.timeout(5000).emit("new_msg", { body: line.slice(4) }, ack("ack"));
  } else if (line.startsWith("emit ")) {
    const [, event, json] = line.match(/^emit (\S+) ?(.*)$/);
    socket.timeout(5000).emit(event, json ? JSON.parse(json) : undefined, ack("ack"));
  } else if (line === "quit") {
    socket.disconnect();
    out({ event: "left" });
    process.exit(0);
  }
});
