/*
 * feltsafe-beacon.js: a therapy web app's browser tells the feltsafe monitor how its
 * call is going. Dependency-free; include it with a <script> tag.
 *
 *   const beacon = FeltsafeBeacon.start({
 *     pc,                     // the call's RTCPeerConnection
 *     url: "wss://monitor.example/ws/beacon/SESSION/client",
 *     token: () => fetchPublisherToken(),   // or a string: a feltsafe publisher token
 *   });
 *   ...
 *   beacon.stop();
 *
 * What it sends (JSON text frames; W3C webrtc-stats names and units):
 *  - once a second, {"type":"stats","v":1,"inbound":[...],"roundTripTime":s}: for each
 *    media kind this browser RECEIVES, one inbound-rtp digest (jitter in seconds,
 *    packetsReceived, packetsLost; audio: concealedSamples, totalSamplesReceived;
 *    video: framesPerSecond, freezeCount, totalFreezesDuration), and the
 *    remote-inbound-rtp roundTripTime of what it SENDS (its own path);
 *  - ten times a second, {"type":"level","v":1,"rms":r,"duration":s}: the microphone's
 *    RMS level over the last interval, sqrt(d totalAudioEnergy / d totalSamplesDuration)
 *    from the audio media-source stats.
 * Numbers only: no audio, no video, no names, no SDP. Nothing is queued while the
 * connection is down (a stale report is worth nothing).
 *
 * Connection: the first message is {"type":"auth","token":...} (never in the URL); the
 * server answers {"type":"ready"}, and {"type":"error","error":...} to a bad frame.
 * On a drop the beacon reconnects with exponential backoff (1 s doubling to 30 s, with
 * jitter). It stops for good when stop() is called, when the peer connection closes,
 * when another connection for the same participant supersedes it (close code 4001), or
 * when the server refuses its token (4401 bad or expired, 4403 wrong session or
 * participant) and `token` is a string rather than a function that can produce a fresh
 * one. A refused handshake (the page's origin is not allowed: HTTP 403, seen as 1006)
 * is retried with the same backoff.
 */
(function (root) {
  "use strict";

  var VERSION = 1;
  var CLOSE_SUPERSEDED = 4001;
  var CLOSE_UNAUTHORIZED = 4401;
  var CLOSE_FORBIDDEN = 4403;
  var MAX_BUFFERED = 16384; // bytes not yet sent: beyond this the link is too slow; skip

  function finite(value) {
    return typeof value === "number" && isFinite(value);
  }

  function count(value) {
    return finite(value) && Math.floor(value) === value ? value : undefined;
  }

  function pick(stats, fields, into) {
    for (var i = 0; i < fields.length; i++) {
      var name = fields[i][0];
      var value = fields[i][1](stats[name]);
      if (value !== undefined) into[name] = value;
    }
    return into;
  }

  function nonNegative(value) {
    return finite(value) && value >= 0 ? value : undefined;
  }

  var COMMON = [
    ["jitter", nonNegative],
    ["packetsReceived", count],
    ["packetsLost", count],
  ];
  var AUDIO = COMMON.concat([
    ["concealedSamples", count],
    ["totalSamplesReceived", count],
  ]);
  var VIDEO = COMMON.concat([
    ["framesPerSecond", nonNegative],
    ["freezeCount", count],
    ["totalFreezesDuration", nonNegative],
  ]);

  /* The receiver's view: one inbound-rtp per kind (the busiest), and the RTT. */
  function statsMessage(report) {
    var inbound = {};
    var rtt = { audio: undefined, other: undefined };
    report.forEach(function (stats) {
      if (stats.type === "inbound-rtp" && (stats.kind === "audio" || stats.kind === "video")) {
        var best = inbound[stats.kind];
        if (!best || (stats.packetsReceived || 0) > (best.packetsReceived || 0)) {
          inbound[stats.kind] = stats;
        }
      } else if (stats.type === "remote-inbound-rtp" && finite(stats.roundTripTime)) {
        if (stats.kind === "audio") rtt.audio = stats.roundTripTime;
        else rtt.other = stats.roundTripTime;
      }
    });
    var message = { type: "stats", v: VERSION, inbound: [] };
    if (inbound.audio) message.inbound.push(pick(inbound.audio, AUDIO, { kind: "audio" }));
    if (inbound.video) message.inbound.push(pick(inbound.video, VIDEO, { kind: "video" }));
    var roundTrip = rtt.audio !== undefined ? rtt.audio : rtt.other;
    if (roundTrip !== undefined && roundTrip >= 0) message.roundTripTime = roundTrip;
    return message;
  }

  function Beacon(options) {
    if (!options || !options.pc || !options.url) {
      throw new TypeError("FeltsafeBeacon.start needs {pc, url, token}");
    }
    this.pc = options.pc;
    this.url = options.url;
    this.token = options.token;
    this.statsIntervalMs = options.statsIntervalMs || 1000;
    this.levelIntervalMs = options.levelIntervalMs || 100;
    this.maxBackoffMs = options.maxBackoffMs || 30000;
    this.onStatus = options.onStatus || function () {};
    this.state = "connecting";
    this.sent = { stats: 0, level: 0 };
    this.errors = 0; // error frames from the server
    this.lastError = null;
    this.reconnects = 0;
    this._ws = null;
    this._ready = false;
    this._attempt = 0;
    this._retryTimer = null;
    this._busy = { stats: false, level: false };
    this._energy = null; // {energy, duration} at the previous level sample
    var self = this;
    this._statsTimer = setInterval(function () { self._sendStats(); }, this.statsIntervalMs);
    this._levelTimer = setInterval(function () { self._sendLevel(); }, this.levelIntervalMs);
    this._connect();
  }

  Beacon.prototype._status = function (state, detail) {
    this.state = state;
    try { this.onStatus(state, detail); } catch (e) { /* the app's callback is not ours */ }
  };

  Beacon.prototype._connect = function () {
    var self = this;
    if (this.state === "stopped") return;
    this._status("connecting");
    var ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this._retry();
      return;
    }
    this._ws = ws;
    this._ready = false;
    ws.onopen = function () {
      Promise.resolve(typeof self.token === "function" ? self.token() : self.token)
        .then(function (token) {
          if (ws.readyState === WebSocket.OPEN) {
            ws.send(JSON.stringify({ type: "auth", token: String(token) }));
          }
        })
        .catch(function () { ws.close(); });
    };
    ws.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message && message.type === "ready") {
        self._ready = true;
        self._attempt = 0;
        self._energy = null;
        self._status("open");
      } else if (message && message.type === "error") {
        self.errors += 1;
        self.lastError = String(message.error);
      }
    };
    ws.onclose = function (event) {
      if (self._ws !== ws) return;
      self._ws = null;
      self._ready = false;
      if (self.state === "stopped") return;
      var refused = (event.code === CLOSE_UNAUTHORIZED || event.code === CLOSE_FORBIDDEN) &&
        typeof self.token !== "function";
      if (event.code === CLOSE_SUPERSEDED || refused) {
        self._halt("closed", event.code);
        return;
      }
      self._retry();
    };
  };

  Beacon.prototype._retry = function () {
    var self = this;
    var base = Math.min(this.maxBackoffMs, 1000 * Math.pow(2, this._attempt));
    var delay = base * (0.5 + Math.random() / 2);
    this._attempt += 1;
    this.reconnects += 1;
    this._status("waiting", delay);
    this._retryTimer = setTimeout(function () { self._connect(); }, delay);
  };

  Beacon.prototype._open = function () {
    var ws = this._ws;
    if (this.pc.signalingState === "closed" || this.pc.connectionState === "closed") {
      this.stop();
      return null;
    }
    if (!ws || !this._ready || ws.readyState !== WebSocket.OPEN) return null;
    return ws.bufferedAmount > MAX_BUFFERED ? null : ws;
  };

  Beacon.prototype._send = function (ws, kind, message) {
    ws.send(JSON.stringify(message));
    this.sent[kind] += 1;
  };

  Beacon.prototype._sendStats = function () {
    var self = this;
    if (this._busy.stats || !this._open()) return;
    this._busy.stats = true;
    this.pc.getStats().then(function (report) {
      var ws = self._open();
      if (ws) self._send(ws, "stats", statsMessage(report));
    }).catch(function () {}).then(function () { self._busy.stats = false; });
  };

  /* The microphone: the audio sender's media-source energy since the last sample. */
  Beacon.prototype._sendLevel = function () {
    var self = this;
    if (this._busy.level || !this._open()) return;
    var sender = null;
    var senders = this.pc.getSenders();
    for (var i = 0; i < senders.length; i++) {
      if (senders[i].track && senders[i].track.kind === "audio") { sender = senders[i]; break; }
    }
    if (!sender) { this._energy = null; return; }
    this._busy.level = true;
    sender.getStats().then(function (report) {
      var source = null;
      report.forEach(function (stats) {
        if (stats.type === "media-source" && stats.kind === "audio") source = stats;
      });
      if (!source || !finite(source.totalAudioEnergy) || !finite(source.totalSamplesDuration)) {
        self._energy = null;
        return;
      }
      var now = { energy: source.totalAudioEnergy, duration: source.totalSamplesDuration };
      var before = self._energy;
      self._energy = now;
      if (!before) return;
      var dDuration = now.duration - before.duration;
      var dEnergy = now.energy - before.energy;
      if (!(dDuration > 0.005) || dEnergy < 0) return; // no new audio, or a new source
      var rms = Math.min(1, Math.sqrt(Math.max(0, dEnergy) / dDuration));
      var ws = self._open();
      if (ws) self._send(ws, "level", { type: "level", v: VERSION, rms: rms, duration: Math.min(1, dDuration) });
    }).catch(function () {}).then(function () { self._busy.level = false; });
  };

  Beacon.prototype._halt = function (state, detail) {
    clearInterval(this._statsTimer);
    clearInterval(this._levelTimer);
    clearTimeout(this._retryTimer);
    this._status(state, detail);
    this.state = "stopped";
  };

  /* Stop for good: timers cleared, the connection closed normally. */
  Beacon.prototype.stop = function () {
    if (this.state === "stopped") return;
    var ws = this._ws;
    this._ws = null;
    this._halt("stopped");
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
  };

  root.FeltsafeBeacon = {
    version: VERSION,
    start: function (options) { return new Beacon(options); },
    statsMessage: statsMessage,
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
