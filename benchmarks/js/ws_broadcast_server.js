// The anchor of benchmarks/fanout_load.py: Node's `ws` broadcasting in one process, the
// idiomatic way (`for (const client of subscribers) client.send(frame)`), speaking just
// enough of the Pusher protocol for the load clients: connection_established, subscribe,
// ping.  The publisher connects to /control and sends {"event","channel","data"} objects;
// each is turned into the Pusher frame once and sent to every subscriber.
// Prints {"event":"listening","port":N}; stops on SIGTERM.
const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false, clientTracking: false });
const subscribers = new Set();
let next = 1;

wss.on("listening", () => process.stdout.write(JSON.stringify({ event: "listening", port: wss.address().port }) + "\n"));
wss.on("connection", (ws, request) => {
  ws.on("error", () => {});
  if (request.url.startsWith("/control")) {
    ws.on("message", (raw) => {
      const message = JSON.parse(raw);
      const frame = JSON.stringify({ event: message.event, channel: message.channel, data: JSON.stringify(message.data) });
      for (const client of subscribers) if (client.readyState === 1) client.send(frame);
    });
    return;
  }
  ws.send(JSON.stringify({ event: "pusher:connection_established",
                           data: JSON.stringify({ socket_id: `${process.pid}.${next++}`, activity_timeout: 120 }) }));
  ws.on("message", (raw) => {
    const message = JSON.parse(raw);
    if (message.event === "pusher:subscribe") {
      subscribers.add(ws);
      ws.send(JSON.stringify({ event: "pusher_internal:subscription_succeeded", channel: message.data.channel, data: "{}" }));
    } else if (message.event === "pusher:ping") {
      ws.send('{"event":"pusher:pong","data":"{}"}');
    }
  });
  ws.on("close", () => subscribers.delete(ws));
});
process.on("SIGTERM", () => process.exit(0));
