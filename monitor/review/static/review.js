// feltsafe review: what both pages share - the token, API calls, small DOM helpers.
//
// The token: taken once from the URL fragment (#token=..., never sent to a server) or
// from the sign-in form, kept in sessionStorage (gone with the tab), removed from the
// address bar at once, and sent only as an Authorization: Bearer header. A 401 from the
// API forgets it and shows the sign-in form again.

const TOKEN_KEY = "feltsafe.review.token";

export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token.trim());
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) {
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      message = (await response.json()).error || message;
    } catch {
      // not JSON: keep the status text
    }
    if (response.status === 401) {
      signOut();
      dispatchEvent(new CustomEvent("feltsafe:signed-out", { detail: message }));
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

export async function apiJson(path, options) {
  return (await api(path, options)).json();
}

/** Download an export (the link itself could not carry the token). */
export async function download(path, filename) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Create an element; children are nodes or text (never parsed as HTML). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * Show the main content once there is a token, else the sign-in form; call start()
 * when signed in. Signing out (or a 401) shows the form again.
 */
export function signIn(start) {
  takeTokenFromFragment();
  const form = document.getElementById("sign-in");
  const main = document.getElementById("main");
  const input = document.getElementById("token-input");
  const reason = document.getElementById("sign-in-reason");
  const signOutButton = document.getElementById("sign-out");
  const show = (signedIn, why = "") => {
    form.hidden = signedIn;
    main.hidden = !signedIn;
    signOutButton.hidden = !signedIn;
    reason.textContent = why;
  };
  form.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    input.value = "";
    show(true);
    start();
  });
  signOutButton.addEventListener("click", () => {
    signOut();
    show(false, "Signed out.");
  });
  addEventListener("feltsafe:signed-out", (event) => show(false, `Please sign in again (${event.detail}).`));
  if (token()) {
    show(true);
    start();
  } else {
    show(false);
  }
}

export function setStatus(node, text, { error = false } = {}) {
  node.textContent = text;
  node.classList.toggle("error", error);
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const total = Math.round(seconds);
  if (total < 60) return `${total} s`;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min ${String(s).padStart(2, "0")} s`;
}

export function formatElapsed(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const m = Math.floor(total / 60);
  return `${m}:${String(total % 60).padStart(2, "0")}`;
}

export function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function formatClock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "—";
}

export const SEVERITIES = ["alert", "warn", "info"];

export function severityBadges(counts) {
  const present = SEVERITIES.filter((s) => counts[s] > 0);
  if (!present.length) return [el("span", { class: "badge none" }, "none")];
  return present.map((s) => el("span", { class: `badge ${s}`, title: `${counts[s]} ${s}` }, `${counts[s]} ${s}`));
}
