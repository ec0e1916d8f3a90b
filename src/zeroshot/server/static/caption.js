// The captioning page: POST /v1/caption with texts (JSON) or images (multipart), show one row per input.
"use strict";

const $ = (id) => document.getElementById(id);

function authHeaders() {
  const key = localStorage.getItem("zeroshot-api-key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function caption(event) {
  event.preventDefault();
  const status = $("caption-status");
  const body = $("caption-results").querySelector("tbody");
  const texts = $("caption-texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
  const files = Array.from($("caption-files").files);
  const options = { max_tokens: Number($("caption-max-tokens").value), num_beams: Number($("caption-beams").value) };
  let request;
  if (files.length) {
    const form = new FormData();
    files.forEach((file) => form.append("files", file, file.name));
    Object.entries(options).forEach(([k, v]) => form.append(k, String(v)));
    request = { method: "POST", body: form, headers: authHeaders() };
  } else {
    request = { method: "POST", body: JSON.stringify({ input: texts, ...options }),
                headers: { "Content-Type": "application/json", ...authHeaders() } };
  }
  status.textContent = "captioning...";
  body.replaceChildren();
  try {
    const response = await fetch("/v1/caption", request);
    const data = await response.json();
    if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
    for (const row of data.data) {
      const tr = document.createElement("tr");
      for (const text of [row.input, row.caption]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    status.textContent = `${data.data.length} caption(s) from ${data.model}`;
  } catch (error) {
    status.textContent = `error: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const keyInput = $("api-key");
  keyInput.value = localStorage.getItem("zeroshot-api-key") || "";
  keyInput.addEventListener("change", () => localStorage.setItem("zeroshot-api-key", keyInput.value.trim()));
  $("caption-form").addEventListener("submit", caption);
});
