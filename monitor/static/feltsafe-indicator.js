// <feltsafe-indicator session="..." token="..." [src="wss://monitor/ws/indicator/..."]>
//
// The therapist's live connection indicator: a dependency-free custom element for a
// therapy app's call page. Load it as a module:
//
//   <script type="module" src="https://monitor.example/static/feltsafe-indicator.js"></script>
//   <feltsafe-indicator session="S" token="T"></feltsafe-indicator>
//
// Calm by design: a small neutral dot while all is well; amber (warn) or red (alert,
// interrupted) with a plain-language message and a repair hint when not. The monitor
// decides when to change (it falls fast and recovers slowly, at most one level change
// per 10 s in steady state); this element only shows what it is told, so it never
// flickers on its own. A "Sensitive moment" toggle opens the disclosure window by hand.
//
// Protocol (monitor/indicator_ws.py): the token is the first message, never in the URL.
// The element reconnects by itself with exponential backoff (0.5 s doubling to 15 s,
// with jitter); it stops on 4401/4403 (a bad or expired token, or one for another
// session) until it is given a new token. Without `src`, it connects to
// /ws/indicator/{session} on the server this script came from.
//
// Reflected on the host for styling and tests: level="ok|warn|alert|interrupted" and
// connection="connecting|open|closed|refused". A `feltsafe-state` event (detail: the
// state; it bubbles) fires on every state the monitor sends. The status region is role="status", aria-live="polite".

const SCRIPT_URL = import.meta.url;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 15000;
const REFUSED_CODES = new Set([4401, 4403]);

const LABELS = {
  ok: "Connection is fine",
  warn: "Connection problem",
  alert: "Connection problem, needs your attention",
  interrupted: "Connection dropped",
};

const TEMPLATE = document.createElement("template");
TEMPLATE.innerHTML = `
<style>
  :host {
    display: inline-block;
    font: 14px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
    color: #1f2328;
    --fs-neutral: #8b949e;
    --fs-warn: #b36b00;
    --fs-warn-bg: #fff4dc;
    --fs-alert: #c62828;
    --fs-alert-bg: #fdecea;
  }
  .indicator { display: flex; align-items: flex-start; gap: 8px; }
  .status {
    display: flex; align-items: flex-start; gap: 8px;
    max-width: 26em; padding: 4px; border-radius: 8px;
    border-left: 4px solid transparent;
    transition: background-color 300ms ease, border-color 300ms ease;
  }
  .dot {
    flex: none; width: 10px; height: 10px; margin-top: 5px; border-radius: 50%;
    background: var(--fs-neutral); opacity: 0.7;
    transition: background-color 300ms ease, opacity 300ms ease;
  }
  .text { display: none; }
  .message { display: block; font-weight: 600; }
  .hint { display: block; margin-top: 2px; }
  :host([level="warn"]) .status { background: var(--fs-warn-bg); border-left-color: var(--fs-warn); padding: 8px 12px; }
  :host([level="warn"]) .dot { background: var(--fs-warn); opacity: 1; }
  :host([level="alert"]) .status, :host([level="interrupted"]) .status {
    background: var(--fs-alert-bg); border-left-color: var(--fs-alert); padding: 8px 12px;
  }
  :host([level="alert"]) .dot, :host([level="interrupted"]) .dot { background: var(--fs-alert); opacity: 1; }
  :host([level="warn"]) .text, :host([level="alert"]) .text, :host([level="interrupted"]) .text { display: block; }
  :host(:not([connection="open"])) .dot { background: transparent; box-shadow: inset 0 0 0 1.5px var(--fs-neutral); }
  .marker {
    flex: none; font: inherit; font-size: 12px; padding: 3px 10px; border-radius: 999px;
    border: 1px solid #c9ced6; background: rgba(255, 255, 255, 0.9); color: #3a4049; cursor: pointer;
  }
  .marker[aria-pressed="true"] { background: #4b3f72; border-color: #4b3f72; color: #fff; }
  .marker:disabled { opacity: 0.5; cursor: default; }
  .marker:focus-visible { outline: 2px solid #0969da; outline-offset: 2px; }
  .visually-hidden {
    position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
    clip: rect(0 0 0 0); white-space: nowrap; border: 0;
  }
  @media (prefers-reduced-motion: reduce) {
    .status, .dot { transition: none; }
  }
</style>
<div class="indicator" part="indicator">
  <div class="status" part="status" role="status" aria-live="polite" aria-atomic="true">
    <span class="dot" part="dot" aria-hidden="true"></span>
    <span class="text">
      <span class="message" part="message"></span>
      <span class="hint" part="hint"></span>
    </span>
    <span class="visually-hidden label"></span>
  </div>
  <button class="marker" part="marker" type="button" aria-pressed="false" disabled
    title="Mark a sensitive moment: faults count as more serious while it is on">Sensitive moment</button>
</div>`;

function socketUrl(src, session) {
  if (src) return src;
  const url = new URL(`/ws/indicator/${encodeURIComponent(session)}`, SCRIPT_URL);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

class FeltsafeIndicator extends HTMLElement {
  static observedAttributes = ["session", "token", "src"];

  #socket = null;
  #attempt = 0;
  #retryTimer = null;
  #refused = false;
  #state = { level: "ok", message: null, hint: null, since: null };
  #marker = false;
  #els;

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.appendChild(TEMPLATE.content.cloneNode(true));
    this.#els = {
      message: root.querySelector(".message"),
      hint: root.querySelector(".hint"),
      label: root.querySelector(".label"),
      marker: root.querySelector(".marker"),
    };
    this.#els.marker.addEventListener("click", () => this.#toggleMarker());
  }

  /** The last state the monitor sent: {level, message, hint, since}. */
  get state() {
    return { ...this.#state };
  }

  get marker() {
    return this.#marker;
  }

  connectedCallback() {
    this.#render();
    this.#setConnection("connecting");
    this.#connect();
  }

  disconnectedCallback() {
    this.#teardown();
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue || !this.isConnected) return;
    if (name === "token" && this.#socket && this.#socket.readyState === WebSocket.OPEN) {
      this.#send({ type: "auth", token: newValue }); // a fresh token extends the connection
      return;
    }
    this.#refused = false;
    this.#attempt = 0;
    this.#teardown();
    this.#connect();
  }

  #connect() {
    const session = this.getAttribute("session");
    const token = this.getAttribute("token");
    if (!session || !token || this.#refused) return;
    this.#setConnection("connecting");
    let socket;
    try {
      socket = new WebSocket(socketUrl(this.getAttribute("src"), session));
    } catch {
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    socket.addEventListener("open", () => this.#send({ type: "auth", token }));
    socket.addEventListener("message", (event) => this.#onMessage(event.data));
    socket.addEventListener("close", (event) => this.#onClose(socket, event));
  }

  #teardown() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const socket = this.#socket;
    this.#socket = null;
    if (socket) socket.close(1000, "bye");
  }

  #onMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "state") {
      this.#attempt = 0;
      this.#setConnection("open");
      this.#state = {
        level: message.level,
        message: message.message ?? null,
        hint: message.hint ?? null,
        since: message.since ?? null,
      };
      this.#render();
      this.dispatchEvent(new CustomEvent("feltsafe-state", { detail: this.state, bubbles: true }));
    } else if (message.type === "marker") {
      this.#marker = Boolean(message.on);
      this.#els.marker.setAttribute("aria-pressed", String(this.#marker));
    }
  }

  #onClose(socket, event) {
    if (socket !== this.#socket) return; // an old socket we replaced
    this.#socket = null;
    if (REFUSED_CODES.has(event.code)) {
      this.#refused = true;
      this.#setConnection("refused");
      return;
    }
    this.#setConnection("closed");
    this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    if (!this.isConnected || this.#retryTimer) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** this.#attempt);
    this.#attempt += 1;
    const delay = base * (0.5 + Math.random() / 2);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delay);
  }

  #send(payload) {
    if (this.#socket && this.#socket.readyState === WebSocket.OPEN) {
      this.#socket.send(JSON.stringify(payload));
    }
  }

  #toggleMarker() {
    this.#send({ type: "marker", on: !this.#marker });
  }

  #setConnection(value) {
    this.setAttribute("connection", value);
    this.#els.marker.disabled = value !== "open";
    if (value !== "open") {
      // What was shown may no longer be true: back to the neutral, hollow dot.
      this.setAttribute("level", "ok");
      this.#els.label.textContent =
        value === "refused" ? "Live indicator unavailable" : "Live indicator reconnecting";
    } else {
      this.#render();
    }
  }

  #render() {
    const { level, message, hint } = this.#state;
    this.setAttribute("level", level in LABELS ? level : "ok");
    const quiet = level === "ok" || !(level in LABELS);
    this.#els.message.textContent = quiet ? "" : message ?? LABELS[level];
    this.#els.hint.textContent = quiet ? "" : hint ?? "";
    this.#els.label.textContent = quiet ? LABELS.ok : LABELS[level];
  }
}

if (!customElements.get("feltsafe-indicator")) {
  customElements.define("feltsafe-indicator", FeltsafeIndicator);
}

export { FeltsafeIndicator };
