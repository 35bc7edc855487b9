// stair-es search page: plain DOM, no build step. Talks to the JSON API of `stair-es serve`.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { kind: null, text: "", image: null, page: 1, k: 20, maxUpload: 10e6, busy: 0 };

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function chip(token, size, title, extra) {
  const el = document.createElement("span");
  el.className = "chip" + (extra ? " " + extra : "");
  el.textContent = token;
  el.dataset.token = token;
  el.style.fontSize = size.toFixed(2) + "em";
  el.title = title;
  return el;
}

// chips grow with the square root of their share, so small contributions stay readable
const chipSize = (share) => 0.72 + 1.1 * Math.sqrt(Math.max(0, Math.min(1, share)));
const fmt = (x) => (Math.abs(x) >= 100 ? x.toFixed(1) : x.toPrecision(3));

async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("the server did not answer (is `stair-es serve` still running?)");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const err = new Error((body && body.error) || `HTTP ${response.status}`);
    err.body = body;
    throw err;
  }
  return body;
}

function fillIndexes(indexes) {
  const select = $("index");
  if (!select.options.length) {
    for (const name of Object.keys(indexes)) select.add(new Option(name, name));
  }
}

async function checkHealth() {
  const status = $("status");
  try {
    const h = await api("/api/health");
    const parts = [h.engine];
    fillIndexes(h.indexes);
    for (const [name, info] of Object.entries(h.indexes)) {
      parts.push(info.error ? `${name}: ${info.error}` : `${name}: ${info.docs} documents`);
    }
    if (h.model) parts.push(`model ${h.model}` + (h.provider ? ` on ${h.provider.split(" (")[0]}` : ""));
    status.textContent = parts.join(" · ");
    status.classList.toggle("down", !h.ok);
    state.maxUpload = h.max_upload_bytes || state.maxUpload;
    if (!h.ok) {
      showError(Object.values(h.indexes).map((i) => i.error).filter(Boolean).join("; "));
      setTimeout(checkHealth, 5000);
    } else if ($("error").dataset.fromHealth) {
      showError("");
    }
    delete $("error").dataset.fromHealth;
  } catch (err) {
    if (err.body && err.body.indexes) fillIndexes(err.body.indexes);
    status.textContent = "search engine unreachable";
    status.classList.add("down");
    showError(err.message);
    $("error").dataset.fromHealth = "1";
    setTimeout(checkHealth, 5000);
  }
}

function renderQuery(data) {
  const panel = $("query-panel");
  const box = $("query-tokens");
  box.replaceChildren();
  const tokens = data.query.tokens || [];
  const top = tokens.length ? tokens[0].weight : 1;
  for (const t of tokens) {
    box.append(chip(t.token, chipSize(t.weight / top), `${t.token}: weight ${fmt(t.weight)}`, "query"));
  }
  if (data.query.token_count > tokens.length) {
    const more = document.createElement("span");
    more.className = "chip none";
    more.textContent = `+${data.query.token_count - tokens.length} lighter tokens`;
    box.append(more);
  }
  const img = $("query-image");
  img.hidden = data.query.kind !== "image";
  panel.hidden = !tokens.length;
}

function renderHit(hit) {
  const card = document.createElement("article");
  card.className = "hit";
  card.dataset.testid = "hit";
  card.dataset.id = hit.id;
  if (hit.thumb) {
    const img = document.createElement("img");
    img.src = hit.thumb;
    img.alt = hit.caption || hit.file || hit.id;
    img.loading = "lazy";
    card.append(img);
  } else {
    const none = document.createElement("div");
    none.className = "noimg";
    none.textContent = "no thumbnail";
    card.append(none);
  }
  const body = document.createElement("div");
  body.className = "body";
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(Object.assign(document.createElement("span"), { textContent: `#${hit.rank}` }));
  meta.append(Object.assign(document.createElement("span"), { textContent: `score ${fmt(hit.score)}` }));
  body.append(meta);
  const caption = document.createElement("p");
  caption.className = "caption";
  caption.textContent = hit.caption || hit.file || "";
  body.append(caption);
  const chips = document.createElement("div");
  chips.className = "chips";
  chips.dataset.testid = "hit-tokens";
  for (const m of hit.matched.slice(0, 12)) {
    const title = `${m.token}: query ${fmt(m.query_weight)} × image ${fmt(m.doc_weight)} = ${fmt(m.contribution)} (${(100 * m.share).toFixed(1)}% of the sparse score)`;
    chips.append(chip(m.token, chipSize(m.share), title));
  }
  if (!hit.matched.length) {
    chips.append(Object.assign(document.createElement("span"), { className: "chip none", textContent: "no shared token (BM25 only)" }));
  } else if (hit.matched.length > 12) {
    chips.append(Object.assign(document.createElement("span"), { className: "chip none", textContent: `+${hit.matched.length - 12}` }));
  }
  body.append(chips);
  card.append(body);
  return card;
}

function render(data) {
  renderQuery(data);
  const grid = $("results");
  grid.replaceChildren(...data.hits.map(renderHit));
  const first = data.hits.length ? data.offset + 1 : 0;
  const last = data.offset + data.hits.length;
  const what = data.query.kind === "image" ? "image query" : data.query.kind === "tokens" ? "token query" : `"${data.query.text}"`;
  $("summary").textContent = data.hits.length
    ? `${what}: hits ${first}-${last}, mode ${data.mode}, ${data.took_ms} ms in the engine` + (data.notes.length ? ` (${data.notes.join("; ")})` : "")
    : `${what}: no hits (mode ${data.mode})`;
  $("pager").hidden = data.page === 1 && !data.has_more;
  $("prev").disabled = data.page <= 1;
  $("next").disabled = !data.has_more;
  $("page-label").textContent = `page ${data.page}`;
}

async function run() {
  if (!state.kind) return;
  const params = new URLSearchParams({ mode: mode(), k: String(state.k), page: String(state.page) });
  if ($("index").value) params.set("index", $("index").value);
  const ticket = ++state.busy;
  document.body.setAttribute("aria-busy", "true");
  try {
    let data;
    if (state.kind === "image") {
      data = await api("/api/search?" + params, {
        method: "POST",
        headers: { "Content-Type": state.image.type || "application/octet-stream" },
        body: state.image,
      });
    } else {
      params.set("q", state.text);
      data = await api("/api/search?" + params);
    }
    if (ticket !== state.busy) return; // a newer search replaced this one
    showError("");
    render(data);
  } catch (err) {
    if (ticket !== state.busy) return;
    showError(err.message);
    $("results").replaceChildren();
    $("summary").textContent = "";
    $("pager").hidden = true;
  } finally {
    if (ticket === state.busy) document.body.removeAttribute("aria-busy");
  }
}

function searchText(event) {
  event.preventDefault();
  const text = $("q").value.trim();
  if (!text) {
    showError("type a query (the search box is empty)");
    return;
  }
  Object.assign(state, { kind: "text", text, image: null, page: 1 });
  run();
}

function searchImage(file) {
  if (!file) return;
  if (file.size > state.maxUpload) {
    const mib = (n) => (n / 1048576).toFixed(1);
    showError(`the image is ${mib(file.size)} MiB; the limit is ${mib(state.maxUpload)} MiB`);
    return;
  }
  Object.assign(state, { kind: "image", image: file, page: 1 });
  const img = $("query-image");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  run();
}

function wire() {
  $("search-form").addEventListener("submit", searchText);
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => { state.page = 1; run(); });
  }
  $("index").addEventListener("change", () => { state.page = 1; run(); });
  $("prev").addEventListener("click", () => { if (state.page > 1) { state.page -= 1; run(); } });
  $("next").addEventListener("click", () => { state.page += 1; run(); });
  $("file").addEventListener("change", (e) => searchImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    searchImage(e.dataTransfer.files[0]);
  });
  // hovering a query token lights up the same token on every hit
  $("query-tokens").addEventListener("mouseover", (e) => {
    const token = e.target.dataset && e.target.dataset.token;
    for (const el of document.querySelectorAll(".chip.lit")) el.classList.remove("lit");
    if (token) for (const el of document.querySelectorAll(".chip")) if (el.dataset.token === token) el.classList.add("lit");
  });
  checkHealth();
}

document.addEventListener("DOMContentLoaded", wire);
