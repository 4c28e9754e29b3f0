// edge-boneage demo page: load a .tflite (bundled models/default.tflite or user-chosen), read its metadata,
// preprocess a radiograph exactly like edge_boneage.preprocess, run LiteRT.js (WASM, CPU) and show the result,
// flagged (the age still shown) when the input quality gate (quality.js, edge_boneage.quality) does not accept the
// picture as a hand radiograph.
// window.edgeBoneage is a small API used by tests/test_android_demo.py, tests/test_quality_ports.py and
// android_demo/bench_wasm.py.
import { loadLiteRt, loadAndCompile, Tensor } from "@litertjs/core";
import * as B from "./boneage.js";
import * as Q from "./quality.js";
import { decodeBlob } from "./decode.js";

const $ = (id) => document.getElementById(id);
const state = { model: null, meta: null, spec: null, inputs: {}, outputs: [], label: "", grey: null, source: null,
                imageName: "" };
let runtimeReady = null;

function showError(e) {
  const msg = e && e.message ? e.message : String(e);
  $("error").textContent = msg;
  document.title = "ERROR: " + msg;
  console.error(e);
}

function initRuntime() {
  if (!runtimeReady) {
    const wasmDir = new URL("./vendor/litertjs/wasm/", location.href).href;
    runtimeReady = loadLiteRt(wasmDir);
  }
  return runtimeReady;
}

// ---------------------------------------------------------------------------------------------------- model

async function loadModelBytes(bytes, label) {
  await initRuntime();
  bytes = new Uint8Array(bytes);
  const meta = B.readMetadata(bytes);  // validates the flatbuffer identifier too
  if (meta && meta.task === "tw3_stage") {
    throw new Error(`${label}: a TW3 stage classifier (per-bone crops); this demo runs whole-hand age models`);
  }
  if (state.model) { state.model.delete(); state.model = null; }
  const model = await loadAndCompile(B.pinDynamicDims(bytes).bytes, { accelerator: "wasm" });
  const inputs = {};
  for (const d of model.getInputDetails()) inputs[B.tensorKey(d.name)] = d;
  const outputs = model.getOutputDetails().map((d) => B.tensorKey(d.name));
  if (!inputs.image) throw new Error(`${label}: model has no input "image" (inputs: ${Object.keys(inputs)})`);
  const shape = Array.from(inputs.image.shape);
  if (shape.length !== 4 || shape[1] !== shape[2] || shape[3] !== 1) {
    throw new Error(`${label}: input "image" has shape [${shape}], expected [1,S,S,1]`);
  }
  const spec = B.preprocessSpec(meta, shape[1]);
  Object.assign(state, { model, meta, spec, inputs, outputs, label });
  const sexNeeded = "sex" in inputs;
  $("sexbox").style.display = sexNeeded ? "" : "none";
  // `edge-boneage export` writes model = {name, registry_name, ...} and source_validation_mae_months
  const m = meta && meta.model;
  const modelName = m && typeof m === "object" ? (m.registry_name || m.name) : m;
  const valMae = meta && (meta.source_validation_mae_months ?? meta.val_mae_months);
  $("modelinfo").textContent =
    `${label}: ${modelName ? modelName + ", " : ""}input ${spec.input_size}×${spec.input_size} ` +
    `${inputs.image.dtype}${spec.enhance ? ", " + spec.enhance : ""}; inputs ${Object.keys(inputs).join(", ")}; ` +
    `outputs ${outputs.join(", ")}${valMae != null ? `; validation MAE ${Number(valMae).toFixed(2)} months` : ""}` +
    (meta ? "" : " (no edge_boneage metadata: default preprocessing)") +
    (meta && meta.note ? ` — ${meta.note}` : "");
  updateRunButton();
  return describeModel();
}

function describeModel() {
  return {
    label: state.label, meta: state.meta, spec: state.spec, outputs: state.outputs,
    inputs: Object.fromEntries(Object.entries(state.inputs).map(([k, d]) => [k, { dtype: d.dtype, shape: Array.from(d.shape) }])),
  };
}

async function loadModelUrl(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return loadModelBytes(await resp.arrayBuffer(), url.split("/").pop());
}

// ---------------------------------------------------------------------------------------------------- image

/** {grey, source}: the grey image the model sees and what the quality gate's colour check needs (decode.js). */
async function fetchImage(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return decodeBlob(await resp.blob());
}

async function fetchGrey(url) {
  return (await fetchImage(url)).grey;
}

/** The quality gate on a decoded image, as `predict` runs it: the model's hand box is reused when it was found on
 * the image itself (frame "squeeze"), otherwise the hand is located on the image here. */
function qualityOf(grey, source, box) {
  const t0 = performance.now();
  const q = Q.assess(grey, source, box && state.spec && state.spec.frame === "squeeze" ? box : null);
  return { ...q, warning: Q.warning(q), ms: performance.now() - t0 };
}

/** The gate's feature check (edge_boneage.featuregate.judge): a model carrying the output "feature_residual" and
 * its threshold (metadata outputs.feature_residual) flags a residual above it, as `predict` does. */
export function featureCheck(quality, out, meta) {
  const rec = meta && meta.outputs ? meta.outputs.feature_residual : null;
  if (!rec || rec.threshold == null || !out.feature_residual) return quality;
  const v = out.feature_residual[0];
  quality.featureResidual = v;
  if (!(v <= rec.threshold)) {  // NaN flags too
    const reason = "unlike the training radiographs";
    quality.ok = false;
    quality.reasons = [...quality.reasons, reason];
    quality.scores = { ...quality.scores, details: { ...(quality.scores.details || {}),
      [reason]: `feature residual ${v.toFixed(2)} > ${rec.threshold.toFixed(2)}` } };
    quality.warning = Q.warning(quality);
  }
  return quality;
}

// ---------------------------------------------------------------------------------------------------- inference

function inputTensors(img, sex) {
  const d = state.inputs.image;
  const S = state.spec.input_size;
  const data = d.dtype === "uint8" ? new Uint8Array(img.data) : Float32Array.from(img.data);
  const feeds = { image: new Tensor(data, [1, S, S, 1]) };
  if (state.inputs.sex) {
    if (sex !== 0 && sex !== 1) throw new Error("choose the sex (the model uses it)");
    feeds.sex = new Tensor(new Float32Array([sex]), [1, 1]);
  }
  for (const k of Object.keys(state.inputs)) if (!(k in feeds)) throw new Error(`model input "${k}" is not supported`);
  return feeds;
}

async function runOnce(feeds) {
  const out = await state.model.run(feeds);
  const res = {};
  for (const [name, t] of Object.entries(out)) {
    res[B.tensorKey(name)] = Array.from(t.toTypedArray());
    t.delete();
  }
  return res;
}

async function predictGrey(grey, sex, source = null) {
  if (!state.model) throw new Error("load a model first");
  const t0 = performance.now();
  const { image: img, box } = B.preprocessWithBox(grey, state.spec);
  const t1 = performance.now();
  const quality = qualityOf(grey, source, box);
  const feeds = inputTensors(img, sex);
  const t2 = performance.now();
  const out = await runOnce(feeds);
  const t3 = performance.now();
  Object.values(feeds).forEach((t) => t.delete());
  if (!out.age) throw new Error(`model has no output "age" (outputs: ${Object.keys(out)})`);
  const age = out.age[0];
  const probs = out.probs || null;
  featureCheck(quality, out, state.meta);
  const ival = state.meta && state.meta.outputs && state.meta.outputs.age ? state.meta.outputs.age.interval : null;
  return {
    age, ...B.yearsMonths(age), probs, decoded: probs ? B.decodeProbs(probs) : null,
    interval: B.intervalFor(age, ival), coverage: ival ? ival.coverage : null,
    preprocessMs: t1 - t0, inferenceMs: t3 - t2, input: img,
    source: { width: grey.width, height: grey.height }, quality,
  };
}

/** Wall time of `runs` model invocations (after `warmup`) on one preprocessed input, incl. reading outputs, ms. */
async function benchmark(url, sex, runs = 50, warmup = 5) {
  const grey = await fetchGrey(url);
  const img = B.preprocess(grey, state.spec);
  const feeds = inputTensors(img, sex);
  for (let i = 0; i < warmup; i++) await runOnce(feeds);
  const times = [];
  const start = performance.now();
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await runOnce(feeds);
    times.push(performance.now() - t);
  }
  const meanMs = (performance.now() - start) / runs;  // timer resolution is coarse (0.1 ms): the mean is finer
  Object.values(feeds).forEach((t) => t.delete());
  times.sort((a, b) => a - b);
  return { medianMs: times[times.length >> 1], minMs: times[0], meanMs, runs };
}

// ---------------------------------------------------------------------------------------------------- UI

function drawGrey(canvas, img, maxSide) {
  const scale = maxSide ? Math.min(1, maxSide / Math.max(img.width, img.height)) : 1;
  const full = document.createElement("canvas");
  full.width = img.width; full.height = img.height;
  const id = full.getContext("2d").createImageData(img.width, img.height);
  for (let i = 0; i < img.data.length; i++) {
    const v = img.data[i];
    id.data[4 * i] = id.data[4 * i + 1] = id.data[4 * i + 2] = v; id.data[4 * i + 3] = 255;
  }
  full.getContext("2d").putImageData(id, 0, 0);
  canvas.width = Math.round(img.width * scale); canvas.height = Math.round(img.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(full, 0, 0, canvas.width, canvas.height);
}

function drawChart(probs, ageMonths) {
  const c = $("chart"), ctx = c.getContext("2d");
  const W = c.width, H = c.height, left = 40, bottom = 30, top = 10;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "13px sans-serif"; ctx.fillStyle = "#5a6470";
  const n = probs.length, bw = (W - left - 10) / n, pmax = Math.max(0.05, ...probs);
  ctx.strokeStyle = "#c8ced6";
  for (const f of [0, 0.5, 1]) {
    const y = H - bottom - f * (H - bottom - top);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W - 10, y); ctx.stroke();
    ctx.fillText((f * pmax).toFixed(2), 2, y + 4);
  }
  const best = B.decodeProbs(probs).argmax;
  for (let i = 0; i < n; i++) {
    const h = (probs[i] / pmax) * (H - bottom - top);
    ctx.fillStyle = i === best ? "#1565c0" : "#90b4dc";
    ctx.fillRect(left + i * bw + 2, H - bottom - h, bw - 4, h);
    ctx.fillStyle = "#5a6470";
    ctx.fillText(String(i), left + i * bw + bw / 2 - 4, H - bottom + 16);
  }
  const x = left + (ageMonths / 12) * bw;  // age marker on the same year axis
  ctx.strokeStyle = "#d32f2f"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, H - bottom); ctx.stroke(); ctx.lineWidth = 1;
  ctx.fillStyle = "#5a6470"; ctx.fillText("years", W - 50, H - 2);
}

function showQuality(q) {
  const box = $("quality");
  box.replaceChildren();
  $("age").classList.toggle("flagged", !q.ok);
  $("qflag").hidden = q.ok;
  box.className = q.ok ? "muted" : "qbox";
  if (q.ok) {
    box.textContent = `Input check (${q.scores.gate}): accepted as a hand radiograph`;
    return;
  }
  const head = document.createElement("div");
  head.className = "qhead";
  head.textContent = q.warning;
  const list = document.createElement("ul");
  for (const reason of q.reasons) {
    const li = document.createElement("li");
    li.textContent = `${reason}: ${q.scores.details[reason]}`;
    list.append(li);
  }
  box.append(head, list);
}

function showResult(r, grey) {
  $("resultcard").hidden = false;
  $("age").textContent = `${r.years} y ${r.months} m`;
  showQuality(r.quality);
  $("agesub").textContent = `${r.age.toFixed(1)} months` +
    (r.interval ? ` · ${Math.round(100 * (r.coverage || 0.9))} % interval ${(r.interval[0] / 12).toFixed(1)}–` +
      `${(r.interval[1] / 12).toFixed(1)} y` : "") +
    (r.decoded ? ` · most likely ${r.decoded.argmax}–${r.decoded.argmax + 1} y (p = ${r.probs[r.decoded.argmax].toFixed(2)})` : "");
  $("latency").textContent = `LiteRT inference ${r.inferenceMs.toFixed(1)} ms · preprocessing ${r.preprocessMs.toFixed(1)} ms ` +
    `(${r.source.width}×${r.source.height} → ${state.spec.input_size}²) · input check ${r.quality.ms.toFixed(1)} ms`;
  $("insize").textContent = `${state.spec.input_size}×${state.spec.input_size}`;
  drawGrey($("modelin"), r.input);
  drawGrey($("preview"), grey, 300);
  if (r.probs) drawChart(r.probs, r.age);
}

function selectedSex() {
  const el = document.querySelector('input[name="sex"]:checked');
  return el ? Number(el.value) : null;
}

function updateRunButton() {
  $("run").disabled = !(state.model && state.grey && (!state.inputs.sex || selectedSex() !== null));
}

async function runUi() {
  $("error").textContent = "";
  try {
    const r = await predictGrey(state.grey, selectedSex(), state.source);
    showResult(r, state.grey);
    document.title = "DONE";
  } catch (e) { showError(e); }
}

async function onImageFile(file) {
  if (!file) return;
  $("error").textContent = "";
  try {
    ({ grey: state.grey, source: state.source } = await decodeBlob(file));
    state.imageName = file.name;
    updateRunButton();
    if (!$("run").disabled) await runUi();
  } catch (e) { showError(`${file.name}: ${e.message}`); }
}

function wireUi() {
  $("modelfile").addEventListener("change", async (ev) => {
    const f = ev.target.files[0];
    if (!f) return;
    $("error").textContent = "";
    try { await loadModelBytes(await f.arrayBuffer(), f.name); if (state.grey) await runUi(); }
    catch (e) { showError(`${f.name}: ${e.message}`); }
  });
  $("imagefile").addEventListener("change", (ev) => onImageFile(ev.target.files[0]));
  $("camerafile").addEventListener("change", (ev) => onImageFile(ev.target.files[0]));
  for (const r of document.querySelectorAll('input[name="sex"]')) {
    r.addEventListener("change", () => { updateRunButton(); if (!$("run").disabled) runUi(); });
  }
  $("run").addEventListener("click", runUi);
  if (window.EdgeBoneageNative) {  // Android bridge (android_demo/app): device info for the latency line
    try { $("native").textContent = "Device: " + window.EdgeBoneageNative.deviceInfo(); } catch (e) { /* ignore */ }
  }
}

// ---------------------------------------------------------------------------------------------------- startup

window.edgeBoneage = {
  B, Q, state, featureCheck, initRuntime, loadModelUrl, loadModelBytes, fetchGrey, fetchImage, benchmark,
  async predictUrl(url, sex) {
    const { grey, source } = await fetchImage(url);
    const r = await predictGrey(grey, sex, source);
    const q = r.quality;
    return { age: r.age, years: r.years, months: r.months, probs: r.probs, inferenceMs: r.inferenceMs,
             preprocessMs: r.preprocessMs, source: r.source, interval: r.interval,
             quality: { ok: q.ok, reasons: q.reasons, details: q.scores.details, warning: q.warning } };
  },
  async qualityUrl(url) {  // the page's decode + the quality gate, no model needed (tests/test_quality_ports.py)
    const { grey, source } = await fetchImage(url);
    const q = qualityOf(grey, source, null);
    return { ok: q.ok, reasons: q.reasons, scores: q.scores, raw: q.raw, warning: q.warning, ms: q.ms,
             format: source.format, mode: source.mode };
  },
  async preprocessUrl(url, spec) {  // base64 of the S x S model input, for pixel-parity tests
    const img = B.preprocess(await fetchGrey(url), spec || state.spec);
    let s = ""; for (const v of img.data) s += String.fromCharCode(v);
    return { width: img.width, height: img.height, b64: btoa(s) };
  },
  async showUrl(url, sex) {  // load an image by URL into the UI and run it (screenshots)
    ({ grey: state.grey, source: state.source } = await fetchImage(url));
    const el = document.querySelector(`input[name="sex"][value="${sex}"]`);
    if (el) el.checked = true;
    updateRunButton();
    await runUi();
    return $("age").textContent;
  },
  shownQuality() {  // what the result card shows about the input check (tests)
    return { flagShown: !$("qflag").hidden, flagText: $("qflag").textContent,
             ageMarked: $("age").classList.contains("flagged"), text: $("quality").innerText, age: $("age").textContent };
  },
};

async function main() {
  wireUi();
  try {
    await initRuntime();
    $("modelinfo").textContent = "runtime ready; choose a model";
    const q = new URLSearchParams(location.search);
    const bundled = q.get("model") || "models/default.tflite";
    try {
      await loadModelUrl(bundled);
    } catch (e) {
      if (q.get("model")) throw e;  // an explicitly requested model must load
      $("modelinfo").textContent = "runtime ready; no bundled model: choose a .tflite file";
    }
    if (q.get("image")) await window.edgeBoneage.showUrl(q.get("image"), q.get("sex") ?? "");
    if (!q.get("image")) document.title = "READY";
  } catch (e) { showError(e); }
}
main();
