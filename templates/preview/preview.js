// The preview page's behaviour: no framework, nothing loaded from elsewhere.
// The server pushes a version number (Server-Sent Events); on a new one the page fetches
// /state.json and reloads only the frames whose HTML changed. The edition and width live
// in the URL hash, so neither a rebuild nor a browser reload loses them; a rebuild also
// keeps each frame's scroll position, so an editor stays where they are working.
"use strict";

const WIDTHS = ["desktop", "phone", "both"];
const SCHEMES = ["light", "dark", "outlook"];
const ui = { edition: "en", width: "both", scheme: "light" };
let snapshot = null;

const $ = (id) => document.getElementById(id);

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("edition")) ui.edition = params.get("edition");
  if (WIDTHS.includes(params.get("width"))) ui.width = params.get("width");
  if (SCHEMES.includes(params.get("scheme"))) ui.scheme = params.get("scheme");
}

function writeHash() {
  history.replaceState(null, "", "#" + new URLSearchParams(ui).toString());
}

function element(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  node.textContent = text; // never innerHTML: briefs and settings are not trusted markup
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function kb(bytes) {
  return (bytes / 1024).toFixed(1) + " KB";
}

function scrollOf(frame) {
  // The frames are same-origin (sandbox="allow-same-origin", still without scripts).
  const view = frame.contentWindow;
  return view && frame.getAttribute("src") ? { x: view.scrollX, y: view.scrollY } : null;
}

function restoreScroll(frame, where) {
  // As soon as the new document is parsed, and again once its images have their size.
  const apply = () => {
    const doc = frame.contentDocument;
    if (!doc || doc.URL === "about:blank" || doc.readyState === "loading") return false;
    frame.contentWindow.scrollTo(where.x, where.y);
    return true;
  };
  const poll = () => {
    if (frame.isConnected && !apply()) requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
  frame.addEventListener("load", apply, { once: true });
}

function setFrame(frame, src) {
  // Only a changed build reloads a frame, so an unchanged edition keeps its scroll position.
  if (frame.getAttribute("src") === src) return;
  // Same edition (a rebuild, or another scheme): stay at the same place in it.
  const old = frame.getAttribute("src");
  const sameEdition = old && new URL(old, location).pathname === new URL(src, location).pathname;
  const where = sameEdition ? scrollOf(frame) : null;
  // A fresh iframe rather than a new src: chromium can let a navigation still in flight
  // (a quick switch of edition) commit after the newer one, leaving the old edition shown.
  const fresh = frame.cloneNode(false);
  fresh.setAttribute("src", src);
  frame.replaceWith(fresh);
  if (where) restoreScroll(fresh, where);
}

function render() {
  if (!snapshot) return;
  document.body.dataset.version = snapshot.version;
  for (const button of document.querySelectorAll("[data-width]")) {
    button.setAttribute("aria-pressed", String(button.dataset.width === ui.width));
  }
  for (const button of document.querySelectorAll("[data-scheme]")) {
    button.setAttribute("aria-pressed", String(button.dataset.scheme === ui.scheme));
  }
  $("error").hidden = !snapshot.error;
  $("preview").hidden = Boolean(snapshot.error);
  if (snapshot.error) {
    $("error-text").textContent = snapshot.error;
    return;
  }
  const edition =
    snapshot.editions.find((e) => e.name === ui.edition) || snapshot.editions[0];
  ui.edition = edition.name;
  for (const button of document.querySelectorAll("[data-edition]")) {
    button.setAttribute("aria-pressed", String(button.dataset.edition === edition.name));
  }
  document.title = `${edition.label} · Preview ${snapshot.issue}`;

  const src = `/edition/${edition.name}.html?h=${edition.hash}&scheme=${ui.scheme}`;
  setFrame($("frame-desktop"), src);
  setFrame($("frame-phone"), src);
  $("pane-desktop").hidden = ui.width === "phone";
  $("pane-phone").hidden = ui.width === "desktop";

  const text = $("text");
  text.textContent = edition.text;
  text.lang = edition.lang;

  const headers = $("headers");
  headers.replaceChildren();
  for (const [name, value] of edition.headers) {
    headers.append(element("dt", name), element("dd", value));
  }

  const checks = $("checks");
  checks.replaceChildren();
  const size = edition.html_part_bytes;
  const sizeLevel =
    size > snapshot.clip_limit ? "error" : size > snapshot.clip_warning ? "warning" : "ok";
  checks.append(
    element("li", `HTML part ${kb(size)} of ${kb(snapshot.clip_limit)} before Gmail clips`, {
      class: sizeLevel,
    }),
  );
  for (const finding of edition.findings) {
    checks.append(element("li", `${finding.level}: ${finding.message}`, { class: finding.level }));
  }
  writeHash();
}

async function refresh() {
  const response = await fetch("/state.json", { cache: "no-store" });
  const fresh = await response.json();
  // Responses can cross on a burst of saves: never go back to an older build.
  if (!snapshot || fresh.version >= snapshot.version) snapshot = fresh;
  render();
  const time = new Date().toLocaleTimeString();
  $("status").textContent = `build ${snapshot.version} · ${time}`;
  $("status").className = "";
}

function listen() {
  const events = new EventSource("/events");
  events.onmessage = (event) => {
    if (!snapshot || Number(event.data) !== snapshot.version) refresh();
  };
  events.onerror = () => {
    // EventSource reconnects by itself; say so instead of showing a stale page as live.
    $("status").textContent = "server stopped? reconnecting…";
    $("status").className = "lost";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  readHash();
  for (const button of document.querySelectorAll("[data-edition]")) {
    button.addEventListener("click", () => {
      ui.edition = button.dataset.edition;
      render();
    });
  }
  for (const button of document.querySelectorAll("[data-width]")) {
    button.addEventListener("click", () => {
      ui.width = button.dataset.width;
      render();
    });
  }
  for (const button of document.querySelectorAll("[data-scheme]")) {
    button.addEventListener("click", () => {
      ui.scheme = button.dataset.scheme;
      render();
    });
  }
  window.addEventListener("hashchange", () => {
    readHash();
    render();
  });
  listen();
});
