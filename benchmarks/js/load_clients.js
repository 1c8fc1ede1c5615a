// Many Pusher-protocol clients in one Node process, for benchmarks/fanout_load.py.
// Raw `ws` connections (not pusher-js: 10 000 of those would measure pusher-js), each
// subscribed to one public channel.  Config: one JSON argument {urls, count, key, channel,
// concurrency}.  Prints JSON lines on stdout; reads commands on stdin, one per line:
//   expect <phase> <per_connection>  reset the counters; print "done" once every connection got that many
//   flush                            print "done" now with what arrived
//   quit                             close everything and exit
const WebSocket = require("ws");
const readline = require("readline");

const config = JSON.parse(process.argv[2]);
const now = () => performance.timeOrigin + performance.now();
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const sockets = [];
let ready = 0, failed = 0, closed = 0, opened = 0, inFlight = 0;
let phase = null, expected = 0, received = 0, samples = 0, latencies = new Float64Array(1024), first = 0, last = 0;
// Latency is read on every `sample`-th connection only (a JSON parse per frame costs the
// clients, which share the cores with the server); every connection counts its frames.
const sample = config.sample || 1;

function record(raw, sampled) {
  const t = now();
  received++;
  if (!first) first = t;
  last = t;
  if (sampled) {
    const data = JSON.parse(JSON.parse(raw).data);
    if (samples === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[samples++] = t - data.t;
  }
  if (phase && received === expected) done();
}

function done() {
  const sorted = latencies.slice(0, samples).sort();
  const at = (q) => (samples ? sorted[Math.min(samples - 1, Math.floor(q * samples))] : null);
  const quantiles = [];
  for (let i = 0; i <= 100; i++) quantiles.push(at(i / 100));
  const tail = [];   // finer tail: 99.0 .. 100 % by 0.1
  for (let i = 990; i <= 1000; i++) tail.push(at(i / 1000));
  print({ event: "done", phase, received, expected, samples, first, last, quantiles, tail, closed });
  phase = null;
}

function openOne(index) {
  inFlight++;
  const url = config.urls[index % config.urls.length] + `/app/${config.key}?protocol=7&client=bench&version=1`;
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const sampled = index % sample === 0;
  let settled = false;
  const settle = (ok) => {
    if (settled) return;
    settled = true;
    inFlight--;
    if (ok) ready++; else failed++;
    pump();
  };
  ws.on("message", (raw) => {
    if (settled) {          // subscribed: from now on only Tick events arrive
      record(raw, sampled);
      return;
    }
    const frame = JSON.parse(raw);
    if (frame.event === "pusher:connection_established") {
      ws.send(JSON.stringify({ event: "pusher:subscribe", data: { channel: config.channel } }));
    } else if (frame.event === "pusher_internal:subscription_succeeded") {
      settle(true);
    }
  });
  ws.on("error", () => settle(false));
  ws.on("close", () => { closed++; settle(false); });
  sockets.push(ws);
}

function pump() {
  while (inFlight < config.concurrency && opened < config.count) openOne(opened++);
  if (ready + failed === config.count && !pump.reported) {
    pump.reported = true;
    print({ event: "ready", ready, failed });
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, name, per] = line.trim().split(/\s+/);
  if (command === "expect") {
    phase = name; expected = Number(per) * ready; received = 0; samples = 0; first = 0; last = 0;
    print({ event: "expecting", phase, expected });
  } else if (command === "flush") {
    if (phase) done();
  } else if (command === "quit") {
    for (const ws of sockets) ws.terminate();
    print({ event: "bye" });
    process.exit(0);
  }
});

pump();
