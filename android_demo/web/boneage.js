// edge-boneage browser core: .tflite metadata, preprocessing (docs/PREPROCESSING.md, bit-exact with OpenCV's
// INTER_AREA for uint8), output decoding. No DOM and no LiteRT here, so it can be unit-tested anywhere.
// The Java port (android_demo/app/src/main/java/org/edgeboneage/core/) follows this file line by line.

export const METADATA_NAME = "edge_boneage";
export const NUM_CLASSES = 19;

// ------------------------------------------------------------------------------------------------------------
// .tflite flatbuffer: Model (root) -> metadata[i] {name, buffer} -> buffers[buffer].data (or offset/size)
// Model fields: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers, 5 metadata_buffer,
// 6 metadata, 7 signature_defs. Metadata: 0 name, 1 buffer. Buffer: 0 data [ubyte], 1 offset u64, 2 size u64.

class FlatReader {
  constructor(bytes) {
    this.b = bytes;
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  check(pos, n) {
    if (pos < 0 || pos + n > this.b.length) throw new Error(`corrupt flatbuffer: read of ${n} bytes at ${pos}`);
  }
  u8(p) { this.check(p, 1); return this.v.getUint8(p); }
  u16(p) { this.check(p, 2); return this.v.getUint16(p, true); }
  u32(p) { this.check(p, 4); return this.v.getUint32(p, true); }
  i32(p) { this.check(p, 4); return this.v.getInt32(p, true); }
  u64(p) { this.check(p, 8); return Number(this.v.getBigUint64(p, true)); }
  // absolute position of field `i` of the table at `t`, or 0 if absent
  field(t, i) {
    const vt = t - this.i32(t);
    const vtSize = this.u16(vt);
    const o = 4 + 2 * i;
    if (o >= vtSize) return 0;
    const off = this.u16(vt + o);
    return off ? t + off : 0;
  }
  deref(p) { return p + this.u32(p); }
  vector(t, i) {  // {start, length} of a vector field, or null
    const p = this.field(t, i);
    if (!p) return null;
    const v = this.deref(p);
    return { start: v + 4, length: this.u32(v) };
  }
  string(t, i) {
    const vec = this.vector(t, i);
    if (!vec) return null;
    this.check(vec.start, vec.length);
    return new TextDecoder().decode(this.b.subarray(vec.start, vec.start + vec.length));
  }
  tableAt(vec, k) { const p = vec.start + 4 * k; return this.deref(p); }
}

/** All metadata entries of a .tflite as {name: Uint8Array}. Throws on a non-TFLite or corrupt file. */
export function listMetadata(bytes) {
  if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
  if (bytes.length < 8 || String.fromCharCode(...bytes.subarray(4, 8)) !== "TFL3") {
    throw new Error("not a TFLite/LiteRT model (missing 'TFL3' identifier)");
  }
  const r = new FlatReader(bytes);
  const root = r.deref(0);
  const out = {};
  const md = r.vector(root, 6);
  if (!md) return out;
  const bufs = r.vector(root, 4);
  for (let k = 0; k < md.length; k++) {
    const m = r.tableAt(md, k);
    const name = r.string(m, 0) ?? "";
    const bp = r.field(m, 1);
    const bi = bp ? r.u32(bp) : 0;
    if (!bufs || bi >= bufs.length) throw new Error(`corrupt flatbuffer: metadata '${name}' -> buffer ${bi}`);
    const b = r.tableAt(bufs, bi);
    const data = r.vector(b, 0);
    let payload = new Uint8Array(0);
    if (data && data.length) {
      r.check(data.start, data.length);
      payload = bytes.subarray(data.start, data.start + data.length);
    } else {
      const op = r.field(b, 1), sp = r.field(b, 2);
      const off = op ? r.u64(op) : 0, size = sp ? r.u64(sp) : 0;
      if (off && size) { r.check(off, size); payload = bytes.subarray(off, off + size); }
    }
    out[name] = payload;
  }
  return out;
}

/**
 * A copy of the model with every dynamic dimension (-1 in a tensor's shape_signature, e.g. the batch of a Keras
 * export) pinned to the tensor's static shape (1 for the batch). LiteRT.js cannot resize inputs and rejects
 * [1,...] buffers for [-1,...] inputs; pinned, the model runs as the batch-1 model it is here.
 * Tensor fields: 0 shape, ..., 7 shape_signature. Returns {bytes, pinned: number of dimensions changed}.
 */
export function pinDynamicDims(bytes) {
  const out = new Uint8Array(bytes);  // copy
  const r = new FlatReader(out);
  const root = r.deref(0);
  const subgraphs = r.vector(root, 2);
  let pinned = 0;
  for (let s = 0; subgraphs && s < subgraphs.length; s++) {
    const sg = r.tableAt(subgraphs, s);
    const tensors = r.vector(sg, 0);
    for (let t = 0; tensors && t < tensors.length; t++) {
      const tt = r.tableAt(tensors, t);
      const shape = r.vector(tt, 0), sig = r.vector(tt, 7);
      if (!shape || !sig || shape.length !== sig.length) continue;
      for (let i = 0; i < sig.length; i++) {
        const p = sig.start + 4 * i;
        const fixed = r.i32(shape.start + 4 * i);
        if (r.i32(p) === -1 && fixed > 0) { r.v.setInt32(p, fixed, true); pinned++; }
      }
    }
  }
  return { bytes: out, pinned };
}

/** The edge-boneage JSON record of a .tflite, or null when it has none. */
export function readMetadata(bytes, name = METADATA_NAME) {
  const raw = listMetadata(bytes)[name];
  if (raw === undefined) return null;
  try {
    return JSON.parse(new TextDecoder().decode(raw));
  } catch (e) {
    throw new Error(`metadata '${name}' is not valid JSON (${e.message})`);
  }
}

/** The preprocessing spec of a model: metadata.preprocess, else defaults with the model's input size. */
export function preprocessSpec(meta, inputSize) {
  const p = (meta && meta.preprocess) || {};
  const spec = {
    input_size: p.input_size ?? inputSize,
    enhance: p.enhance ?? null,
    clahe_clip: p.clahe_clip ?? 2.0,
    clahe_tiles: p.clahe_tiles ?? [8, 8],
    pad_value: p.pad_value ?? 0,
    letterbox: p.letterbox ?? "centre-pad-extra-bottom-right",
    resize: p.resize ?? "cv2.INTER_AREA",
    version: p.version ?? 1,
  };
  if (spec.enhance === "none") spec.enhance = null;
  if (!Number.isInteger(spec.input_size) || spec.input_size <= 0) throw new Error(`bad input size ${spec.input_size}`);
  if (inputSize && spec.input_size !== inputSize) {
    throw new Error(`metadata says input ${spec.input_size} px, the model's input tensor is ${inputSize} px`);
  }
  if (spec.version !== 1 || spec.letterbox !== "centre-pad-extra-bottom-right" || spec.resize !== "cv2.INTER_AREA") {
    throw new Error(`unsupported preprocessing spec (version ${spec.version}, ${spec.letterbox}, ${spec.resize})`);
  }
  if (![null, "clahe", "hist"].includes(spec.enhance)) throw new Error(`unknown enhance ${spec.enhance}`);
  return spec;
}

// ------------------------------------------------------------------------------------------------------------
// Pixels. Images are {data: Uint8Array (row-major grey), width, height}.

/** RGBA (canvas ImageData order) -> grey with Pillow's luma: (19595 R + 38470 G + 7471 B + 32768) >> 16. */
export function rgbaToGrey(rgba, width, height) {
  const n = width * height;
  const out = new Uint8Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    out[i] = (19595 * rgba[j] + 38470 * rgba[j + 1] + 7471 * rgba[j + 2] + 32768) >>> 16;
  }
  return { data: out, width, height };
}

/** Centred square of side max(H, W) filled with `pad`; odd padding puts the extra pixel bottom/right. */
export function letterboxSquare(img, pad = 0) {
  const { width: w, height: h } = img;
  const side = Math.max(w, h);
  const top = (side - h) >> 1, left = (side - w) >> 1;
  const out = new Uint8Array(side * side).fill(pad);
  for (let y = 0; y < h; y++) out.set(img.data.subarray(y * w, (y + 1) * w), (y + top) * side + left);
  return { data: out, width: side, height: side };
}

const f32 = Math.fround;

/** cvRound of a float: round half to even, then saturate to uint8. */
function roundU8(x) {
  let r = Math.round(x);
  if (r - x === 0.5 && (r & 1)) r -= 1;  // Math.round rounds .5 up; OpenCV (lrint) rounds half to even
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

function areaTab(ssize, dsize, scale) {  // OpenCV computeResizeAreaTab (float alphas)
  const tab = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cell = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) tab.push([dx, sx1 - 1, f32((sx1 - fsx1) / cell)]);
    for (let sx = sx1; sx < sx2; sx++) tab.push([dx, sx, f32(1.0 / cell)]);
    if (fsx2 - sx2 > 1e-3) tab.push([dx, sx2, f32(Math.min(Math.min(fsx2 - sx2, 1.0), cell) / cell)]);
  }
  return tab;
}

function resizeAreaShrink(img, dw, dh, scaleX, scaleY) {
  const { data: src, width: sw, height: sh } = img;
  const xtab = areaTab(sw, dw, scaleX), ytab = areaTab(sh, dh, scaleY);
  const out = new Uint8Array(dw * dh);
  const buf = new Float64Array(dw), sum = new Float64Array(dw);  // hold float32 values (rounded via f32)
  let prevDy = ytab[0][0];
  for (let j = 0; j < ytab.length; j++) {
    const [dy, sy, beta] = ytab[j];
    buf.fill(0);
    const row = sy * sw;
    for (let k = 0; k < xtab.length; k++) {
      const [dx, sx, alpha] = xtab[k];
      buf[dx] = f32(buf[dx] + f32(src[row + sx] * alpha));
    }
    if (dy !== prevDy) {
      for (let dx = 0; dx < dw; dx++) {
        out[prevDy * dw + dx] = roundU8(sum[dx]);
        sum[dx] = f32(beta * buf[dx]);
      }
      prevDy = dy;
    } else {
      for (let dx = 0; dx < dw; dx++) sum[dx] = f32(sum[dx] + f32(beta * buf[dx]));
    }
  }
  for (let dx = 0; dx < dw; dx++) out[prevDy * dw + dx] = roundU8(sum[dx]);
  return out;
}

function resizeAreaFast(img, dw, dh, kx, ky) {  // integer factors (OpenCV resizeAreaFast)
  const { data: src, width: sw } = img;
  const out = new Uint8Array(dw * dh);
  const scale = f32(1 / (kx * ky));
  for (let dy = 0; dy < dh; dy++) {
    for (let dx = 0; dx < dw; dx++) {
      let s = 0;
      for (let y = 0; y < ky; y++) {
        const row = (dy * ky + y) * sw + dx * kx;
        for (let x = 0; x < kx; x++) s += src[row + x];
      }
      out[dy * dw + dx] = (kx === 2 && ky === 2) ? (s + 2) >> 2 : roundU8(f32(s * scale));
    }
  }
  return out;
}

function linearAreaCoeffs(ssize, dsize) {  // OpenCV resizeGeneric, INTER_AREA branch when enlarging
  const inv = dsize / ssize, scale = 1 / inv;
  const ofs = new Int32Array(dsize), c0 = new Int32Array(dsize), c1 = new Int32Array(dsize);
  for (let d = 0; d < dsize; d++) {
    let s = Math.floor(d * scale);
    let f = f32((d + 1) - (s + 1) * inv);
    f = f <= 0 ? 0 : f32(f - Math.floor(f));
    if (s >= ssize - 1) { s = ssize - 1; f = 0; }
    ofs[d] = s;
    const a0 = f32(f32(1 - f) * 2048), a1 = f32(f * 2048);
    c0[d] = roundHalfEven(a0);
    c1[d] = roundHalfEven(a1);
  }
  return { ofs, c0, c1 };
}

function roundHalfEven(x) {
  let r = Math.round(x);
  if (r - x === 0.5 && (r & 1)) r -= 1;
  return r;
}

function resizeLinearArea(img, dw, dh) {  // fixed point, 11-bit weights, OpenCV's SIMD vertical pass
  const { data: src, width: sw, height: sh } = img;
  const X = linearAreaCoeffs(sw, dw), Y = linearAreaCoeffs(sh, dh);
  const rowCache = new Map();
  const hrow = (sy) => {
    let r = rowCache.get(sy);
    if (r) return r;
    r = new Int32Array(dw);
    const base = sy * sw;
    for (let dx = 0; dx < dw; dx++) {
      const s = X.ofs[dx];
      r[dx] = s + 1 < sw ? src[base + s] * X.c0[dx] + src[base + s + 1] * X.c1[dx] : src[base + s] * X.c0[dx];
    }
    rowCache.set(sy, r);
    return r;
  };
  const out = new Uint8Array(dw * dh);
  for (let dy = 0; dy < dh; dy++) {
    const sy = Y.ofs[dy];
    const r0 = hrow(sy), r1 = hrow(Math.min(sy + 1, sh - 1));
    const b0 = Y.c0[dy], b1 = Y.c1[dy];
    for (let dx = 0; dx < dw; dx++) {
      const v = (((b0 * (r0[dx] >> 4)) >> 16) + ((b1 * (r1[dx] >> 4)) >> 16) + 2) >> 2;
      out[dy * dw + dx] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/** cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA) for uint8 grey, reproducing OpenCV's arithmetic. */
export function resizeArea(img, dw, dh = dw) {
  const { width: sw, height: sh } = img;
  if (sw === dw && sh === dh) return { data: img.data.slice(), width: dw, height: dh };
  const scaleX = 1 / (dw / sw), scaleY = 1 / (dh / sh);
  let data;
  if (scaleX >= 1 && scaleY >= 1) {
    const kx = Math.round(scaleX), ky = Math.round(scaleY);
    const fast = Math.abs(scaleX - kx) < Number.EPSILON && Math.abs(scaleY - ky) < Number.EPSILON;
    data = fast ? resizeAreaFast(img, dw, dh, kx, ky) : resizeAreaShrink(img, dw, dh, scaleX, scaleY);
  } else {
    data = resizeLinearArea(img, dw, dh);
  }
  return { data, width: dw, height: dh };
}

/** cv2.equalizeHist. */
export function equalizeHist(img) {
  const { data, width, height } = img;
  const n = width * height;
  const hist = new Int32Array(256);
  for (let i = 0; i < n; i++) hist[data[i]]++;
  let i0 = 0;
  while (i0 < 255 && hist[i0] === 0) i0++;
  if (hist[i0] === n) return { data: data.slice(), width, height };
  const scale = f32(255 / (n - hist[i0]));
  const lut = new Uint8Array(256);
  let sum = 0;
  for (let v = i0 + 1; v < 256; v++) {
    sum += hist[v];
    lut[v] = roundU8(f32(sum * scale));
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = lut[data[i]];
  return { data: out, width, height };
}

/** cv2.createCLAHE(clipLimit=clip, tileGridSize=(tx, ty)).apply(img). */
export function clahe(img, clip = 2.0, tiles = [8, 8]) {
  const { data, width: W, height: H } = img;
  const [tx, ty] = tiles;
  // pad bottom/right by BORDER_REFLECT_101 to a multiple of the grid
  const PW = W % tx ? W + tx - (W % tx) : W, PH = H % ty ? H + ty - (H % ty) : H;
  const refl = (i, n) => (i < n ? i : 2 * (n - 1) - i);
  const padded = new Uint8Array(PW * PH);
  for (let y = 0; y < PH; y++) {
    const sy = refl(y, H);
    for (let x = 0; x < PW; x++) padded[y * PW + x] = data[sy * W + refl(x, W)];
  }
  const tw = PW / tx, th = PH / ty, area = tw * th;
  const limit = Math.max(Math.trunc((clip * area) / 256), 1);
  const lutScale = f32(255 / area);
  const luts = new Uint8Array(tx * ty * 256);
  const hist = new Int32Array(256);
  for (let j = 0; j < ty; j++) {
    for (let i = 0; i < tx; i++) {
      hist.fill(0);
      for (let y = j * th; y < (j + 1) * th; y++) for (let x = i * tw; x < (i + 1) * tw; x++) hist[padded[y * PW + x]]++;
      let clipped = 0;
      for (let v = 0; v < 256; v++) if (hist[v] > limit) { clipped += hist[v] - limit; hist[v] = limit; }
      const batch = Math.trunc(clipped / 256);
      let residual = clipped - batch * 256;
      for (let v = 0; v < 256; v++) hist[v] += batch;
      if (residual) {
        const step = Math.max(Math.trunc(256 / residual), 1);
        for (let v = 0; v < 256 && residual > 0; v += step, residual--) hist[v]++;
      }
      let sum = 0;
      const base = (j * tx + i) * 256;
      for (let v = 0; v < 256; v++) { sum += hist[v]; luts[base + v] = roundU8(f32(sum * lutScale)); }
    }
  }
  const invTw = f32(1 / tw), invTh = f32(1 / th);
  const out = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) {
    const tyf = f32(f32(y * invTh) - 0.5);
    let ty1 = Math.floor(tyf), ty2 = ty1 + 1;
    const ya = f32(tyf - ty1), ya1 = f32(1 - ya);
    ty1 = Math.max(ty1, 0); ty2 = Math.min(ty2, ty - 1);
    for (let x = 0; x < W; x++) {
      const txf = f32(f32(x * invTw) - 0.5);
      let tx1 = Math.floor(txf), tx2 = tx1 + 1;
      const xa = f32(txf - tx1), xa1 = f32(1 - xa);
      tx1 = Math.max(tx1, 0); tx2 = Math.min(tx2, tx - 1);
      const v = data[y * W + x];
      const l11 = luts[(ty1 * tx + tx1) * 256 + v], l12 = luts[(ty1 * tx + tx2) * 256 + v];
      const l21 = luts[(ty2 * tx + tx1) * 256 + v], l22 = luts[(ty2 * tx + tx2) * 256 + v];
      const top = f32(f32(l11 * xa1) + f32(l12 * xa)), bot = f32(f32(l21 * xa1) + f32(l22 * xa));
      out[y * W + x] = roundU8(f32(f32(top * ya1) + f32(bot * ya)));
    }
  }
  return { data: out, width: W, height: H };
}

/** The whole pipeline: grey image -> letterbox -> INTER_AREA to S x S -> optional enhancement. */
export function preprocess(grey, spec) {
  const S = spec.input_size;
  let img = resizeArea(letterboxSquare(grey, spec.pad_value ?? 0), S, S);
  if (spec.enhance === "hist") img = equalizeHist(img);
  else if (spec.enhance === "clahe") img = clahe(img, spec.clahe_clip ?? 2.0, spec.clahe_tiles ?? [8, 8]);
  return img;
}

// ------------------------------------------------------------------------------------------------------------
// Outputs

/** "11 y 4 m" style split of an age in months (rounded to whole months). */
export function yearsMonths(months) {
  const m = Math.max(0, Math.round(months));
  return { years: Math.floor(m / 12), months: m % 12 };
}

/** Softmax-class summary: argmax class k covers months [12k, 12k+12). */
export function decodeProbs(probs) {
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
  let expected = 0, total = 0;
  for (let i = 0; i < probs.length; i++) { expected += probs[i] * (12 * i + 6); total += probs[i]; }
  return { argmax: best, argmaxRange: [12 * best, 12 * best + 12], expectedMonths: expected, total };
}

/** 'serving_default_image:0' -> 'image' (the Keras name inside a converter tensor name). */
export function tensorKey(name) {
  return name.replace(/:\d+$/, "").replace(/^serving_default_/, "");
}
