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

// --- search ------------------------------------------------------------------------------------
async function runSearch(event) {
  event.preventDefault();
  const status = $("search-status");
  const grid = $("search-results");
  setStatus(status, "Searching…");
  grid.replaceChildren();
  try {
    const started = performance.now();
    const response = await api("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: $("search-query").value, top_k: Number($("search-k").value) }),
    });
    const body = await response.json();
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(status, `${body.results.length} of ${body.index_size} images in ${seconds} s`);
    for (const hit of body.results) grid.append(resultCard(hit));
  } catch (error) {
    setStatus(status, error.message, true);
  }
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
async function classifyFile(file) {
  const status = $("classify-status");
  const preview = $("classify-preview");
  const bars = $("classify-bars");
  const labels = $("classify-labels").value.split(",").map((label) => label.trim()).filter(Boolean);
  bars.replaceChildren();
  if (labels.length < 2) {
    setStatus(status, "Give at least two labels, separated by commas.", true);
    return;
  }
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  setStatus(status, "Classifying…");
  const form = new FormData();
  form.append("files", file, file.name);
  for (const label of labels) form.append("labels", label);
  try {
    const response = await api("/v1/classify/image", { method: "POST", body: form });
    const result = (await response.json()).results[0];
    setStatus(status, `Most likely: ${result.label}`);
    const ranked = Object.entries(result.scores).sort((a, b) => b[1] - a[1]);
    for (const [label, probability] of ranked) bars.append(bar(label, probability));
  } catch (error) {
    setStatus(status, error.message, true);
  }
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

function setUpDropZone() {
  const zone = $("drop-zone");
  const picker = $("classify-file");
  $("classify-pick").addEventListener("click", () => picker.click());
  zone.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => picker.files[0] && classifyFile(picker.files[0]));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) classifyFile(file);
  });
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
  setStatus(status, "Generating…");
  const request = {
    prompt, stream: true,
    max_tokens: Number($("generate-max").value),
    temperature: Number($("generate-temperature").value),
  };
  if ($("generate-seed").value !== "") request.seed = Number($("generate-seed").value);
  try {
    const response = await api("/v1/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
      signal: generation.signal,
    });
    for await (const { event: kind, data } of serverSentEvents(response)) {
      if (kind === "done") {
        const model = data.model.split(/[\\/]/).pop();
        setStatus(status, `Done (${data.finish_reason}, ${data.usage.completion_tokens} tokens, ${model})`);
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
      if (lines.length) yield { event: kind, data: JSON.parse(lines.join("\n")) };
    }
  }
}

// --- server info -------------------------------------------------------------------------------
async function showInfo() {
  try {
    const info = await (await api("/v1/info")).json();
    const versions = `zeroshot ${info.versions.zeroshot ?? "?"}`;
    const lm = info.models.lm ? `${info.models.lm.name.split("/").pop()} (${info.models.lm.backend})` : "LM loads on first use";
    $("info").textContent = `${versions} · ${lm} · auth ${info.settings.auth_required ? "on" : "off"}`;
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
  if (["search", "classify", "generate"].includes(initial)) selectPanel(initial);
  $("search-form").addEventListener("submit", runSearch);
  $("generate-form").addEventListener("submit", runGeneration);
  $("generate-stop").addEventListener("click", () => generation?.abort());
  setUpDropZone();
  showInfo();
});
