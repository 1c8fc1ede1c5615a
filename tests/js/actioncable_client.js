// The official `@rails/actioncable` consumer (npm, pinned in js/package-lock.json) against
// the course's channel server.  Run by tests/test_adapters.py:
//
//   NODE_PATH=js/node_modules node tests/js/actioncable_client.js ws://127.0.0.1:PORT/cable NAME [ROOM] [CHANNEL]
//
// It subscribes to {channel: CHANNEL (default RoomChannel), room: ROOM (default lobby), name: NAME}
// and prints one JSON object per line on stdout: {"event":"connected"}, {"event":"rejected"},
// {"event":"received","message":{...}}, {"event":"disconnected"}.  Commands on stdin, one
// per line: `speak TEXT` (perform("speak", {body: TEXT})), `typing`, `raw JSON` (sends
// that object as it is through the consumer), `quit`.  It exits by itself after 20 s.
"use strict";
// Action Cable is written for browsers: in Node it needs a WebSocket class and the
// window's addEventListener (its ConnectionMonitor listens for "visibilitychange").
global.WebSocket = require("ws");
global.addEventListener = () => {};
global.removeEventListener = () => {};
const { createConsumer } = require("@rails/actioncable");
const readline = require("readline");

const [url, name, room = "lobby", channel = "RoomChannel"] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
setTimeout(() => { out({ event: "gave_up" }); process.exit(2); }, 20000).unref();

const consumer = createConsumer(url);
const subscription = consumer.subscriptions.create({ channel, room, name }, {
  connected() { out({ event: "connected", protocol: consumer.connection.getProtocol() }); },
  rejected() { out({ event: "rejected" }); },
  disconnected() { out({ event: "disconnected" }); },
  received(message) { out({ event: "received", message }); },
});

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.startsWith("speak ")) {
    subscription.perform("speak", { body: line.slice(6) });
  } else if (line === "typing") {
    subscription.perform("typing", {});
  } else if (line.startsWith("raw ")) {
    consumer.send(JSON.parse(line.slice(4)));
  } else if (line === "quit") {
    consumer.disconnect();
    out({ event: "left" });
    process.exit(0);
  }
});
