/*!
 * pushi.js - the browser client of Pushi, a self-hosted real-time event server.
 *
 * Plain JavaScript (ES5), no build step and no dependencies. Load it with a
 * <script> tag (it defines the global `Pushi`), with `require` (CommonJS) or
 * with an AMD loader. It speaks the Pushi dialect of the Pushi protocol:
 * `ws[s]://host:port/<app_key>`.
 *
 *     var pushi = new Pushi(APP_KEY, { baseUrl: "ws://localhost:9090" });
 *     pushi.bind("message", function (event, data, channel) { ... });
 *     var room = pushi.subscribe("presence-room", { channelData: { user_id: "u1" } });
 *     room.bind("member_added", function (event, member) { ... });
 *
 * Licensed under the Apache License, Version 2.0.
 */
(function (root, factory) {
    "use strict";
    if (typeof define === "function" && define.amd) {
        define([], factory);
    } else if (typeof module === "object" && module.exports) {
        module.exports = factory();
    } else {
        root.Pushi = factory();
    }
})(typeof self !== "undefined" ? self : this, function () {
    "use strict";

    var VERSION = "0.7.0";

    var GLOBAL =
        typeof globalThis !== "undefined"
            ? globalThis
            : typeof self !== "undefined"
              ? self
              : typeof window !== "undefined"
                ? window
                : {};

    /** Channel kinds, by the prefix of the channel's name (protocol.md §3). */
    var KINDS = [
        ["private-", "private"],
        ["presence-", "presence"],
        ["personal-", "personal"],
        ["peer-", "peer"]
    ];

    var DEFAULTS = {
        port: 9090,
        authEndpoint: "/auth",
        channel: "global",
        timeout: 10000,
        reconnect: {
            enabled: true,
            minDelay: 1000,
            maxDelay: 30000,
            factor: 2,
            jitter: 0.5,
            maxAttempts: Infinity
        }
    };

    var OPEN = 1; // WebSocket.OPEN
    var SEEN_LIMIT = 1000; // message ids remembered to drop duplicates

    // -- helpers ----------------------------------------------------------------

    function kindOf(name) {
        for (var index = 0; index < KINDS.length; index++) {
            if (name.indexOf(KINDS[index][0]) === 0) return KINDS[index][1];
        }
        return "public";
    }

    /** A payload as the application wants it: JSON when it parses, else as is. */
    function decode(value) {
        if (typeof value !== "string") return value;
        try {
            return JSON.parse(value);
        } catch (error) {
            return value;
        }
    }

    function extend(target) {
        for (var index = 1; index < arguments.length; index++) {
            var source = arguments[index];
            if (!source) continue;
            for (var key in source) {
                if (Object.prototype.hasOwnProperty.call(source, key)) {
                    target[key] = source[key];
                }
            }
        }
        return target;
    }

    /** A dictionary without a prototype: names like "__proto__" or "constructor"
     * (valid channel, event and user names) are plain keys there. */
    function map() {
        return Object.create(null);
    }

    function copy(value) {
        return extend({}, value);
    }

    /** Reports an exception of application code without breaking the client. */
    function report(error) {
        setTimeout(function () {
            throw error;
        }, 0);
    }

    function defaultBaseUrl() {
        var location = GLOBAL.location;
        var secure = location && location.protocol === "https:";
        var host = (location && location.hostname) || "localhost";
        if (host.indexOf(":") >= 0 && host.charAt(0) !== "[") host = "[" + host + "]";
        return (secure ? "wss" : "ws") + "://" + host + ":" + DEFAULTS.port;
    }

    function formEncode(fields) {
        var parts = [];
        for (var key in fields) {
            if (!Object.prototype.hasOwnProperty.call(fields, key)) continue;
            if (fields[key] === undefined || fields[key] === null) continue;
            parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(String(fields[key])));
        }
        return parts.join("&").replace(/%20/g, "+");
    }

    /**
     * A stored event record (`latest`, personal history) as the event it stored:
     * the delivered message (`record.data`: channel, event, data and any other
     * field of the publish) with its `mid` and `timestamp`, `data` decoded, and
     * the record itself as `record` (id, owner_id, created...).
     */
    function fromRecord(record) {
        if (!record || typeof record !== "object") return record;
        var inner = record.data;
        var event;
        if (inner && typeof inner === "object" && !Array.isArray(inner)) {
            event = copy(inner);
            if (event.channel === undefined) event.channel = record.channel;
            if (record.mid !== undefined) event.mid = record.mid;
            if (record.timestamp !== undefined) event.timestamp = record.timestamp;
            event.data = decode(inner.data);
            event.record = record;
        } else {
            event = copy(record); // a server that stores the message itself
            event.data = decode(record.data);
        }
        return event;
    }

    function fromRecords(records) {
        var result = [];
        for (var index = 0; records && index < records.length; index++) {
            result.push(fromRecord(records[index]));
        }
        return result;
    }

    /** Python's truth of a JSON value (the server reads `"peer"` that way). */
    function truthy(value) {
        if (Array.isArray(value)) return value.length > 0;
        if (value && typeof value === "object") return Object.keys(value).length > 0;
        return !!value;
    }

    /** Orders strings by code point, as the server (Python) sorts them. */
    function compareCodePoints(first, second) {
        var length = Math.min(first.length, second.length);
        for (var index = 0; index < length; index++) {
            var a = first.charCodeAt(index);
            var b = second.charCodeAt(index);
            if (a === b) continue;
            // UTF-16 puts surrogates (astral code points) below U+E000..U+FFFF
            if (a >= 0xd800 && b >= 0xd800) {
                a = a >= 0xe000 ? a - 0x800 : a + 0x2000;
                b = b >= 0xe000 ? b - 0x800 : b + 0x2000;
            }
            return a < b ? -1 : 1;
        }
        return first.length - second.length;
    }

    // whitespace (Python's `\s`; JavaScript's also has U+FEFF, which Python's
    // has not) and control characters: never in a channel name
    var UNFIT = /[\s\x00-\x1f\x7f-\x9f]/;

    /** Whether the server takes a Pushi channel name: 1 to 200 characters, none unfit. */
    function validName(name) {
        var points = name.replace(/[\ud800-\udbff][\udc00-\udfff]/g, "_").length;
        return points >= 1 && points <= 200 && !UNFIT.test(name.replace(/\ufeff/g, "_"));
    }

    /** The pair channel of two members of `presence-<base>`, or null when unfit. */
    function peerName(base, first, second) {
        var pair = [first, second].sort(compareCodePoints);
        var name = "peer-" + base + ":" + pair[0] + "&" + pair[1];
        return first !== second && validName(name) ? name : null;
    }

    // -- Emitter: bind / unbind / trigger ----------------------------------------

    function Emitter() {
        this._handlers = map();
    }

    /** Calls `fn(event, data, channel, message)` whenever `event` fires ("*": every event). */
    Emitter.prototype.bind = function (event, fn) {
        if (typeof fn !== "function") throw new TypeError("bind needs a function");
        (this._handlers[event] = this._handlers[event] || []).push(fn);
        return this;
    };

    /** Removes a handler; without `fn` every handler of `event`; without both, all. */
    Emitter.prototype.unbind = function (event, fn) {
        if (event === undefined) {
            this._handlers = map();
        } else if (fn === undefined) {
            delete this._handlers[event];
        } else {
            var list = this._handlers[event] || [];
            for (var index = list.length - 1; index >= 0; index--) {
                if (list[index] === fn) list.splice(index, 1);
            }
            if (!list.length) delete this._handlers[event];
        }
        return this;
    };

    /** Runs the handlers of `event` (and of "*" when `wildcard`); one failing never stops the rest. */
    Emitter.prototype._emit = function (event, data, channel, message, wildcard) {
        var list = (this._handlers[event] || []).slice();
        if (wildcard) list = list.concat(this._handlers["*"] || []);
        for (var index = 0; index < list.length; index++) {
            try {
                list[index].call(this, event, data, channel === undefined ? null : channel, message);
            } catch (error) {
                report(error);
            }
        }
    };

    // -- Channel -----------------------------------------------------------------

    /**
     * One channel of a Pushi connection. Made by `pushi.subscribe(name)`, or by the
     * client itself for the peer channels the server joins it to (`implicit`).
     * Fires `subscribed`, `member_added`, `member_removed`, `error`,
     * `unsubscribed` and every event delivered on it.
     */
    function Channel(pushi, name, options) {
        Emitter.call(this);
        this.pushi = pushi;
        this.name = name;
        this.kind = kindOf(name);
        this.options = options || {};
        this.state = "pending"; // pending, subscribing, subscribed, failed, unsubscribed
        this.subscribed = false;
        this.implicit = false; // joined by the server (peer channels), not by us
        this.members = map(); // presence: user_id -> channel_data
        this._flagged = map(); // presence: user ids seen with "peer" in their data
        this.me = null; // presence: our own channel_data
        this.userId = null; // presence: our own user_id; peer: ours in that pair
        this.aliases = []; // personal: channels this user follows
        this.presence = null; // peer: the presence channel it came from
        this.users = null; // peer: the two user ids
        this.peerUser = null; // peer: the other user's id
        this._token = 0; // invalidates a pending auth when it changes
        this._sent = false; // pusher:subscribe went out on the current socket
        this._channelData = null;
        this._latest = [];
    }

    Channel.prototype = Object.create(Emitter.prototype);
    Channel.prototype.constructor = Channel;

    /**
     * Publishes a client event on the channel: `echo` (false) also delivers it to
     * this connection, `persist` (true) stores it for `latest`. Returns whether it
     * was sent (false while not subscribed or disconnected).
     */
    Channel.prototype.send = function (event, data, echo, persist) {
        if (typeof event !== "string" || !event) throw new TypeError("send needs an event name");
        if (event.indexOf("pusher:") === 0 || event.indexOf("pusher_internal:") === 0) {
            throw new Error("event names starting with pusher: are reserved");
        }
        if (!this.subscribed) return false;
        return this.pushi._send({
            event: event,
            channel: this.name,
            data: data,
            echo: echo === true,
            persist: persist !== false
        });
    };

    Channel.prototype.trigger = Channel.prototype.send;

    /**
     * Asks for stored events of the channel, newest first: `callback(events)`, or
     * `callback(null, error)` when it cannot be answered. `latest(callback)` asks
     * for the last 10. Without a callback it returns a Promise. Each event is
     * shaped like a delivered one (`channel`, `event`, `data` decoded, `mid`,
     * `timestamp`, other published fields), with the server's stored record as
     * `record` (`id`, `owner_id`: the sender's socket id, `created`...).
     */
    Channel.prototype.latest = function (skip, count, callback) {
        if (typeof skip === "function") {
            callback = skip;
            skip = 0;
            count = 10;
        } else if (typeof count === "function") {
            callback = count;
            count = 10;
        }
        var self = this;
        var promise = null;
        if (typeof callback !== "function" && typeof Promise === "function") {
            promise = new Promise(function (resolve, reject) {
                callback = function (events, error) {
                    if (error) reject(error);
                    else resolve(events);
                };
            });
        }
        callback = callback || function () {};
        var request = {
            event: "pusher:latest",
            data: { channel: this.name, skip: skip || 0, count: count == null ? 10 : count }
        };
        if (!this.subscribed || !this.pushi._send(request)) {
            setTimeout(function () {
                callback(null, { code: 4009, message: "channel " + self.name + " is not subscribed" });
            }, 0);
        } else {
            this._latest.push(callback);
        }
        return promise;
    };

    /** Leaves the channel (and forgets it: handlers bound to it stay with this object). */
    Channel.prototype.unsubscribe = function () {
        this.pushi.unsubscribe(this.name);
        return this;
    };

    /** The number of users present (presence channels). */
    Channel.prototype.memberCount = function () {
        return Object.keys(this.members).length;
    };

    Channel.prototype._failLatest = function (error) {
        var pending = this._latest;
        this._latest = [];
        for (var index = 0; index < pending.length; index++) {
            try {
                pending[index](null, error);
            } catch (exception) {
                report(exception);
            }
        }
    };

    Channel.prototype._reset = function (state) {
        this.state = state;
        this.subscribed = false;
        this._sent = false;
        this._token++;
        this._failLatest({ code: 4000, message: "connection closed" });
    };

    // -- Pushi -------------------------------------------------------------------

    /**
     * A connection to a Pushi server for one app.
     *
     * Options (all optional):
     * - `baseUrl`: WebSocket server, default `ws(s)://<page host>:9090`
     * - `authEndpoint`: URL POSTed (form-encoded `socket_id`, `channel_name`,
     *   `channel_data`) for protected channels, default `/auth`; it answers JSON
     *   `{auth, channel_data?}`
     * - `authHeaders`, `authParams`: extra headers / form fields for that request
     * - `authWithCredentials`: send cookies to a cross-origin auth endpoint
     * - `authorizer(request, callback)`: replaces the HTTP request; `request` has
     *   `socketId`, `channel`, `channelData`; call `callback(error, {auth, channel_data})`
     *   or return a Promise of that object
     * - `timeout`: milliseconds for the handshake, auth requests and pong (10000)
     * - `activityTimeout`: milliseconds of silence before a ping (the server's
     *   `activity_timeout` when it sends one, else 120 s)
     * - `channel`: public channel joined on connect, default "global"; false: none
     * - `reconnect`: false, or `{minDelay, maxDelay, factor, jitter, maxAttempts}`
     * - `autoConnect`: connect at once (true)
     * - `WebSocket`: a WebSocket constructor (outside browsers)
     */
    function Pushi(appKey, options) {
        if (!(this instanceof Pushi)) return new Pushi(appKey, options);
        if (typeof appKey !== "string" || !appKey) throw new TypeError("Pushi needs an app key");
        Emitter.call(this);
        options = options || {};
        this.appKey = appKey;
        this.options = options;
        this.baseUrl = String(options.baseUrl || defaultBaseUrl()).replace(/\/+$/, "");
        this.url = this.baseUrl + "/" + encodeURIComponent(appKey);
        this.authEndpoint = options.authEndpoint || DEFAULTS.authEndpoint;
        this.timeout = options.timeout > 0 ? options.timeout : DEFAULTS.timeout;
        this.reconnect =
            options.reconnect === false
                ? extend({}, DEFAULTS.reconnect, { enabled: false })
                : extend({}, DEFAULTS.reconnect, options.reconnect);
        this.state = "initialized"; // connecting, connected, disconnected
        this.socket = null;
        this.socketId = null;
        this.channels = map(); // name -> Channel
        this.attempts = 0; // failed connection attempts since the last success
        this.retrying = false; // a reconnection is scheduled
        this._wanted = false; // connect() called and not disconnect()
        this._timers = map();
        this._seen = map();
        this._seenOrder = [];
        this._activityTimeout = null;

        var self = this;
        if (GLOBAL.addEventListener) {
            // back on the network: try now instead of waiting out the back-off
            GLOBAL.addEventListener("online", function () {
                if (self.retrying) self._retryNow();
            });
        }
        var initial = options.channel === undefined ? DEFAULTS.channel : options.channel;
        if (initial) this.subscribe(String(initial));
        if (options.autoConnect !== false) this.connect();
    }

    Pushi.prototype = Object.create(Emitter.prototype);
    Pushi.prototype.constructor = Pushi;

    Pushi.VERSION = VERSION;
    Pushi.Channel = Channel;
    Pushi.decode = decode;
    Pushi.kindOf = kindOf;
    Pushi.fromRecord = fromRecord;

    /** The peer channel of two users of a presence channel (null: no such channel). */
    Pushi.peerChannel = function (presence, first, second) {
        if (kindOf(String(presence)) !== "presence") return null;
        return peerName(String(presence).slice("presence-".length), String(first), String(second));
    };

    /** Opens the connection (done by the constructor unless `autoConnect` is false). */
    Pushi.prototype.connect = function () {
        this._wanted = true;
        if (this.socket) return this;
        this._clearTimer("retry");
        this.retrying = false;
        this._open();
        return this;
    };

    /** Closes the connection for good: no reconnection until `connect()`. */
    Pushi.prototype.disconnect = function () {
        this._wanted = false;
        this._clearTimer("retry");
        this.retrying = false;
        if (this.socket) {
            this._drop(this.socket, 1000, "client disconnect", false);
        } else if (this.state !== "disconnected" && this.state !== "initialized") {
            this._setState("disconnected", { code: 1000, reason: "client disconnect", reconnect: false });
        }
        return this;
    };

    /**
     * Subscribes to a channel (or returns the one already subscribed). Options:
     * `channelData` (presence: object or JSON string sent to the auth endpoint as
     * `channel_data`), `replay` (personal: deliver stored events not seen yet, true).
     */
    Pushi.prototype.subscribe = function (name, options) {
        if (typeof name !== "string" || !name) throw new TypeError("subscribe needs a channel name");
        var channel = this.channels[name];
        if (channel) {
            if (options) extend(channel.options, options);
            return channel;
        }
        channel = new Channel(this, name, options);
        this.channels[name] = channel;
        if (this.socketId) this._subscribeChannel(channel);
        return channel;
    };

    /**
     * Leaves a channel. Leaving a presence channel also leaves the peer channels
     * it gave (the server does the same); a peer channel can be left on its own.
     */
    Pushi.prototype.unsubscribe = function (name) {
        var channel = this.channels[name];
        if (!channel) return this;
        delete this.channels[name];
        var joined = channel._sent;
        channel._reset("unsubscribed");
        if (joined) this._send({ event: "pusher:unsubscribe", data: { channel: name } });
        if (channel.kind === "presence") this._forgetPeersOf(name);
        channel._emit("unsubscribed", {}, name);
        return this;
    };

    /** The Channel object of a name, or null. */
    Pushi.prototype.channel = function (name) {
        return Object.prototype.hasOwnProperty.call(this.channels, name) ? this.channels[name] : null;
    };

    /** Every Channel object, in no particular order. */
    Pushi.prototype.allChannels = function () {
        var result = [];
        for (var name in this.channels) result.push(this.channels[name]);
        return result;
    };

    // -- connection lifecycle ------------------------------------------------------

    Pushi.prototype._setState = function (state, info) {
        var previous = this.state;
        this.state = state;
        this._emit("state_change", { previous: previous, current: state }, null);
        this._emit(state, info || {}, null);
    };

    Pushi.prototype._open = function () {
        var self = this;
        var Socket = this.options.WebSocket || GLOBAL.WebSocket;
        this._setState("connecting", { url: this.url, attempt: this.attempts + 1 });
        if (!this._wanted || this.socket) return; // a handler changed its mind
        if (typeof Socket !== "function") {
            this._wanted = false;
            this._emit("error", { code: 4000, message: "no WebSocket implementation" }, null);
            this._setState("disconnected", { code: 4000, reason: "no WebSocket", reconnect: false });
            return;
        }
        var socket;
        try {
            socket = new Socket(this.url);
        } catch (error) {
            this._emit("error", { code: 4000, message: String(error && error.message) }, null);
            this._closed(null, 1006, String(error && error.message));
            return;
        }
        this.socket = socket;
        socket.onmessage = function (event) {
            if (self.socket === socket) self._receive(event.data);
        };
        socket.onclose = function (event) {
            if (self.socket === socket) self._closed(socket, event.code, event.reason);
        };
        socket.onerror = function () {}; // the close event that follows says it all
        this._setTimer("handshake", this.timeout, function () {
            self._drop(socket, 1006, "connection timed out", true);
        });
    };

    /** Abandons a socket now (without waiting for its closing handshake). */
    Pushi.prototype._drop = function (socket, code, reason, retry) {
        socket.onmessage = socket.onclose = socket.onerror = null;
        try {
            socket.close(code === 1000 ? 1000 : undefined);
        } catch (error) {
            /* already closing */
        }
        if (this.socket === socket) this._closed(socket, code, reason, retry);
    };

    Pushi.prototype._closed = function (socket, code, reason, retry) {
        this.socket = null;
        this.socketId = null;
        this._clearTimer("handshake");
        this._clearTimer("activity");
        this._clearTimer("pong");
        for (var name in this.channels) this.channels[name]._reset("pending");
        code = code || 1006;
        // Pusher's ranges: 4000-4099 never again, 4200-4299 at once, else back off
        var fatal = code >= 4000 && code < 4100;
        retry = retry !== false && this._wanted && !fatal && this.reconnect.enabled;
        if (retry && this.attempts >= this.reconnect.maxAttempts) retry = false;
        var delay = retry ? (code >= 4200 && code < 4300 ? 0 : this._backoff(this.attempts)) : null;
        if (!retry) this._wanted = false;
        this.retrying = retry;
        if (retry) {
            var self = this;
            this.attempts++;
            this._setTimer("retry", delay, function () {
                self.retrying = false;
                if (self._wanted && !self.socket) self._open();
            });
        }
        this._setState("disconnected", {
            code: code,
            reason: reason || "",
            reconnect: retry,
            delay: delay
        });
    };

    /** Exponential back-off with jitter: within [base * (1 - jitter), base], base <= maxDelay. */
    Pushi.prototype._backoff = function (attempt) {
        var settings = this.reconnect;
        var base = Math.min(settings.maxDelay, settings.minDelay * Math.pow(settings.factor, attempt));
        var jitter = Math.min(1, Math.max(0, settings.jitter));
        return Math.max(0, Math.round(base * (1 - jitter * Math.random())));
    };

    Pushi.prototype._retryNow = function () {
        this._clearTimer("retry");
        this.retrying = false;
        if (this._wanted && !this.socket) this._open();
    };

    Pushi.prototype._setTimer = function (name, delay, fn) {
        this._clearTimer(name);
        var timers = this._timers;
        timers[name] = setTimeout(function () {
            delete timers[name];
            fn();
        }, delay);
    };

    Pushi.prototype._clearTimer = function (name) {
        if (this._timers[name] !== undefined) {
            clearTimeout(this._timers[name]);
            delete this._timers[name];
        }
    };

    /** After a silence of activity_timeout, ping; no answer within `timeout`: reconnect. */
    Pushi.prototype._alive = function () {
        var self = this;
        var socket = this.socket;
        this._clearTimer("pong");
        if (!this._activityTimeout) return;
        this._setTimer("activity", this._activityTimeout, function () {
            self._send({ event: "pusher:ping", data: {} });
            self._setTimer("pong", self.timeout, function () {
                if (self.socket === socket) self._drop(socket, 4201, "pong not received", true);
            });
        });
    };

    Pushi.prototype._send = function (message) {
        var socket = this.socket;
        if (!socket || socket.readyState !== OPEN || !this.socketId) return false;
        socket.send(JSON.stringify(message));
        return true;
    };

    // -- incoming messages ---------------------------------------------------------

    Pushi.prototype._receive = function (text) {
        var message;
        try {
            message = JSON.parse(text);
        } catch (error) {
            return;
        }
        if (!message || typeof message.event !== "string") return;
        if (this.socketId) this._alive();
        switch (message.event) {
            case "pusher:connection_established":
                return this._established(decode(message.data) || {});
            case "pusher:ping":
                this._send({ event: "pusher:pong", data: {} });
                return;
            case "pusher:pong":
                return;
            case "pusher:error":
                return this._error(message);
            case "pusher_internal:subscription_succeeded":
                return this._subscribed(message);
            case "pusher_internal:unsubscription_succeeded":
                return;
            case "pusher_internal:latest":
                return this._latestReply(message);
            case "pusher:member_added":
            case "pusher_internal:member_added":
                return this._member(message, true);
            case "pusher:member_removed":
            case "pusher_internal:member_removed":
                return this._member(message, false);
            default:
                if (message.event.indexOf("pusher_internal:") === 0) return;
                return this._delivered(message, false);
        }
    };

    Pushi.prototype._established = function (data) {
        this._clearTimer("handshake");
        this.socketId = data.socket_id;
        this.attempts = 0;
        var activity = this.options.activityTimeout || (data.activity_timeout || 120) * 1000;
        this._activityTimeout = activity;
        this._alive();
        for (var name in this.channels) {
            var channel = this.channels[name];
            if (!channel.implicit) this._subscribeChannel(channel);
        }
        this._setState("connected", { socket_id: this.socketId });
    };

    Pushi.prototype._subscribeChannel = function (channel) {
        var self = this;
        var name = channel.name;
        var socketId = this.socketId;
        var token = ++channel._token;
        channel.state = "subscribing";
        channel.subscribed = false;
        if (channel.kind === "public") {
            channel._sent = this._send({ event: "pusher:subscribe", data: { channel: name } });
            return;
        }
        var channelData = channel.options.channelData;
        if (channelData !== undefined && channelData !== null && typeof channelData !== "string") {
            channelData = JSON.stringify(channelData);
        }
        this._authorize(socketId, name, channelData, function (error, result) {
            if (self.socketId !== socketId || channel._token !== token || self.channels[name] !== channel) {
                return; // the socket changed or the channel was left meanwhile
            }
            if (error) {
                channel.state = "failed";
                if (channel.kind === "presence") self._forgetPeersOf(name);
                channel._emit("error", error, name);
                self._emit("error", error, name);
                return;
            }
            var data = { channel: name, auth: result.auth };
            if (channel.kind === "presence") {
                var signed = result.channel_data != null ? result.channel_data : channelData;
                if (signed != null) {
                    data.channel_data = typeof signed === "string" ? signed : JSON.stringify(signed);
                }
            }
            channel._channelData = data.channel_data || null;
            channel._sent = self._send({ event: "pusher:subscribe", data: data });
        });
    };

    /** Gets `{auth, channel_data?}` for a protected channel: authorizer or auth endpoint. */
    Pushi.prototype._authorize = function (socketId, channelName, channelData, callback) {
        var done = false;
        var timeout = this.timeout;
        function finish(error, result) {
            if (done) return;
            done = true;
            if (!error && (!result || typeof result.auth !== "string")) {
                error = { code: 4009, message: "auth answer has no auth string" };
            }
            callback(error || null, error ? null : result);
        }
        var authorizer = this.options.authorizer;
        if (typeof authorizer === "function") {
            var request = {
                socketId: socketId,
                socket_id: socketId,
                channel: channelName,
                channelName: channelName,
                channelData: channelData == null ? null : channelData
            };
            try {
                var returned = authorizer(request, function (error, result) {
                    finish(error ? { code: 4009, message: String(error.message || error) } : null, result);
                });
                if (returned && typeof returned.then === "function") {
                    returned.then(
                        function (result) {
                            finish(null, result);
                        },
                        function (error) {
                            finish({ code: 4009, message: String((error && error.message) || error) });
                        }
                    );
                }
            } catch (error) {
                finish({ code: 4009, message: String((error && error.message) || error) });
            }
            return;
        }
        var fields = extend({}, this.options.authParams, {
            socket_id: socketId,
            channel_name: channelName,
            channel_data: channelData
        });
        var headers = extend(
            { "Content-Type": "application/x-www-form-urlencoded" },
            this.options.authHeaders
        );
        post(this.authEndpoint, formEncode(fields), headers, timeout, !!this.options.authWithCredentials, finish);
    };

    /** POSTs a form and expects JSON: XMLHttpRequest in browsers, else fetch. */
    function post(url, body, headers, timeout, withCredentials, callback) {
        function parse(status, text) {
            if (status < 200 || status >= 300) {
                return callback({ code: 4009, status: status, message: "auth endpoint answered " + status });
            }
            var result;
            try {
                result = JSON.parse(text);
            } catch (error) {
                return callback({ code: 4009, status: status, message: "auth endpoint answered no JSON" });
            }
            callback(null, result);
        }
        if (typeof GLOBAL.XMLHttpRequest === "function") {
            var request = new GLOBAL.XMLHttpRequest();
            request.open("POST", url, true);
            request.timeout = timeout;
            request.withCredentials = withCredentials;
            for (var name in headers) request.setRequestHeader(name, headers[name]);
            request.onload = function () {
                parse(request.status, request.responseText);
            };
            request.onerror = function () {
                callback({ code: 4009, status: 0, message: "auth request failed" });
            };
            request.ontimeout = function () {
                callback({ code: 4009, status: 0, message: "auth request timed out" });
            };
            request.send(body);
        } else if (typeof GLOBAL.fetch === "function") {
            var timer = setTimeout(function () {
                callback({ code: 4009, status: 0, message: "auth request timed out" });
            }, timeout);
            GLOBAL.fetch(url, {
                method: "POST",
                headers: headers,
                body: body,
                credentials: withCredentials ? "include" : "same-origin"
            }).then(
                function (response) {
                    return response.text().then(function (text) {
                        clearTimeout(timer);
                        parse(response.status, text);
                    });
                },
                function (error) {
                    clearTimeout(timer);
                    callback({ code: 4009, status: 0, message: "auth request failed: " + error });
                }
            );
        } else {
            callback({ code: 4009, status: 0, message: "no HTTP client: set the authorizer option" });
        }
    }

    Pushi.prototype._subscribed = function (message) {
        var name = message.channel;
        var info = decode(message.data) || {};
        var channel = this.channels[name];
        if (!channel) return; // a reply for a channel left meanwhile
        channel.state = "subscribed";
        channel.subscribed = true;
        if (channel.kind === "presence") {
            channel.members = map();
            channel._flagged = map();
            var members = info.members || {};
            for (var userId in members) {
                var data = decode(members[userId]);
                channel.members[userId] = data;
                if (data && typeof data === "object" && truthy(data.peer)) {
                    channel._flagged[userId] = true;
                }
            }
            var me = decode(channel._channelData);
            channel.me = me && typeof me === "object" ? me : null;
            channel.userId = channel.me && channel.me.user_id != null ? String(channel.me.user_id) : null;
        } else if (channel.kind === "personal") {
            channel.aliases = (info.alias || []).slice();
        } else if (channel.kind === "peer") {
            this._peerUsers(channel);
        }
        channel._emit("subscribed", info, name, message);
        this._emit("subscribed", info, name, message);
        if (this.channels[name] !== channel || !channel.subscribed) return; // left in a handler
        if (channel.kind === "presence") this._peersJoined(channel);
        if (channel.kind === "personal" && info.events && channel.options.replay !== false) {
            var stored = fromRecords(info.events).reverse(); // oldest first
            for (var index = 0; index < stored.length; index++) {
                stored[index].stored = true;
                this._delivered(stored[index], true);
            }
        }
    };

    /*
     * Peer channels. The server joins us to `peer-<base>:<a>&<b>` (ids sorted) with
     * no message of its own; we follow its rules from the presence channel's data:
     * - our subscription with "peer" in our channel_data joins us with every other
     *   member (the reply's `members`);
     * - a user's arrival (`member_added`) with "peer" in its channel_data joins us
     *   with it, whatever our own flag;
     * - the departure (`member_removed`) of a user with "peer" (in the data of any
     *   of its connections we saw) leaves its pair;
     * - leaving the presence channel leaves every pair it gave us.
     */

    /** The pair channel of ours with `userId` in a presence channel (null: none). */
    Pushi.prototype._peerName = function (presence, userId) {
        if (presence.userId === null || userId === null) return null;
        return peerName(presence.name.slice("presence-".length), presence.userId, String(userId));
    };

    /** After our presence reply: the pairs it made, and none of an earlier connection. */
    Pushi.prototype._peersJoined = function (presence) {
        var wanted = map();
        if (presence.me && truthy(presence.me.peer)) {
            for (var userId in presence.members) {
                var name = this._peerName(presence, userId);
                if (name) wanted[name] = userId;
            }
        }
        var stale = [];
        for (var other in this.channels) {
            var channel = this.channels[other];
            if (channel.implicit && channel.presence === presence.name && !(other in wanted)) {
                stale.push(channel);
            }
        }
        for (var index = 0; index < stale.length; index++) this._forgetPeer(stale[index]);
        for (var peer in wanted) {
            if (this.channels[presence.name] !== presence) return; // left in a handler
            this._joinPeer(presence, peer, wanted[peer]);
        }
    };

    /** A pair channel the server joined us to: a Channel object, subscribed. */
    Pushi.prototype._joinPeer = function (presence, name, userId) {
        var channel = this.channels[name];
        var created = !channel;
        if (created) {
            channel = new Channel(this, name, {});
            channel.implicit = true;
            this.channels[name] = channel;
        } else if (!channel.implicit || channel.subscribed) {
            return; // subscribed by us (its own reply tells), or already there
        }
        channel.presence = presence.name;
        channel.users = [presence.userId, String(userId)].sort(compareCodePoints);
        channel.userId = presence.userId;
        channel.peerUser = String(userId);
        channel.state = "subscribed";
        channel.subscribed = true;
        channel._sent = true;
        var info = { name: name, members: {}, alias: [], events: [] };
        channel._emit("subscribed", info, name, null);
        this._emit("subscribed", info, name, null);
        if (created && this.channels[name] === channel) this._emit("peer", channel, name, null);
    };

    /** A pair channel the server took us out of (or that ends with its presence). */
    Pushi.prototype._forgetPeer = function (channel) {
        if (this.channels[channel.name] !== channel) return;
        delete this.channels[channel.name];
        channel._reset("unsubscribed");
        channel._emit("unsubscribed", {}, channel.name);
    };

    Pushi.prototype._forgetPeersOf = function (presenceName) {
        var peers = [];
        for (var name in this.channels) {
            var channel = this.channels[name];
            if (channel.implicit && channel.presence === presenceName) peers.push(channel);
        }
        for (var index = 0; index < peers.length; index++) this._forgetPeer(peers[index]);
    };

    /** Who is who on a peer channel we subscribed to ourselves. */
    Pushi.prototype._peerUsers = function (channel) {
        for (var name in this.channels) {
            var presence = this.channels[name];
            if (presence.kind !== "presence" || presence.userId === null) continue;
            var prefix = "peer-" + name.slice("presence-".length) + ":";
            if (channel.name.indexOf(prefix) !== 0) continue;
            var pair = channel.name.slice(prefix.length);
            var me = presence.userId;
            var other = null;
            if (pair.indexOf(me + "&") === 0) other = pair.slice(me.length + 1);
            else if (pair.slice(-me.length - 1) === "&" + me) other = pair.slice(0, -me.length - 1);
            if (other && peerName(name.slice("presence-".length), me, other) === channel.name) {
                channel.presence = name;
                channel.users = [me, other].sort(compareCodePoints);
                channel.userId = me;
                channel.peerUser = other;
                return;
            }
        }
    };

    Pushi.prototype._member = function (message, added) {
        var name = message.channel;
        var channel = this.channels[name];
        var member = decode(message.member !== undefined ? message.member : message.data) || {};
        if (typeof member !== "object") member = { user_id: member };
        var userId = member.user_id != null ? String(member.user_id) : null;
        if (channel && userId !== null) {
            // a user that had "peer" on any connection we saw ends its pairs
            var flagged = truthy(member.peer) || channel._flagged[userId] === true;
            if (added) {
                channel.members[userId] = member;
                if (flagged) channel._flagged[userId] = true;
            } else {
                delete channel.members[userId];
                delete channel._flagged[userId];
            }
            // joining takes the newcomer's own flag
            var pairs = channel.kind === "presence" && channel.subscribed;
            var peer = pairs && (added ? truthy(member.peer) : flagged) ? this._peerName(channel, userId) : null;
            if (peer && added) this._joinPeer(channel, peer, userId);
            else if (peer && this.channels[peer] && this.channels[peer].implicit) {
                this._forgetPeer(this.channels[peer]);
            }
        }
        var event = added ? "member_added" : "member_removed";
        if (channel) channel._emit(event, member, name, message);
        this._emit(event, member, name, message);
    };

    Pushi.prototype._latestReply = function (message) {
        var channel = this.channels[message.channel];
        if (!channel || !channel._latest.length) return;
        var info = decode(message.data) || {};
        var callback = channel._latest.shift();
        try {
            callback(fromRecords(info.events || []));
        } catch (error) {
            report(error);
        }
    };

    Pushi.prototype._error = function (message) {
        var error = decode(message.data) || {};
        if (typeof error !== "object") error = { code: 4000, message: String(error) };
        var name = message.channel || null;
        var channel = name ? this.channels[name] : null;
        if (channel) {
            if (channel.state === "subscribing") {
                channel.state = "failed";
                if (channel.kind === "presence") this._forgetPeersOf(name);
            }
            channel._emit("error", error, name, message);
        }
        this._emit("error", error, name, message);
    };

    /** Delivers an event to its channel, to personal channels aliasing it, and globally. */
    Pushi.prototype._delivered = function (message, stored) {
        if (message.mid) {
            if (this._seen[message.mid]) return; // a replay overlapping a live event
            this._seen[message.mid] = true;
            this._seenOrder.push(message.mid);
            if (this._seenOrder.length > SEEN_LIMIT) delete this._seen[this._seenOrder.shift()];
        }
        var name = message.channel;
        var event = message.event;
        var meta = stored ? message : copy(message);
        if (!stored) meta.data = decode(message.data);
        var data = meta.data;
        var channel = name ? this.channels[name] : null;
        if (channel) channel._emit(event, data, name, meta, true);
        var kind = name ? kindOf(name) : "public";
        for (var other in this.channels) {
            var personal = this.channels[other];
            if (personal.kind !== "personal" || personal === channel) continue;
            var aliased = personal.aliases.indexOf(name) >= 0;
            // aliases added since our subscription are not listed: take the
            // other channels we never joined ourselves as theirs
            if (aliased || (!channel && kind !== "peer")) personal._emit(event, data, name, meta, true);
        }
        this._emit(event, data, name, meta, true);
    };

    return Pushi;
});
