/*
 * The Pushi demo page: connect, subscribe, watch events, publish client events,
 * see presence members and chat on peer channels. Uses only pushi.js.
 *
 * Protected channels need a signature that only the app secret can make. A real
 * page asks its back end (the `authEndpoint` option of pushi.js); for local
 * trials this page can instead sign in the browser with a secret the user pastes
 * (HMAC-SHA256 with WebCrypto, or with the small fallback below where WebCrypto
 * is unavailable: pages served over plain http from a host other than localhost).
 */
(function () {
    "use strict";

    var pushi = null;
    var secret = ""; // in this tab's memory only, never stored
    var peers = {}; // peer channel name -> {channel, messages}
    var activePeer = null;
    var LOG_LIMIT = 500;

    function $(id) {
        return document.getElementById(id);
    }

    // -- HMAC-SHA256 (local testing only) ------------------------------------------

    var encoder = new TextEncoder();

    function hex(bytes) {
        var out = "";
        for (var index = 0; index < bytes.length; index++) {
            out += (bytes[index] < 16 ? "0" : "") + bytes[index].toString(16);
        }
        return out;
    }

    // SHA-256 constants: fractional parts of the square roots (H) and cube roots
    // (K) of the first primes, as FIPS 180-4 defines them
    var PRIMES = [];
    for (var candidate = 2; PRIMES.length < 64; candidate++) {
        var prime = true;
        for (var p = 0; p < PRIMES.length && PRIMES[p] * PRIMES[p] <= candidate; p++) {
            if (candidate % PRIMES[p] === 0) prime = false;
        }
        if (prime) PRIMES.push(candidate);
    }
    function fraction(value) {
        return ((value - Math.floor(value)) * 4294967296) >>> 0;
    }
    var H0 = PRIMES.slice(0, 8).map(function (n) { return fraction(Math.sqrt(n)); });
    var K = PRIMES.map(function (n) { return fraction(Math.cbrt(n)); });

    function rotr(x, n) {
        return (x >>> n) | (x << (32 - n));
    }

    function sha256(bytes) {
        var length = bytes.length;
        var padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
        padded.set(bytes);
        padded[length] = 0x80;
        var view = new DataView(padded.buffer);
        view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
        view.setUint32(padded.length - 4, (length << 3) >>> 0);
        var h = H0.slice();
        var w = new Array(64);
        for (var offset = 0; offset < padded.length; offset += 64) {
            for (var i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
            for (i = 16; i < 64; i++) {
                var s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
                var s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
                w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
            for (i = 0; i < 64; i++) {
                var t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
                var t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
                k = g; g = f; f = e; e = (d + t1) >>> 0;
                d = c; c = b; b = a; a = (t1 + t2) >>> 0;
            }
            h[0] = (h[0] + a) >>> 0; h[1] = (h[1] + b) >>> 0; h[2] = (h[2] + c) >>> 0; h[3] = (h[3] + d) >>> 0;
            h[4] = (h[4] + e) >>> 0; h[5] = (h[5] + f) >>> 0; h[6] = (h[6] + g) >>> 0; h[7] = (h[7] + k) >>> 0;
        }
        var out = new Uint8Array(32);
        var outView = new DataView(out.buffer);
        for (i = 0; i < 8; i++) outView.setUint32(i * 4, h[i]);
        return out;
    }

    function hmacFallback(key, message) {
        var keyBytes = encoder.encode(key);
        if (keyBytes.length > 64) keyBytes = sha256(keyBytes);
        var inner = new Uint8Array(64 + 0);
        var outer = new Uint8Array(64);
        for (var i = 0; i < 64; i++) {
            var byte = i < keyBytes.length ? keyBytes[i] : 0;
            inner[i] = byte ^ 0x36;
            outer[i] = byte ^ 0x5c;
        }
        var messageBytes = encoder.encode(message);
        var first = new Uint8Array(64 + messageBytes.length);
        first.set(inner);
        first.set(messageBytes, 64);
        var second = new Uint8Array(64 + 32);
        second.set(outer);
        second.set(sha256(first), 64);
        return hex(sha256(second));
    }

    /** Hex HMAC-SHA256, a Promise: WebCrypto where the page may use it. */
    function hmacHex(key, message, forceFallback) {
        var subtle = window.crypto && window.crypto.subtle;
        // WebCrypto refuses empty keys; the fallback signs them as HMAC defines
        if (!subtle || forceFallback || !key) return Promise.resolve(hmacFallback(key, message));
        return subtle
            .importKey("raw", encoder.encode(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
            .then(function (cryptoKey) {
                return subtle.sign("HMAC", cryptoKey, encoder.encode(message));
            })
            .then(function (signature) {
                return hex(new Uint8Array(signature));
            });
    }

    /** A pushi.js `authorizer` signing in the page, as a back end would. */
    function localAuthorizer(appKey) {
        return function (request) {
            var toSign = request.socketId + ":" + request.channel;
            if (request.channelData !== null) toSign += ":" + request.channelData;
            return hmacHex(secret, toSign).then(function (signature) {
                var answer = { auth: appKey + ":" + signature };
                if (request.channelData !== null) answer.channel_data = request.channelData;
                return answer;
            });
        };
    }

    // -- log -----------------------------------------------------------------------

    function time() {
        var now = new Date();
        return now.toTimeString().slice(0, 8) + "." + String(now.getMilliseconds()).padStart(3, "0");
    }

    function show(value) {
        if (value === undefined) return "";
        return typeof value === "string" ? value : JSON.stringify(value);
    }

    function log(channel, event, data, kind) {
        var list = $("log");
        var item = document.createElement("li");
        if (kind) item.className = kind;
        [["time", time()], ["channel", channel || "·"], ["event", event], ["data", show(data)]].forEach(
            function (part) {
                var span = document.createElement("span");
                span.className = part[0];
                span.textContent = part[1];
                item.appendChild(span);
            }
        );
        list.insertBefore(item, list.firstChild);
        while (list.childNodes.length > LOG_LIMIT) list.removeChild(list.lastChild);
    }

    // -- settings --------------------------------------------------------------------

    var query = new URLSearchParams(window.location.search);

    function remembered(name, fallback, store) {
        store = store || window.localStorage;
        try {
            return query.get(name) || store.getItem("pushi-demo-" + name) || fallback;
        } catch (error) {
            return query.get(name) || fallback;
        }
    }

    function remember(name, value, store) {
        try {
            (store || window.localStorage).setItem("pushi-demo-" + name, value);
        } catch (error) {
            /* storage disabled: nothing to remember */
        }
    }

    function authMode() {
        var checked = document.querySelector("input[name=auth-mode]:checked");
        return checked ? checked.value : "secret";
    }

    function identity() {
        var userId = $("user-id").value.trim();
        var name = $("user-name").value.trim() || userId;
        return { user_id: userId, user_info: { name: name }, peer: $("peer").checked };
    }

    // -- connection --------------------------------------------------------------------

    function setStatus(state, detail) {
        var status = $("status");
        status.className = "status status-" + state;
        status.textContent = detail ? state + " · " + detail : state;
        $("socket-id").textContent = pushi && pushi.socketId ? "socket " + pushi.socketId : "";
        var connected = state === "connected";
        $("subscribe").disabled = !pushi;
        $("publish").disabled = !connected;
        $("disconnect").disabled = !pushi;
        $("connect").textContent = pushi ? "Reconnect" : "Connect";
    }

    function connect() {
        var key = $("app-key").value.trim();
        var url = $("ws-url").value.trim();
        if (!key) return;
        remember("key", key);
        remember("url", url);
        remember("user", $("user-id").value.trim(), window.sessionStorage);
        remember("name", $("user-name").value.trim(), window.sessionStorage);
        remember("auth", authMode());
        remember("endpoint", $("auth-endpoint").value.trim());
        secret = $("app-secret").value.trim();
        if (pushi) pushi.disconnect();
        peers = {};
        activePeer = null;
        renderPeers();

        var options = {};
        if (url) options.baseUrl = url;
        if (authMode() === "secret") {
            options.authorizer = localAuthorizer(key);
        } else if ($("auth-endpoint").value.trim()) {
            options.authEndpoint = $("auth-endpoint").value.trim();
        }
        pushi = new Pushi(key, options);
        window.PushiDemo.pushi = pushi;

        pushi.bind("connecting", function (event, info) {
            setStatus("connecting", info.attempt > 1 ? "attempt " + info.attempt : "");
        });
        pushi.bind("connected", function (event, info) {
            setStatus("connected");
            log(null, "connected", info, "system");
            renderChannels();
        });
        pushi.bind("disconnected", function (event, info) {
            var detail = info.reconnect ? "retry in " + (info.delay / 1000).toFixed(1) + " s" : "";
            setStatus("disconnected", detail);
            log(null, "disconnected", info, "system");
            renderChannels();
        });
        pushi.bind("error", function (event, error, channel) {
            log(channel, "error", error, "error");
            renderChannels();
        });
        pushi.bind("subscribed", function (event, info, channel) {
            log(channel, "subscribed", info, "system");
            renderChannels();
            renderPresence();
        });
        pushi.bind("member_added", function (event, member, channel) {
            log(channel, "member_added", member, "system");
            renderPresence();
        });
        pushi.bind("member_removed", function (event, member, channel) {
            log(channel, "member_removed", member, "system");
            renderPresence();
        });
        pushi.bind("peer", function (event, channel) {
            addPeer(channel);
        });
        pushi.bind("*", function (event, data, channel, message) {
            var who = message && message.user_id ? " (from " + message.user_id + ")" : "";
            log(channel, event + who + (message && message.stored ? " [stored]" : ""), data);
        });
        setStatus("connecting");
    }

    function disconnect() {
        if (!pushi) return;
        pushi.disconnect();
        pushi = null;
        window.PushiDemo.pushi = null;
        setStatus("disconnected");
        renderChannels();
        renderPresence();
    }

    // -- channels ----------------------------------------------------------------------

    function subscribe(name) {
        if (!pushi || !name) return;
        var options = {};
        var kind = Pushi.kindOf(name);
        if (kind === "presence") {
            var me = identity();
            if (!me.user_id) {
                log(name, "error", "presence channels need a user id", "error");
                return;
            }
            options.channelData = me;
        }
        pushi.subscribe(name, options);
        renderChannels();
    }

    function renderChannels() {
        var list = $("channel-list");
        var options = $("subscribed-channels");
        list.textContent = "";
        options.textContent = "";
        if (!pushi) return;
        pushi.allChannels().forEach(function (channel) {
            var item = document.createElement("li");
            var name = document.createElement("span");
            name.className = "name";
            name.textContent = channel.name;
            var badge = document.createElement("span");
            badge.className = "badge " + channel.state;
            badge.textContent = channel.state;
            var latest = document.createElement("button");
            latest.type = "button";
            latest.className = "small secondary";
            latest.textContent = "latest";
            latest.title = "log the last 10 stored events";
            latest.onclick = function () {
                channel.latest(0, 10, function (events, error) {
                    if (error) return log(channel.name, "latest failed", error, "error");
                    log(channel.name, "latest", events.length + " stored event(s)", "system");
                    events.slice().reverse().forEach(function (stored) {
                        log(stored.channel, stored.event + " [stored]", stored.data);
                    });
                });
            };
            var leave = document.createElement("button");
            leave.type = "button";
            leave.className = "small secondary";
            leave.textContent = "leave";
            leave.onclick = function () {
                channel.unsubscribe();
                if (peers[channel.name]) delete peers[channel.name];
                renderChannels();
                renderPresence();
                renderPeers();
            };
            item.appendChild(name);
            item.appendChild(badge);
            item.appendChild(latest);
            // a peer channel is the server's doing: it ends with its presence channel
            if (!channel.implicit) item.appendChild(leave);
            list.appendChild(item);
            var option = document.createElement("option");
            option.value = channel.name;
            options.appendChild(option);
        });
    }

    function renderPresence() {
        var box = $("presence");
        box.textContent = "";
        var channels = pushi
            ? pushi.allChannels().filter(function (c) { return c.kind === "presence"; })
            : [];
        if (!channels.length) {
            var empty = document.createElement("p");
            empty.className = "muted";
            empty.textContent = "No presence channel yet.";
            box.appendChild(empty);
            return;
        }
        channels.forEach(function (channel) {
            var title = document.createElement("div");
            title.textContent = channel.name + " · " + channel.memberCount() + " member(s)";
            var list = document.createElement("ul");
            list.dataset.channel = channel.name;
            Object.keys(channel.members).sort().forEach(function (userId) {
                var member = channel.members[userId] || {};
                var info = member.user_info || {};
                var item = document.createElement("li");
                item.dataset.user = userId;
                item.textContent = (info.name || userId) + (info.name && info.name !== userId ? " (" + userId + ")" : "");
                if (userId === channel.userId) {
                    item.className = "me";
                    item.textContent += " · you";
                }
                list.appendChild(item);
            });
            box.appendChild(title);
            box.appendChild(list);
        });
    }

    // -- peer chat ---------------------------------------------------------------------

    function addPeer(channel) {
        if (peers[channel.name]) return;
        var entry = (peers[channel.name] = { channel: channel, messages: [], seen: {} });
        log(channel.name, "peer channel", "chat with " + (channel.peerUser || "?"), "system");
        channel.bind("chat", function (event, data, name, message) {
            receive(entry, data, message);
        });
        // the other user left (or we left the presence channel): the chat ends
        channel.bind("unsubscribed", function () {
            if (peers[channel.name] !== entry) return;
            delete peers[channel.name];
            if (activePeer === channel.name) activePeer = Object.keys(peers).sort()[0] || null;
            log(channel.name, "peer channel closed", "chat with " + (channel.peerUser || "?"), "system");
            renderChannels();
            renderPeers();
        });
        // the conversation so far (stored chat messages), oldest first
        channel.latest(0, 20, function (events) {
            (events || []).slice().reverse().forEach(function (stored) {
                if (stored.event === "chat") receive(entry, stored.data, stored);
            });
        });
        if (!activePeer) activePeer = channel.name;
        renderPeers();
    }

    /** Who wrote a chat line: the sender names itself (the server adds no user id). */
    function author(entry, data, message) {
        if (data && typeof data === "object" && data.from != null) return String(data.from);
        var record = message && message.record;
        if (record && record.owner_id && pushi && record.owner_id === pushi.socketId) {
            return entry.channel.userId;
        }
        return (message && message.user_id) || entry.channel.peerUser || "?";
    }

    function receive(entry, data, message) {
        var key = message && message.mid;
        if (key && entry.seen[key]) return;
        if (key) entry.seen[key] = true;
        entry.messages.push({
            from: author(entry, data, message),
            text: data && typeof data === "object" ? String(data.text) : String(data),
            timestamp: (message && message.timestamp) || Date.now() / 1000
        });
        entry.messages.sort(function (a, b) { return a.timestamp - b.timestamp; });
        if (entry.channel.name === activePeer) renderChat();
    }

    function renderPeers() {
        var box = $("chat-peers");
        box.textContent = "";
        Object.keys(peers).sort().forEach(function (name) {
            var channel = peers[name].channel;
            var button = document.createElement("button");
            button.type = "button";
            button.textContent = "with " + (channel.peerUser || name);
            button.title = name;
            button.dataset.channel = name;
            if (name === activePeer) button.className = "active";
            button.onclick = function () {
                activePeer = name;
                renderPeers();
            };
            box.appendChild(button);
        });
        var ready = !!(activePeer && peers[activePeer]);
        $("chat-text").disabled = !ready;
        $("chat-send").disabled = !ready;
        $("chat-help").style.display = Object.keys(peers).length ? "none" : "";
        renderChat();
    }

    function renderChat() {
        var list = $("chat-log");
        list.textContent = "";
        var entry = activePeer && peers[activePeer];
        if (!entry) return;
        var me = entry.channel.userId;
        entry.messages.forEach(function (message) {
            var item = document.createElement("li");
            if (message.from === me) item.className = "mine";
            var who = document.createElement("span");
            who.className = "who";
            who.textContent = message.from === me ? "you" : message.from;
            var text = document.createElement("span");
            text.className = "text";
            text.textContent = message.text;
            item.appendChild(who);
            item.appendChild(text);
            list.appendChild(item);
        });
        list.scrollTop = list.scrollHeight;
    }

    function sendChat() {
        var entry = activePeer && peers[activePeer];
        var text = $("chat-text").value;
        if (!entry || !text.trim()) return;
        // echo: our own line comes back from the server, proof it went through
        var line = { text: text, from: entry.channel.userId };
        if (entry.channel.send("chat", line, true, true)) {
            $("chat-text").value = "";
        } else {
            log(entry.channel.name, "error", "not connected: message not sent", "error");
        }
    }

    // -- publishing --------------------------------------------------------------------

    function publish() {
        if (!pushi) return;
        var name = $("publish-channel").value.trim();
        var channel = pushi.channel(name);
        if (!channel || !channel.subscribed) {
            log(name, "error", "subscribe to the channel before publishing on it", "error");
            return;
        }
        var text = $("publish-data").value;
        var data;
        try {
            data = JSON.parse(text);
        } catch (error) {
            data = text;
        }
        var event = $("publish-event").value.trim() || "message";
        try {
            channel.send(event, data, $("publish-echo").checked, $("publish-persist").checked);
        } catch (error) {
            log(name, "error", error.message, "error");
        }
    }

    // -- wiring --------------------------------------------------------------------------

    function start() {
        $("app-key").value = remembered("key", "");
        $("ws-url").value = remembered("url", "");
        $("auth-endpoint").value = remembered("endpoint", "");
        // per tab, so that two tabs are two users
        $("user-id").value = remembered("user", "user-" + Math.random().toString(36).slice(2, 6), window.sessionStorage);
        $("user-name").value = remembered("name", "", window.sessionStorage);
        var mode = remembered("auth", "secret");
        var radio = document.querySelector("input[name=auth-mode][value=" + (mode === "endpoint" ? "endpoint" : "secret") + "]");
        radio.checked = true;

        $("connect-form").onsubmit = function (event) {
            event.preventDefault();
            connect();
        };
        $("disconnect").onclick = disconnect;
        $("subscribe-form").onsubmit = function (event) {
            event.preventDefault();
            subscribe($("channel-name").value.trim());
            $("channel-name").value = "";
        };
        $("publish-form").onsubmit = function (event) {
            event.preventDefault();
            publish();
        };
        $("chat-form").onsubmit = function (event) {
            event.preventDefault();
            sendChat();
        };
        $("clear-log").onclick = function () {
            $("log").textContent = "";
        };
        setStatus("initialized");
        $("status").textContent = "not connected";
    }

    window.PushiDemo = { hmacHex: hmacHex, sha256: sha256, pushi: null };
    start();
})();
