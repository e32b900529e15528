// llm-router playground: build an OpenAI chat request, send it to this router, show the
// decision. Plain browser JavaScript, no dependencies; everything stays on this origin.
"use strict";

const MAX_IMAGE_SIDE = 1024;   // images are downscaled in the browser before upload
const JPEG_QUALITY = 0.85;
const METRICS_EVERY_MS = 5000;

const state = { config: null, apiKey: "", history: [], sending: false };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function authHeaders() {
  return state.apiKey ? { authorization: "Bearer " + state.apiKey } : {};
}

// ---- errors --------------------------------------------------------------------------

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

async function describeError(resp) {
  let message = resp.statusText || "request failed";
  let code = null;
  try {
    const body = await resp.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code;
    }
  } catch (_) { /* not JSON: keep the status text */ }
  const hint = {
    401: " Enter a valid API key above.",
    429: " The router is busy: wait a moment and try again.",
    503: " The router is not ready yet: wait a moment and try again.",
  }[resp.status] || "";
  return `The router answered ${resp.status}${code ? " (" + code + ")" : ""}: ${message}.${hint}`;
}

// ---- configuration and controls ---------------------------------------------------

async function loadConfig() {
  let resp;
  try {
    resp = await fetch("/playground/config.json", { headers: authHeaders() });
  } catch (err) {
    $("service-info").textContent = "Cannot reach the router: " + err.message;
    return;
  }
  if (resp.status === 401) {
    $("auth-row").hidden = false;
    $("service-info").textContent = "This router needs an API key: enter it above.";
    return;
  }
  if (!resp.ok) {
    $("service-info").textContent = await describeError(resp);
    return;
  }
  state.config = await resp.json();
  if (state.config.auth) $("auth-row").hidden = false;
  const c = state.config;
  const backend = c.backend ? ` (${c.backend})` : "";
  $("service-info").textContent =
    `Strategy ${c.strategy}${backend}, ${c.mode} mode, ${c.models.length} models` +
    (c.ready ? "." : " — still loading.");
  buildControls(c);
}

function buildControls(c) {
  const select = $("manual-model");
  select.replaceChildren(el("option", { value: "router", text: "router (let it choose)" }));
  for (const m of c.models) {
    select.append(el("option", { value: m.name, text: m.name + (m.vision ? " (vision)" : "") }));
  }
  const isAuto = c.strategy === "auto";
  $("cost-weight-row").hidden = !isAuto;
  const head = el("tr", {}, el("th", { scope: "col", text: "Model" }),
    el("th", { scope: "col", text: "Exclude" }));
  if (isAuto) {
    head.append(el("th", { scope: "col", text: "Threshold" }), el("th", { scope: "col", text: "Cost" }));
  }
  const body = el("tbody");
  c.models.forEach((m, i) => {
    const row = el("tr", {}, el("th", { scope: "row", text: m.name }));
    const exclude = el("input", { type: "checkbox", id: `exclude-${i}`, "data-model": m.name,
      class: "exclude", "aria-label": `Exclude ${m.name}` });
    row.append(el("td", {}, exclude));
    if (isAuto) {
      row.append(el("td", {}, el("input", { type: "number", min: "0", max: "1", step: "0.05",
        class: "threshold", "data-model": m.name, placeholder: String(m.threshold),
        "aria-label": `Threshold for ${m.name}` })));
      row.append(el("td", {}, el("input", { type: "number", min: "0", step: "0.1",
        class: "cost", "data-model": m.name, placeholder: String(m.cost),
        "aria-label": `Cost for ${m.name}` })));
    }
    body.append(row);
  });
  $("model-controls").replaceChildren(el("table", {}, el("thead", {}, head), body));
}

// ---- conversation editor ------------------------------------------------------------

function addTurn(role = "user", text = "") {
  const node = $("turn-template").content.firstElementChild.cloneNode(true);
  node.images = [];
  node.querySelector(".role").value = role;
  const area = node.querySelector(".text");
  area.value = text;
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); send(); }
  });
  area.addEventListener("paste", (ev) => {
    const files = [...(ev.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) { ev.preventDefault(); attachFiles(node, files); }
  });
  node.querySelector(".files").addEventListener("change", (ev) => {
    attachFiles(node, [...ev.target.files]);
    ev.target.value = "";
  });
  node.addEventListener("dragover", (ev) => { ev.preventDefault(); node.classList.add("dragging"); });
  node.addEventListener("dragleave", () => node.classList.remove("dragging"));
  node.addEventListener("drop", (ev) => {
    ev.preventDefault();
    node.classList.remove("dragging");
    attachFiles(node, [...(ev.dataTransfer?.files || [])]);
  });
  node.querySelector(".remove-turn").addEventListener("click", () => {
    node.remove();
    if (!$("conversation").children.length) addTurn("user");
  });
  $("conversation").append(node);
  return node;
}

function downscale(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => {
      const scale = Math.min(1, MAX_IMAGE_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      URL.revokeObjectURL(url);
      resolve(canvas.toDataURL("image/jpeg", JPEG_QUALITY));
    };
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error(`${file.name} is not an image the browser can read`)); };
    img.src = url;
  });
}

async function attachFiles(turn, files) {
  for (const file of files) {
    if (!file.type.startsWith("image/")) {
      showError(`${file.name || "That file"} is not an image.`);
      continue;
    }
    try {
      const dataUrl = await downscale(file);
      turn.images.push(dataUrl);
    } catch (err) {
      showError(err.message);
    }
  }
  renderThumbs(turn);
}

function renderThumbs(turn) {
  const list = turn.querySelector(".thumbs");
  list.replaceChildren(...turn.images.map((src, i) => el("li", {},
    el("img", { src, alt: `Attached image ${i + 1}` }),
    el("button", { type: "button", text: "Remove", "aria-label": `Remove image ${i + 1}`,
      onclick: () => { turn.images.splice(i, 1); renderThumbs(turn); } }))));
}

// ---- the request ----------------------------------------------------------------------

function numberInputs(selector) {
  const out = {};
  for (const input of document.querySelectorAll(selector)) {
    if (input.value !== "") out[input.dataset.model] = Number(input.value);
  }
  return out;
}

function buildRequest() {
  const messages = [];
  for (const turn of $("conversation").children) {
    const role = turn.querySelector(".role").value;
    const text = turn.querySelector(".text").value;
    if (!text.trim() && !turn.images.length) continue;
    if (turn.images.length) {
      const parts = text.trim() ? [{ type: "text", text }] : [];
      for (const url of turn.images) parts.push({ type: "image_url", image_url: { url } });
      messages.push({ role, content: parts });
    } else {
      messages.push({ role, content: text });
    }
  }
  const body = { model: $("manual-model").value, messages };
  const router = {};
  const exclude = [...document.querySelectorAll("input.exclude:checked")].map((i) => i.dataset.model);
  if (exclude.length) router.exclude_models = exclude;
  const session = $("session-id").value.trim();
  if (session) router.session_id = session;
  const thresholds = numberInputs("input.threshold");
  if (Object.keys(thresholds).length) router.thresholds = thresholds;
  const costs = numberInputs("input.cost");
  if (Object.keys(costs).length) router.costs = costs;
  const weight = $("cost-weight").value;
  if (!$("cost-weight-row").hidden && weight !== "") router.cost_weight = Number(weight);
  if (Object.keys(router).length) body.router = router;
  if (state.config && state.config.mode === "proxy") body.stream = true;
  return body;
}

async function send() {
  if (state.sending) return;
  showError("");
  const body = buildRequest();
  renderSnippets(body);
  $("raw-request").textContent = JSON.stringify(body, null, 2);
  state.sending = true;
  $("send").disabled = true;
  const began = performance.now();
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", ...authHeaders() },
      body: JSON.stringify(body),
    });
    if (!resp.ok) {
      const text = await describeError(resp);
      $("raw-response").textContent = text;
      showError(text);
      return;
    }
    const contentType = resp.headers.get("content-type") || "";
    let entry;
    if (contentType.startsWith("text/event-stream")) {
      entry = await readStream(resp, body);
    } else {
      const data = await resp.json();
      entry = entryFrom(body, data, resp.headers);
    }
    entry.roundTripMs = performance.now() - began;
    state.history.unshift(entry);
    renderDecision(entry);
    renderHistory();
    refreshMetrics();
  } catch (err) {
    showError("The request failed: " + err.message);
  } finally {
    state.sending = false;
    $("send").disabled = false;
  }
}

function entryFrom(request, data, headers) {
  const router = data.router || {};
  const proxied = state.config && state.config.mode === "proxy";
  return {
    time: new Date(),
    request,
    response: data,
    model: router.model || headers.get("x-router-model") ||
      (proxied ? data.model : data.choices?.[0]?.message?.content) || "?",
    intent: router.intent || headers.get("x-router-intent") || null,
    reason: router.reason || headers.get("x-router-reason") || null,
    strategy: router.strategy || headers.get("x-router-strategy") || null,
    latencyMs: router.latency_ms ?? null,
    scores: router.scores || {},
    needsVision: router.needs_vision ?? null,
    vision: router.detail?.vision || null,
    // recommend mode: the client should omit them; proxy mode: how many went as markers
    stripImages: router.strip_images ?? (headers.get("x-router-images-omitted") ? true : null),
    imagesOmitted: Number(headers.get("x-router-images-omitted") || 0),
    eligibleIntents: router.detail?.eligible_intents || null,
    session: router.detail?.session || null,
    answer: proxied ? data.choices?.[0]?.message?.content ?? "" : null,
  };
}

async function readStream(resp, request) {
  // Proxy mode: the chosen model's answer arrives as chat.completion.chunk events.
  const entry = entryFrom(request, {}, resp.headers);
  entry.answer = "";
  entry.response = [];
  $("answer-block").hidden = false;
  $("answer").textContent = "";
  renderDecision(entry);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const payload = line.slice(5).trim();
        if (payload === "[DONE]") continue;
        try {
          const chunk = JSON.parse(payload);
          entry.response.push(chunk);
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) { entry.answer += delta; $("answer").textContent = entry.answer; }
        } catch (_) { /* a non-JSON event: ignore */ }
      }
    }
  }
  return entry;
}

// ---- rendering ------------------------------------------------------------------------

function bars(list, items, chosen) {
  const max = Math.max(1e-9, ...items.map(([, v]) => Math.abs(v)));
  list.replaceChildren(...items.map(([name, value]) => {
    const fill = el("span", { class: "fill" });
    fill.style.width = `${Math.max(0, (value / max) * 100).toFixed(1)}%`;  // CSSOM: allowed by the CSP
    return el("li", { class: name === chosen ? "chosen" : "" },
      el("span", { class: "name", title: name, text: name }),
      el("span", { class: "track", "aria-hidden": "true" }, fill),
      el("span", { class: "value", text: Number.isInteger(value) ? String(value) : value.toFixed(3) }));
  }));
}

function renderDecision(entry) {
  const facts = el("dl", { class: "facts" });
  const add = (k, v) => { if (v != null && v !== "") facts.append(el("dt", { text: k }), el("dd", { text: v })); };
  add("Intent", entry.intent);
  add("Reason", entry.reason);
  add("Strategy", entry.strategy);
  add("Needs vision", entry.needsVision == null ? null : entry.needsVision
    ? (entry.vision === "earlier_image" ? "yes (asks about an earlier image)" : "yes (image in the latest turn)")
    : "no");
  if (entry.stripImages) {
    add("Images", entry.imagesOmitted
      ? `${entry.imagesOmitted} earlier image(s) sent as text markers (text-only model)`
      : "text-only model: replace the earlier images by text markers (router.strip_images)");
  }
  if (entry.eligibleIntents) add("Eligible intents", entry.eligibleIntents.join(", "));
  if (entry.session) {
    add("Session", `${entry.session.policy}: strategy chose ${entry.session.routed}` +
      (entry.session.previous ? `, session had ${entry.session.previous}` : ", new session"));
  }
  add("Decision latency", entry.latencyMs != null ? `${entry.latencyMs.toFixed(1)} ms` : null);
  add("Round trip", entry.roundTripMs != null ? `${entry.roundTripMs.toFixed(1)} ms` : null);
  $("decision").replaceChildren(
    el("p", {}, "Chosen model: ", el("span", { class: "decision-model", id: "chosen-model", text: entry.model })),
    facts);
  const scores = Object.entries(entry.scores).sort((a, b) => b[1] - a[1]);
  $("scores-block").hidden = !scores.length;
  $("scores-title").textContent = entry.intent != null && state.config?.strategy !== "auto"
    ? "Scores per intent" : "Scores per model";
  bars($("scores"), scores, entry.intent || entry.model);
  $("answer-block").hidden = entry.answer == null;
  if (entry.answer != null) $("answer").textContent = entry.answer;
  $("raw-request").textContent = JSON.stringify(entry.request, null, 2);
  $("raw-response").textContent = JSON.stringify(entry.response, null, 2);
}

function renderHistory() {
  $("history").replaceChildren(...state.history.map((entry) => el("li", {},
    el("button", { type: "button", onclick: () => { renderDecision(entry); renderSnippets(entry.request); },
      text: `${entry.time.toLocaleTimeString()} — ${entry.model}` +
        (entry.intent ? ` (${entry.intent})` : "") +
        (entry.latencyMs != null ? `, ${entry.latencyMs.toFixed(1)} ms` : "") }))));
}

function pyLiteral(value, indent = "") {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number" || typeof value === "string") return JSON.stringify(value);
  const inner = indent + "    ";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return "[\n" + value.map((v) => inner + pyLiteral(v, inner)).join(",\n") + ",\n" + indent + "]";
  }
  const keys = Object.keys(value);
  if (!keys.length) return "{}";
  return "{\n" + keys.map((k) => `${inner}${JSON.stringify(k)}: ${pyLiteral(value[k], inner)}`)
    .join(",\n") + ",\n" + indent + "}";
}

function renderSnippets(body) {
  const origin = window.location.origin;
  const auth = state.apiKey ? ` \\\n  -H "authorization: Bearer $ROUTER_API_KEY"` : "";
  $("curl-snippet").value =
    `curl -s ${origin}/v1/chat/completions \\\n  -H 'content-type: application/json'${auth} \\\n` +
    `  -d @- <<'JSON'\n${JSON.stringify(body)}\nJSON`;
  const { model, messages, router, stream } = body;
  const lines = [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${origin}/v1", api_key=os.environ.get("ROUTER_API_KEY", "unused"))`,
    `messages = ${pyLiteral(messages)}`,
    "resp = client.chat.completions.create(",
    `    model=${JSON.stringify(model)},`,
    "    messages=messages,",
  ];
  if (router) lines.push(`    extra_body={"router": ${pyLiteral(router, "    ")}},`);
  if (stream) lines.push("    stream=True,");
  lines.push(")");
  if (stream) {
    lines.push("for chunk in resp:", "    print(chunk.choices[0].delta.content or \"\", end=\"\")");
  } else {
    lines.push("print(resp.choices[0].message.content)  # the chosen model",
      "print(resp.model_extra[\"router\"])  # intent, scores, reason, latency");
  }
  $("python-snippet").value = lines.join("\n");
}

// ---- live metrics --------------------------------------------------------------------

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const m of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function quantile(buckets, q) {
  // buckets: [[le, cumulative count]] sorted by le, the last is +Inf (Prometheus-style).
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(le)) return prevLe;
      const width = count - prevCount;
      return prevLe + (le - prevLe) * (width ? (rank - prevCount) / width : 0);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

async function refreshMetrics() {
  let text;
  try {
    const resp = await fetch("/metrics");
    if (!resp.ok) return;
    text = await resp.text();
  } catch (_) {
    return;
  }
  const samples = parseMetrics(text);
  const byModel = {};
  const byIntent = {};
  const byReason = {};
  const buckets = {};
  for (const s of samples) {
    if (s.name === "llm_router_decisions_total") {
      byModel[s.labels.model] = (byModel[s.labels.model] || 0) + s.value;
      const intent = s.labels.intent || "(none)";
      byIntent[intent] = (byIntent[intent] || 0) + s.value;
      const reason = s.labels.reason || "(none)";
      byReason[reason] = (byReason[reason] || 0) + s.value;
    } else if (s.name === "llm_router_decision_duration_seconds_bucket") {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      buckets[le] = (buckets[le] || 0) + s.value;
    }
  }
  const sorted = Object.entries(buckets).map(([le, c]) => [Number(le), c]).sort((a, b) => a[0] - b[0]);
  const p50 = quantile(sorted, 0.5);
  const p99 = quantile(sorted, 0.99);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  $("live-latency").textContent = p50 == null
    ? "Decision latency: no decisions yet."
    : `Decision latency over ${total} decisions: p50 ${(p50 * 1000).toFixed(1)} ms, p99 ${(p99 * 1000).toFixed(1)} ms (histogram estimate).`;
  bars($("live-models"), Object.entries(byModel).sort((a, b) => b[1] - a[1]));
  bars($("live-intents"), Object.entries(byIntent).sort((a, b) => b[1] - a[1]));
  bars($("live-reasons"), Object.entries(byReason).sort((a, b) => b[1] - a[1]));
  $("live-updated").textContent = "Updated " + new Date().toLocaleTimeString();
}

// ---- wiring --------------------------------------------------------------------------

function resetConversation() {
  $("conversation").replaceChildren();
  addTurn("user");
  showError("");
}

document.addEventListener("DOMContentLoaded", () => {
  $("add-user").addEventListener("click", () => addTurn("user").querySelector(".text").focus());
  $("add-assistant").addEventListener("click", () => addTurn("assistant").querySelector(".text").focus());
  $("add-system").addEventListener("click", () => addTurn("system").querySelector(".text").focus());
  $("send").addEventListener("click", send);
  $("clear").addEventListener("click", resetConversation);
  $("api-key").addEventListener("change", (ev) => { state.apiKey = ev.target.value.trim(); loadConfig(); });
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const area = $(button.dataset.target);
      area.select();
      try { await navigator.clipboard.writeText(area.value); button.textContent = "Copied"; }
      catch (_) { document.execCommand("copy"); }
    });
  }
  resetConversation();
  loadConfig();
  refreshMetrics();
  setInterval(refreshMetrics, METRICS_EVERY_MS);
});
