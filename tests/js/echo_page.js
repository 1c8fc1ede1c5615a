// Drives the official laravel-echo (window.Echo, the IIFE build) on pusher-js (window.Pusher).
// Everything the page sees goes into window.echoLog as {what, ...} records: the test reads
// them with page.evaluate; nothing is inserted into the document.
window.echoLog = [];
const log = (what, detail) => window.echoLog.push({ what, detail: detail === undefined ? null : detail });

// options: {key, wsPort, user, forge} ; forge=true signs private channels with a wrong secret
window.startEcho = (options) => {
  const config = {
    broadcaster: "pusher",
    key: options.key,
    cluster: "course",            // pusher-js 8 insists on one; wsHost/wsPort decide where it connects
    wsHost: "127.0.0.1",
    wsPort: options.wsPort,
    forceTLS: false,
    enabledTransports: ["ws"],
    auth: { headers: { "X-User": options.user } },   // the app's /broadcasting/auth reads it
  };
  if (options.forge) {
    config.channelAuthorization = {
      customHandler: (params, callback) => callback(null, { auth: options.key + ":" + "0".repeat(64) }),
    };
  }
  const echo = new Echo.default(config);
  const pusher = echo.connector.pusher;
  pusher.connection.bind("connected", () => log("connected", pusher.connection.socket_id));
  pusher.connection.bind("error", (error) => log("connection-error", error.data || null));
  const tag = options.tag || options.user;
  return { echo, tag };
};

window.listenPublic = (echo, channel, event) => {
  echo.channel(channel)
    .subscribed(() => log("subscribed", channel))
    .listen("." + event, (data) => log("event", { channel, event, data }));
};

window.listenPrivate = (echo, channel, event) => {
  echo.private(channel)
    .subscribed(() => log("subscribed", "private-" + channel))
    .error((error) => log("subscription-error", { channel: "private-" + channel, status: error.status || null }))
    .listen("." + event, (data) => log("event", { channel: "private-" + channel, event, data }));
};

window.joinPresence = (echo, channel) => {
  echo.join(channel)
    .here((users) => log("here", users.map((u) => u.name).sort()))
    .joining((user) => log("joining", user.name))
    .leaving((user) => log("leaving", user.name))
    .error((error) => log("subscription-error", { channel: "presence-" + channel, status: error.status || null }));
};

window.run = (options) => {
  const { echo } = window.startEcho(options);
  window.echo = echo;
  for (const step of options.steps) {
    if (step.kind === "public") window.listenPublic(echo, step.channel, step.event);
    if (step.kind === "private") window.listenPrivate(echo, step.channel, step.event);
    if (step.kind === "presence") window.joinPresence(echo, step.channel);
  }
};
