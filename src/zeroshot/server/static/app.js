// The zeroshot web page: plain JavaScript against the server's own /v1 API, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

// --- talking to the API ------------------------------------------------------------------------
function authHeaders() {
  const key = localStorage.getItem("zeroshot-api-key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body.error?.message || message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return response;
}

function setStatus(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// Say honestly what a request waits for: a model's first load takes seconds, later calls do not.
async function busy(element, model, doing) {
  let text = doing;
  try {
    const health = await (await fetch("/health")).json();
    const names = { lm: "the language model", clip: "the CLIP model" };
    if (model && health.models_loaded && health.models_loaded[model] === false) {
      text = `Loading ${names[model]} (first use, this can take a while)… then ${doing.toLowerCase()}`;
    }
  } catch (_) { /* the request itself will report the problem */ }
  setStatus(element, text);
}

function labelsOf(id) {
  return $(id).value.split(",").map((label) => label.trim()).filter(Boolean);
}

// A drop zone and a file picker that both hand one file to `handle`.
function fileInput(zoneId, pickerId, buttonId, handle) {
  const zone = $(zoneId);
  const picker = $(pickerId);
  if (buttonId) $(buttonId).addEventListener("click", () => picker.click());
  zone.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => picker.files[0] && handle(picker.files[0]));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) handle(file);
  });
}

// Images need the API key too, which <img src> cannot send: fetch them and show a blob URL.
async function showImage(img, url) {
  const response = await api(url);
  img.src = URL.createObjectURL(await response.blob());
}

// --- tabs --------------------------------------------------------------------------------------
function selectPanel(name) {
  for (const tab of document.querySelectorAll("nav button")) {
    const selected = tab.dataset.panel === name;
    tab.setAttribute("aria-selected", String(selected));
    $(`panel-${tab.dataset.panel}`).hidden = !selected;
  }
  history.replaceState(null, "", `#${name}`);
}

function panelNames() {
  return [...document.querySelectorAll("nav button")].map((tab) => tab.dataset.panel);
}

// --- search ------------------------------------------------------------------------------------
async function runSearch(event, file = null) {
  if (event) event.preventDefault();
  const status = $("search-status");
  const grid = $("search-results");
  const query = $("search-query").value.trim();
  if (!file && !query) {
    setStatus(status, "Type a description, or drop an example image.", true);
    return;
  }
  await busy(status, "clip", file ? `Searching by ${file.name}…` : "Searching…");
  grid.replaceChildren();
  try {
    const started = performance.now();
    let options;
    if (file) {
      const form = new FormData();
      form.append("image", file, file.name);
      form.append("top_k", $("search-k").value);
      options = { method: "POST", body: form };
    } else {
      options = { method: "POST", headers: { "Content-Type": "application/json" },
                  body: JSON.stringify({ text: query, top_k: Number($("search-k").value) }) };
    }
    const response = await api("/v1/search", options);
    const body = await response.json();
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(status, `${body.results.length} of ${body.index_size} images in ${seconds} s`);
    for (const hit of body.results) grid.append(resultCard(hit));
  } catch (error) {
    setStatus(status, error.message, true);
  }
  showInfo();
}

function resultCard(hit) {
  const figure = document.createElement("figure");
  figure.className = "result";
  const name = hit.path.split(/[\\/]/).pop();
  // Served by /v1/image when the file lies under an --image-root (a 403 shows as "not readable").
  const url = `/v1/image?path=${encodeURIComponent(hit.path)}`;
  const img = document.createElement("img");
  img.alt = name;
  img.loading = "lazy";
  showImage(img, url).catch(() => {
    const missing = document.createElement("div");
    missing.className = "missing";
    missing.textContent = "not readable here (outside the image roots?)";
    img.replaceWith(missing);
  });
  figure.append(img);
  const caption = document.createElement("figcaption");
  const label = document.createElement("span");
  label.textContent = name;
  label.title = hit.path;
  const score = document.createElement("span");
  score.textContent = hit.score.toFixed(3);
  caption.append(label, score);
  figure.append(caption);
  return figure;
}

// --- image classification ----------------------------------------------------------------------
let classifyCurrent = null; // the last image chosen, re-classified when the labels change (Enter)

async function classifyFile(file) {
  classifyCurrent = file;
  const status = $("classify-status");
  const preview = $("classify-preview");
  const bars = $("classify-bars");
  const labels = labelsOf("classify-labels");
  bars.replaceChildren();
  if (labels.length < 2) {
    setStatus(status, "Give at least two labels, separated by commas.", true);
    return;
  }
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  await busy(status, "clip", "Classifying…");
  const form = new FormData();
  form.append("files", file, file.name);
  for (const label of labels) form.append("labels", label);
  form.append("top_k", $("classify-topk").value);
  const templates = $("classify-templates").value.split("|").map((t) => t.trim()).filter(Boolean);
  for (const template of templates) form.append("templates", template);
  try {
    const response = await api("/v1/classify/image", { method: "POST", body: form });
    const result = (await response.json()).results[0];
    setStatus(status, `Most likely: ${result.label}`);
    for (const { label, score } of result.top_k) bars.append(bar(label, score));
  } catch (error) {
    setStatus(status, error.message, true);
  }
  showInfo();
}

function bar(label, probability) {
  const row = document.createElement("div");
  row.className = "bar";
  const name = document.createElement("span");
  name.textContent = label;
  const track = document.createElement("div");
  track.className = "track";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${(probability * 100).toFixed(1)}%`;
  track.append(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = `${(probability * 100).toFixed(1)}%`;
  row.append(name, track, value);
  return row;
}

// --- detection ---------------------------------------------------------------------------------
let detectCurrent = null;
let detections = []; // every box the server found (threshold 0); the slider only filters them

async function detectFile(file) {
  detectCurrent = file;
  const status = $("detect-status");
  const queries = labelsOf("detect-queries");
  if (!queries.length) {
    setStatus(status, "Say what to find, separated by commas.", true);
    return;
  }
  const preview = $("detect-preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  detections = [];
  drawBoxes();
  await busy(status, "clip", "Detecting…");
  const form = new FormData();
  form.append("image", file, file.name);
  for (const query of queries) form.append("queries", query);
  form.append("threshold", "0");
  try {
    const body = await (await api("/v1/detect", { method: "POST", body: form })).json();
    detections = body.detections.map((d) => ({ ...d, width: body.width, height: body.height }));
    setStatus(status, `${body.detections.length} scored regions of ${body.proposals} proposals`);
    drawBoxes();
  } catch (error) {
    setStatus(status, error.message, true);
  }
  showInfo();
}

function drawBoxes() {
  const threshold = Number($("detect-threshold").value);
  $("detect-threshold-value").textContent = threshold.toFixed(2);
  const svg = $("detect-boxes");
  const list = $("detect-list");
  svg.replaceChildren();
  list.replaceChildren();
  const kept = detections.filter((d) => d.score >= threshold);
  if (detections.length) svg.setAttribute("viewBox", `0 0 ${detections[0].width} ${detections[0].height}`);
  const ns = "http://www.w3.org/2000/svg";
  for (const [index, d] of kept.entries()) {
    const [x0, y0, x1, y1] = d.box;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0 }).forEach(([k, v]) => rect.setAttribute(k, v));
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x0 + 2);
    label.setAttribute("y", y0 + 12);
    label.textContent = `${index + 1}`;
    svg.append(rect, label);
    const item = document.createElement("li");
    item.textContent = `${d.label}: ${d.score.toFixed(3)} at [${d.box.map((v) => Math.round(v)).join(", ")}]`;
    list.append(item);
  }
  if (detections.length && !kept.length) {
    const item = document.createElement("li");
    item.textContent = "No region scores above the threshold; lower the slider.";
    list.append(item);
  }
}

// --- text classification -----------------------------------------------------------------------
async function classifyTexts(event) {
  event.preventDefault();
  const status = $("text-status");
  const out = $("text-results");
  const labels = labelsOf("text-labels");
  const texts = $("text-inputs").value.split("\n").map((t) => t.trim()).filter(Boolean);
  if (labels.length < 2 || !texts.length) {
    setStatus(status, "Give at least two labels and one text (one per line).", true);
    return;
  }
  out.replaceChildren();
  await busy(status, "lm", "Classifying…");
  try {
    const response = await api("/v1/classify/text", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ labels, texts, normalization: $("text-normalization").value,
                             calibrate: $("text-calibrate").checked }),
    });
    const body = await response.json();
    body.results.forEach((result, i) => {
      const block = document.createElement("div");
      block.className = "text-result";
      const heading = document.createElement("p");
      heading.textContent = `${texts[i]} → ${result.label}`;
      block.append(heading);
      const ranked = Object.entries(result.scores).sort((a, b) => b[1] - a[1]);
      for (const [label, probability] of ranked) block.append(bar(label, probability));
      out.append(block);
    });
    setStatus(status, `${body.results.length} texts classified${$("text-calibrate").checked ? " (calibrated)" : ""}`);
  } catch (error) {
    setStatus(status, error.message, true);
  }
  showInfo();
}

// --- machine-written text ------------------------------------------------------------------------
async function judgeTexts(event) {
  event.preventDefault();
  const status = $("generated-status");
  const rows = $("generated-results").querySelector("tbody");
  const texts = $("generated-inputs").value.split(/\n\s*\n/).map((t) => t.trim()).filter(Boolean);
  if (!texts.length) {
    setStatus(status, "Paste at least one text.", true);
    return;
  }
  rows.replaceChildren();
  await busy(status, "lm", "Judging…");
  try {
    const detector = $("generated-detector").value;
    const response = await api("/v1/detect-generated", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(detector ? { texts, detector } : { texts }),
    });
    const body = await response.json();
    for (const item of body.texts) {
      const verdict = item.machine === null ? "no threshold" : (item.machine ? "machine-written" : "human");
      const chance = item.probability === null ? "–" : item.probability.toFixed(2);
      const tr = document.createElement("tr");
      for (const cell of [texts[item.index].slice(0, 80), verdict, chance, item.score.toFixed(3), item.tokens]) {
        const td = document.createElement("td");
        td.textContent = String(cell);
        tr.append(td);
      }
      rows.append(tr);
    }
    setStatus(status, `${body.detector}: ${body.texts.length} text(s), threshold ${body.threshold === null ? "none" : body.threshold.toFixed(3)} (${body.threshold_source}), ${body.tokens_per_second} tokens/s`);
  } catch (error) {
    setStatus(status, error.message, true);
  }
}

// --- streaming generation ----------------------------------------------------------------------
let generation = null; // the AbortController of the running generation

async function runGeneration(event) {
  event.preventDefault();
  const status = $("generate-status");
  const output = $("generate-output");
  const prompt = $("generate-prompt").value;
  const promptSpan = document.createElement("span");
  promptSpan.className = "prompt";
  promptSpan.textContent = prompt;
  const completion = document.createElement("span");
  completion.className = "completion";
  output.replaceChildren(promptSpan, completion);
  generation = new AbortController();
  $("generate-run").disabled = true;
  $("generate-stop").disabled = false;
  await busy(status, "lm", "Generating…");
  const chat = $("generate-chat").checked;
  const request = chat
    ? { model: "default", messages: [{ role: "user", content: prompt }], stream: true,
        max_tokens: Number($("generate-max").value), temperature: Number($("generate-temperature").value) }
    : { prompt, stream: true, max_tokens: Number($("generate-max").value),
        temperature: Number($("generate-temperature").value) };
  if ($("generate-seed").value !== "") request.seed = Number($("generate-seed").value);
  try {
    const response = await api(chat ? "/v1/chat/completions" : "/v1/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
      signal: generation.signal,
    });
    let pieces = 0;
    for await (const { event: kind, data } of serverSentEvents(response)) {
      if (data === "[DONE]") break;
      if (chat) {
        if (data.error) { setStatus(status, data.error.message, true); break; }
        const choice = data.choices[0];
        if (choice.delta.content) { completion.textContent += choice.delta.content; pieces += 1; }
        if (choice.finish_reason) {
          setStatus(status, pieces ? `Done (${choice.finish_reason})`
            : `No text: the model ended at once (finish_reason=${choice.finish_reason})`);
        }
      } else if (kind === "done") {
        const model = data.model.split(/[\\/]/).pop();
        setStatus(status, data.usage.completion_tokens
          ? `Done (${data.finish_reason}, ${data.usage.completion_tokens} tokens, ${model})`
          : `No text: the model ended at once (finish_reason=${data.finish_reason}); an instruct model may answer in chat mode`);
      } else if (kind === "error") {
        setStatus(status, data.error.message, true);
      } else {
        completion.textContent += data.text;
      }
    }
  } catch (error) {
    setStatus(status, error.name === "AbortError" ? "Stopped." : error.message, error.name !== "AbortError");
  } finally {
    $("generate-run").disabled = false;
    $("generate-stop").disabled = true;
    generation = null;
  }
  showInfo();
}

// EventSource cannot POST, so the stream is read and split into events here.
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      const lines = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) lines.push(line.slice(5).trimStart());
      }
      const text = lines.join("\n");
      if (lines.length) yield { event: kind, data: text === "[DONE]" ? text : JSON.parse(text) };
    }
  }
}

// --- server info -------------------------------------------------------------------------------
async function showInfo() {
  try {
    const info = await (await api("/v1/info")).json();
    const versions = `zeroshot ${info.versions.zeroshot ?? "?"}`;
    const lm = info.models.lm ? `LM ${info.models.lm.name.split("/").pop()} (${info.models.lm.backend}) loaded`
      : "LM not loaded yet (loads on first use)";
    const clip = info.models.clip ? `CLIP ${info.models.clip.name.split("/").pop()} loaded`
      : "CLIP not loaded yet (loads on first use)";
    $("info").textContent = `${versions} · ${lm} · ${clip} · auth ${info.settings.auth_required ? "on" : "off"} · API docs at /docs`;
  } catch (error) {
    $("info").textContent = `Server info: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const keyInput = $("api-key");
  keyInput.value = localStorage.getItem("zeroshot-api-key") || "";
  keyInput.addEventListener("change", () => {
    localStorage.setItem("zeroshot-api-key", keyInput.value.trim());
    showInfo();
  });
  for (const tab of document.querySelectorAll("nav button")) {
    tab.addEventListener("click", () => selectPanel(tab.dataset.panel));
  }
  const initial = location.hash.slice(1);
  if (panelNames().includes(initial)) selectPanel(initial);
  $("search-form").addEventListener("submit", (event) => runSearch(event));
  fileInput("search-drop", "search-file", "search-pick", (file) => runSearch(null, file));
  // Enter in a field submits its form: every form is handled here, so the page never reloads.
  $("classify-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (classifyCurrent) classifyFile(classifyCurrent);
    else setStatus($("classify-status"), "Choose or drop an image first.");
  });
  fileInput("drop-zone", "classify-file", "classify-pick", classifyFile);
  $("detect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (detectCurrent) detectFile(detectCurrent);
    else setStatus($("detect-status"), "Choose or drop an image first.");
  });
  fileInput("detect-drop", "detect-file", "detect-pick", detectFile);
  $("detect-threshold").addEventListener("input", drawBoxes);
  $("text-form").addEventListener("submit", classifyTexts);
  $("generate-form").addEventListener("submit", runGeneration);
  $("generated-form").addEventListener("submit", judgeTexts);
  $("generate-stop").addEventListener("click", () => generation?.abort());
  showInfo();
});
