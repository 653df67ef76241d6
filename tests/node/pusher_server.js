// The official Pusher server SDK for Node.js (`pusher` on npm), pointed at Pushi's API
// port: one command per run, its result printed as one JSON line.
//
//   node pusher_server.js auth <socket_id>   signatures for a private and a presence
//                                             channel, and a user sign-in
//   node pusher_server.js publish            trigger, sendToUser, channel queries
//   node pusher_server.js terminate          terminateUserConnections
//
// Credentials and address come from PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET,
// PUSHER_HOST and PUSHER_PORT.
"use strict";

const Pusher = require("pusher");

const USER = "node-user";

const sdk = new Pusher({
  appId: process.env.PUSHER_APP_ID,
  key: process.env.PUSHER_KEY,
  secret: process.env.PUSHER_SECRET,
  host: process.env.PUSHER_HOST,
  port: process.env.PUSHER_PORT,
  useTLS: false,
});

async function body(response) {
  // the SDK resolves with a fetch Response; its JSON is what the test checks
  return { status: response.status, body: await response.json() };
}

async function main(command, socketId) {
  if (command === "auth") {
    return {
      private: sdk.authorizeChannel(socketId, "private-node"),
      presence: sdk.authorizeChannel(socketId, "presence-node", {
        user_id: USER,
        user_info: { name: "Node" },
      }),
      user: sdk.authenticateUser(socketId, { id: USER, name: "Node" }),
    };
  }
  if (command === "publish") {
    const triggered = await body(
      await sdk.trigger(["private-node", "presence-node"], "from-node", { n: 1 }, {
        info: "subscription_count",
      }),
    );
    const sent = await body(await sdk.sendToUser(USER, "note", { hi: true }));
    const channels = await body(
      await sdk.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } }),
    );
    const users = await body(await sdk.get({ path: "/channels/presence-node/users" }));
    return { triggered, sent, channels, users };
  }
  if (command === "terminate") {
    return { terminated: await body(await sdk.terminateUserConnections(USER)) };
  }
  throw new Error("unknown command " + command);
}

main(process.argv[2], process.argv[3]).then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.log(JSON.stringify({ error: String(error && (error.body || error.message || error)) }));
    process.exitCode = 1;
  },
);
