// One pusher-js client, driven by tests/test_pusher_js.py.
//
// Configuration from the environment: PUSHER_KEY, PUSHER_SECRET, PUSHER_PORT,
// PUSHER_USER (the user id this client authorises itself as) and optionally
// PUSHER_SHARED_SECRET (base64 key handed out for private-encrypted- channels).
// The authorisers sign with Node's crypto, as an app's auth endpoint would.
//
// Commands arrive as JSON lines on stdin; everything the library reports goes
// to stdout as JSON lines, which the test awaits.

"use strict";

const crypto = require("crypto");
const readline = require("readline");
const Pusher = require("pusher-js");

const env = process.env;
const KEY = env.PUSHER_KEY;
const SECRET = env.PUSHER_SECRET;
const USER = env.PUSHER_USER || "node-user";

function out(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

function sign(text) {
  return KEY + ":" + crypto.createHmac("sha256", SECRET).update(text).digest("hex");
}

function authorizeChannel({ socketId, channelName }, callback) {
  const answer = {};
  if (channelName.startsWith("presence-")) {
    answer.channel_data = JSON.stringify({ user_id: USER, user_info: { name: USER } });
    answer.auth = sign(socketId + ":" + channelName + ":" + answer.channel_data);
  } else {
    answer.auth = sign(socketId + ":" + channelName);
  }
  if (channelName.startsWith("private-encrypted-")) {
    answer.shared_secret = env.PUSHER_SHARED_SECRET;
  }
  callback(null, answer);
}

function authenticateUser({ socketId }, callback) {
  const userData = JSON.stringify({ id: USER, user_info: { name: USER } });
  callback(null, { auth: sign(socketId + "::user::" + userData), user_data: userData });
}

const pusher = new Pusher(KEY, {
  wsHost: "127.0.0.1",
  wsPort: Number(env.PUSHER_PORT),
  forceTLS: false,
  enabledTransports: ["ws"],
  cluster: "x",
  channelAuthorization: { customHandler: authorizeChannel },
  userAuthentication: { customHandler: authenticateUser },
});

pusher.connection.bind("state_change", (states) =>
  out({ type: "state", previous: states.previous, current: states.current })
);
pusher.connection.bind("connected", () =>
  out({ type: "connected", socket_id: pusher.connection.socket_id })
);
pusher.connection.bind("error", (error) =>
  out({ type: "error", error: error && error.error ? error.error : error })
);

const commands = {
  subscribe({ channel }) {
    const subscribed = pusher.subscribe(channel);
    subscribed.bind_global((event, data, metadata) =>
      out({ type: "event", channel, event, data, metadata: metadata || null })
    );
  },
  bind({ channel, event }) {
    // a per-event binding: the only one pusher-js hands the metadata (user_id)
    pusher.channel(channel).bind(event, (data, metadata) =>
      out({ type: "bound", channel, event, data, metadata: metadata || null })
    );
    out({ type: "bind_done", channel, event });
  },
  unsubscribe({ channel }) {
    pusher.unsubscribe(channel);
    out({ type: "unsubscribed", channel });
  },
  trigger({ channel, event, data }) {
    let ok = false;
    try {
      ok = pusher.channel(channel).trigger(event, data);
    } catch (error) {
      out({ type: "trigger_error", channel, error: String(error) });
      return;
    }
    out({ type: "triggered", channel, event, ok });
  },
  members({ channel }) {
    const members = [];
    pusher.channel(channel).members.each((member) => members.push(member));
    out({ type: "members", channel, members });
  },
  signin() {
    pusher.user.bind_global((event, data) => out({ type: "user_event", event, data }));
    pusher.signin();
    pusher.user.signinDonePromise.then(() => {
      out({ type: "signin_done", user_data: pusher.user.user_data });
      const own = pusher.user.serverToUserChannel;
      if (own) {
        own.bind("pusher:subscription_succeeded", () =>
          out({ type: "user_channel_subscribed", channel: own.name })
        );
      }
    });
  },
  disconnect() {
    pusher.disconnect();
  },
};

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  const command = JSON.parse(line);
  commands[command.op](command);
});
input.on("close", () => process.exit(0));
