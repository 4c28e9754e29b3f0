// edge-boneage browser core: .tflite metadata, preprocessing with the hand crop (docs/PREPROCESSING.md, bit-exact
// with OpenCV's INTER_AREA, GaussianBlur, Otsu threshold, morphology and connected components for uint8), output
// decoding. No DOM and no LiteRT here, so it can be unit-tested anywhere.
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

// The contract this file implements (edge_boneage.preprocess.PreprocessSpec, edge_boneage.handcrop.HAND_RULE).
// Anything else in a model's metadata is refused, never approximated.
export const SPEC_VERSIONS = [1, 2, 3];  // version 3 adds source_size (docs/PREPROCESSING.md section 2.1)
export const SOURCE_SIZE_MIN = 16;
export const LETTERBOX_RULE = "centre-pad-extra-bottom-right";
export const RESIZE_RULE = "cv2.INTER_AREA";
export const FRAME_CHOICES = ["letterbox", "squeeze"];
export const HAND_RULE = "otsu128-open5-refine80-largest-square-v1";
export const HAND_WORK_SIZE = 128;
export const HAND_DEFAULT_MARGIN = 0.04;
export const SPEC_KEYS = ["input_size", "enhance", "clahe_clip", "clahe_tiles", "dtype", "channels", "value_range",
  "pad_value", "letterbox", "resize", "colour", "version", "frame", "crop", "crop_margin", "crop_rule", "source_size",
  "extra"];

/**
 * The preprocessing spec of a model: metadata.preprocess (PreprocessSpec.to_dict()), else the version-1 defaults
 * with the model's input size. Throws, naming the field, on a contract this code does not implement (a version
 * other than 1, 2 or 3, an unknown frame / crop / hand-crop rule / key, a source_size that is not an integer >= 16
 * or that a version-1/2 record carries) instead of preprocessing differently.
 */
export function preprocessSpec(meta, inputSize) {
  const p = (meta && meta.preprocess) || {};
  const unknown = Object.keys(p).filter((k) => !SPEC_KEYS.includes(k));
  if (unknown.length) {
    throw new Error(`unsupported preprocessing spec: unknown field(s) ${unknown.join(", ")} (update the app)`);
  }
  const spec = {
    input_size: p.input_size ?? inputSize,
    enhance: p.enhance ?? null,
    clahe_clip: p.clahe_clip ?? 2.0,
    clahe_tiles: p.clahe_tiles ?? [8, 8],
    pad_value: p.pad_value ?? 0,
    letterbox: p.letterbox ?? LETTERBOX_RULE,
    resize: p.resize ?? RESIZE_RULE,
    // absent: a version-1 record (or version 3 with a source_size, as PreprocessSpec's default); null is refused
    version: "version" in p ? p.version : (p.source_size ?? null) !== null ? 3 : 1,
    frame: "frame" in p ? p.frame : "letterbox",
    crop: p.crop ?? null,
    crop_margin: p.crop_margin ?? HAND_DEFAULT_MARGIN,
    crop_rule: p.crop_rule ?? null,
    source_size: p.source_size ?? null,  // null: no resize to the training images' square before the crop
  };
  if (spec.enhance === "none") spec.enhance = null;
  if (spec.crop === "none") spec.crop = null;
  if (!Number.isInteger(spec.input_size) || spec.input_size <= 0) throw new Error(`bad input size ${spec.input_size}`);
  if (inputSize && spec.input_size !== inputSize) {
    throw new Error(`metadata says input ${spec.input_size} px, the model's input tensor is ${inputSize} px`);
  }
  if (!SPEC_VERSIONS.includes(spec.version)) {
    throw new Error(`unsupported preprocessing spec version ${spec.version} (this app implements versions ` +
                    `${SPEC_VERSIONS.join(", ")}; update the app)`);
  }
  if (spec.source_size !== null) {  // as PreprocessSpec.__post_init__ (which also refuses it below version 3)
    if (spec.version < 3) {
      throw new Error(`unsupported preprocessing spec: source_size needs spec version 3, got version ${spec.version}`);
    }
    if (typeof spec.source_size !== "number" || !Number.isInteger(spec.source_size)) {
      throw new Error(`unsupported preprocessing spec: source_size ${JSON.stringify(spec.source_size)} is not an ` +
                      "integer");
    }
    if (spec.source_size < SOURCE_SIZE_MIN) {
      throw new Error(`unsupported preprocessing spec: source_size must be >= ${SOURCE_SIZE_MIN}, got ` +
                      `${spec.source_size}`);
    }
  }
  if (spec.letterbox !== LETTERBOX_RULE || spec.resize !== RESIZE_RULE) {
    throw new Error(`unsupported preprocessing spec (letterbox rule ${spec.letterbox}, resize rule ${spec.resize})`);
  }
  if ((p.dtype ?? "uint8") !== "uint8" || (p.channels ?? 1) !== 1
      || JSON.stringify(p.value_range ?? [0, 255]) !== "[0,255]") {
    throw new Error("unsupported preprocessing spec: the model contract is uint8, 1 channel, values 0..255");
  }
  if (![null, "clahe", "hist"].includes(spec.enhance)) throw new Error(`unknown enhance ${spec.enhance}`);
  if (!FRAME_CHOICES.includes(spec.frame)) {
    throw new Error(`unsupported preprocessing spec: frame rule "${spec.frame}" (this app implements ` +
                    `${FRAME_CHOICES.join(", ")})`);
  }
  if (![null, "hand"].includes(spec.crop)) {
    throw new Error(`unsupported preprocessing spec: crop "${spec.crop}" (this app implements none, hand)`);
  }
  if (spec.crop === "hand") {
    if (spec.crop_rule === null) spec.crop_rule = HAND_RULE;  // as PreprocessSpec: hand crop without a rule = this one
    if (spec.crop_rule !== HAND_RULE) {
      throw new Error(`unsupported preprocessing spec: hand-crop rule "${spec.crop_rule}" (this app implements ` +
                      `"${HAND_RULE}"; update the app)`);
    }
    if (typeof spec.crop_margin !== "number" || !Number.isFinite(spec.crop_margin)) {
      throw new Error(`bad crop_margin ${spec.crop_margin}`);
    }
  }
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

// ------------------------------------------------------------------------------------------------------------
// Hand crop: edge_boneage.handcrop.locate_hand / crop_box (rule HAND_RULE), every OpenCV step reproduced bit for
// bit (docs/PREPROCESSING.md, section 5). Float64 steps follow the Python code's operation order.

const FLT_EPSILON = 1.1920928955078125e-7;

function reflect101(p, n) {  // cv::borderInterpolate(p, n, BORDER_REFLECT_101): ... c b | a b c d | c b ...
  if (n === 1) return 0;
  while (p < 0 || p >= n) p = p < 0 ? -p : 2 * n - 2 - p;
  return p;
}

/**
 * cv2.GaussianBlur(img, (5, 5), 0) for uint8. OpenCV's 8-bit path is fixed point with the exact kernel
 * [1, 4, 6, 4, 1] / 16 on each axis (no rounding in between), BORDER_REFLECT_101, so it equals the integer sum
 * S = sum over the 5x5 window of k[i] * k[j] * src, rounded as (S + 128) >> 8.
 */
export function gaussianBlur5(img) {
  const { data: a, width: w, height: h } = img;
  const K = [1, 4, 6, 4, 1];
  const xi = new Int32Array(5 * w);
  for (let x = 0; x < w; x++) for (let k = 0; k < 5; k++) xi[5 * x + k] = reflect101(x + k - 2, w);
  const hp = new Int32Array(w * h);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = 0; k < 5; k++) s += K[k] * a[row + xi[5 * x + k]];
      hp[row + x] = s;
    }
  }
  const out = new Uint8Array(w * h);
  const rows = new Int32Array(5);
  for (let y = 0; y < h; y++) {
    for (let k = 0; k < 5; k++) rows[k] = reflect101(y + k - 2, h) * w;
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = 0; k < 5; k++) s += K[k] * hp[rows[k] + x];
      out[y * w + x] = (s + 128) >> 8;
    }
  }
  return { data: out, width: w, height: h };
}

/** The threshold cv2.threshold(vals, 0, 255, THRESH_BINARY + THRESH_OTSU) returns, from the 256-bin histogram
 * of n values (OpenCV's getThreshVal_Otsu_8u, float64, same operation order; the first maximum wins). */
export function otsuThreshold(hist, n) {
  const scale = 1 / n;
  let mu = 0;
  for (let i = 0; i < 256; i++) mu += i * hist[i];
  mu *= scale;
  let mu1 = 0, q1 = 0, maxSigma = 0, maxVal = 0;
  for (let i = 0; i < 256; i++) {
    const pi = hist[i] * scale;
    mu1 *= q1;
    q1 += pi;
    const q2 = 1 - q1;
    if (Math.min(q1, q2) < FLT_EPSILON || Math.max(q1, q2) > 1 - FLT_EPSILON) continue;
    mu1 = (mu1 + i * pi) / q1;
    const mu2 = (mu - q1 * mu1) / q2;
    const sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
    if (sigma > maxSigma) { maxSigma = sigma; maxVal = i; }
  }
  return maxVal;
}

// cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)), anchor at the centre: rows 00100 / 11111 x 3 / 00100
const ELLIPSE5 = [];
for (let dy = -2; dy <= 2; dy++) {
  for (let dx = -2; dx <= 2; dx++) if (Math.abs(dy) < 2 || dx === 0) ELLIPSE5.push([dy, dx]);
}

function morph5(m, w, h, erode) {  // cv2.erode / cv2.dilate of a 0/1 mask; pixels outside the image are ignored
  const out = new Uint8Array(w * h);  // (OpenCV's default border for morphology: +inf for erode, -inf for dilate)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = erode ? 1 : 0;
      for (const [dy, dx] of ELLIPSE5) {
        const yy = y + dy, xx = x + dx;
        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
        if (erode) v &= m[yy * w + xx]; else v |= m[yy * w + xx];
      }
      out[y * w + x] = v;
    }
  }
  return out;
}

/** handcrop._otsu_mask: g > t, t halfway between Otsu's threshold and the mean of the values <= it (over `where`
 * if given), then the opening (cv2.morphologyEx MORPH_OPEN, 5x5 ellipse). 0/1 Uint8Array. */
function otsuMask(g, where) {
  const n = g.data.length;
  const hist = new Int32Array(256);
  let count = 0, lo = 255, hi = 0;
  for (let i = 0; i < n; i++) {
    if (where && !where[i]) continue;
    const v = g.data[i];
    hist[v]++; count++;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const m = new Uint8Array(n);
  if (count === 0 || lo === hi) return m;
  let t = otsuThreshold(hist, count);
  let sumLow = 0, nLow = 0;  // integers: exact, like numpy's float64 sum of uint8
  for (let v = 0; v <= t; v++) { sumLow += v * hist[v]; nLow += hist[v]; }
  t = 0.5 * (t + (nLow ? sumLow / nLow : t));
  for (let i = 0; i < n; i++) m[i] = g.data[i] > t && (!where || where[i]) ? 1 : 0;
  const { width: w, height: h } = g;
  return morph5(morph5(m, w, h, true), w, h, false);
}

/**
 * handcrop._largest_component: the largest 8-connected component of a 0/1 mask, or null. Ties: the first in
 * cv2.connectedComponentsWithStats label order, which is NOT pixel raster order: OpenCV's 8-connectivity
 * labelling (Bolelli's Spaghetti) scans 2x2 blocks, so labels follow each component's first 2x2 block
 * (block row y >> 1, then block column x >> 1). Returns {mask, area, x0, y0, x1, y1} (inclusive bounds).
 */
function largestComponent(m, w, h) {
  const labels = new Int32Array(w * h), stack = new Int32Array(w * h);
  const bw = (w + 1) >> 1;
  let n = 0, best = 0, bestArea = 0, bestKey = Infinity;
  for (let i = 0; i < w * h; i++) {
    if (!m[i] || labels[i]) continue;
    n++;
    let area = 0, key = Infinity, sp = 0;
    labels[i] = n; stack[sp++] = i;
    while (sp) {
      const p = stack[--sp];
      area++;
      const y = (p / w) | 0, x = p - y * w;
      const k = (y >> 1) * bw + (x >> 1);
      if (k < key) key = k;
      for (let yy = Math.max(y - 1, 0); yy <= Math.min(y + 1, h - 1); yy++) {
        for (let xx = Math.max(x - 1, 0); xx <= Math.min(x + 1, w - 1); xx++) {
          const q = yy * w + xx;
          if (m[q] && !labels[q]) { labels[q] = n; stack[sp++] = q; }
        }
      }
    }
    if (area > bestArea || (area === bestArea && key < bestKey)) { best = n; bestArea = area; bestKey = key; }
  }
  if (!n) return null;
  const mask = new Uint8Array(w * h);
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let i = 0; i < w * h; i++) {
    if (labels[i] !== best) continue;
    mask[i] = 1;
    const y = (i / w) | 0, x = i - y * w;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return { mask, area: bestArea, x0, y0, x1, y1 };
}

/** numpy's pairwise summation of float64 (np.add.reduce / np.mean of a contiguous 1-D array). */
export function pairwiseSum(a, lo, n) {
  if (n < 8) {
    let s = 0;
    for (let i = 0; i < n; i++) s += a[lo + i];
    return s;
  }
  if (n <= 128) {
    const r = Array.from(a.subarray(lo, lo + 8));
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[lo + i + j];
    let s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) s += a[lo + i];
    return s;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, lo, n2) + pairwiseSum(a, lo + n2, n - n2);
}

/**
 * edge_boneage.handcrop.locate_hand: the hand's canonical box on a frame, in frame pixels, unrounded
 * {cx, cy, w, h, hand_x0, hand_y0, hand_x1, hand_y1, coverage, angle_deg, found}; the box's corner is
 * (cx - w / 2, cy - h / 2).
 */
export function locateHand(frame, margin = HAND_DEFAULT_MARGIN) {
  const { width: w, height: h } = frame;
  const N = HAND_WORK_SIZE;
  const g = gaussianBlur5(resizeArea(frame, N, N));
  let comp = largestComponent(otsuMask(g, null), N, N);
  if (comp && comp.area / ((comp.y1 - comp.y0 + 1) * (comp.x1 - comp.x0 + 1)) > 0.85) {  // fill ratio
    const inner = largestComponent(otsuMask(g, comp.mask), N, N);
    if (inner && inner.area >= 0.05 * comp.area) comp = inner;
  }
  if (!comp) {
    return { cx: w / 2, cy: h / 2, w, h, hand_x0: 0, hand_y0: 0, hand_x1: w, hand_y1: h, coverage: 0, angle_deg: 0,
             found: false };
  }
  const sx = w / N, sy = h / N;
  const gx0 = comp.x0, gx1 = comp.x1 + 1, gy0 = comp.y0, gy1 = comp.y1 + 1;
  const side = Math.max(gx1 - gx0, gy1 - gy0) * (1.0 + 2.0 * margin);  // grid units
  const x0 = gx0 * sx, x1 = gx1 * sx, y0 = gy0 * sy, y1 = gy1 * sy;
  // principal axis from central second moments (frame pixels), as numpy computes them (pairwise sums)
  const n = comp.area;
  const dx = new Float64Array(n), dy = new Float64Array(n);
  for (let i = 0, k = 0; i < N * N; i++) {
    if (!comp.mask[i]) continue;
    dx[k] = ((i % N) + 0.5) * sx; dy[k] = (((i / N) | 0) + 0.5) * sy; k++;
  }
  const mx = pairwiseSum(dx, 0, n) / n, my = pairwiseSum(dy, 0, n) / n;
  const xx = new Float64Array(n), yy = new Float64Array(n), xy = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    dx[k] -= mx; dy[k] -= my;
    xx[k] = dx[k] * dx[k]; yy[k] = dy[k] * dy[k]; xy[k] = dx[k] * dy[k];
  }
  const mxx = pairwiseSum(xx, 0, n) / n, myy = pairwiseSum(yy, 0, n) / n, mxy = pairwiseSum(xy, 0, n) / n;
  const angle = 0.5 * (Math.atan2(2.0 * mxy, myy - mxx) * (180 / Math.PI));
  return { cx: (x0 + x1) / 2.0, cy: (y0 + y1) / 2.0, w: side * sx, h: side * sy, hand_x0: x0, hand_y0: y0,
           hand_x1: x1, hand_y1: y1, coverage: n / (N * N), angle_deg: -angle, found: true };
}

/** Python's round(x, 3) on a double: the nearest multiple of 0.001, ties to even, as the nearest double. */
export function round3(x) {
  if (!Number.isFinite(x)) return x;
  const t = x * 16;
  if (Number.isInteger(t) && t % 2 !== 0) {  // x = odd / 16 is exactly halfway between two multiples of 0.001
    const k = Math.floor(x * 1000);  // exact: x * 1000 = k + 0.5
    return (k % 2 === 0 ? k : k + 1) / 1000;
  }
  return Number(x.toFixed(3));  // otherwise toFixed rounds the exact value correctly
}

/** HandBox.to_dict(): every number rounded to 3 decimals, plus the corners x0, y0, x1, y1. */
export function handBoxDict(hb) {
  const x0 = hb.cx - hb.w / 2.0, y0 = hb.cy - hb.h / 2.0;
  const d = { ...hb, x0, y0, x1: x0 + hb.w, y1: y0 + hb.h };
  for (const k of Object.keys(d)) if (typeof d[k] === "number") d[k] = round3(d[k]);
  return d;
}

/** handcrop.crop_box: the rectangle (x0, y0, bw, bh) of img rounded outwards to whole pixels (outside -> 0),
 * resized to ow x oh with INTER_AREA (per-axis scales). */
export function cropBox(img, x0, y0, bw, bh, ow, oh) {
  const ix0 = Math.floor(x0), iy0 = Math.floor(y0);
  const ix1 = Math.max(ix0 + 1, Math.ceil(x0 + bw)), iy1 = Math.max(iy0 + 1, Math.ceil(y0 + bh));
  const cw = ix1 - ix0, ch = iy1 - iy0;
  const out = new Uint8Array(cw * ch);
  const sx0 = Math.max(ix0, 0), sy0 = Math.max(iy0, 0), sx1 = Math.min(ix1, img.width), sy1 = Math.min(iy1, img.height);
  if (sx1 > sx0 && sy1 > sy0) {
    for (let y = sy0; y < sy1; y++) {
      out.set(img.data.subarray(y * img.width + sx0, y * img.width + sx1), (y - iy0) * cw + (sx0 - ix0));
    }
  }
  const c = { data: out, width: cw, height: ch };
  return cw === ow && ch === oh ? c : resizeArea(c, ow, oh);
}

/**
 * The whole pipeline (edge_boneage.preprocess.preprocess_full / PreprocessSpec.apply_with_box):
 * grey -> frame ("letterbox": centred square, pad value; "squeeze": the image itself) -> [source_size N (version 3):
 * INTER_AREA of the frame to N x N unless it is N x N] -> [crop "hand": the hand box of locateHand on that frame, cut
 * and resized to S x S] or INTER_AREA of the frame to S x S -> optional enhancement.
 * Returns {image, box}: box = the hand box in the original image's pixels, rounded like HandBox.to_dict(), or null.
 */
export function preprocessWithBox(grey, spec) {
  const S = spec.input_size;
  const frameRule = spec.frame ?? "letterbox";
  const crop = spec.crop === "none" ? null : spec.crop ?? null;
  if (!FRAME_CHOICES.includes(frameRule)) throw new Error(`unknown frame rule ${frameRule}`);
  if (crop !== null && crop !== "hand") throw new Error(`unknown crop ${crop}`);
  if (crop === "hand" && (spec.crop_rule ?? HAND_RULE) !== HAND_RULE) {
    throw new Error(`unknown hand-crop rule ${spec.crop_rule}`);
  }
  let frame = grey, left = 0, top = 0;
  if (frameRule === "letterbox") {
    frame = letterboxSquare(grey, spec.pad_value ?? 0);
    left = (frame.width - grey.width) >> 1; top = (frame.height - grey.height) >> 1;
  }
  const N = spec.source_size ?? null;
  let fx = 1.0, fy = 1.0;  // frame pixels per working pixel
  if (N !== null && !(frame.width === N && frame.height === N)) {
    fx = frame.width / N; fy = frame.height / N;
    frame = resizeArea(frame, N, N);
  }
  let img, box = null;
  if (crop === "hand") {
    const hb = locateHand(frame, spec.crop_margin ?? HAND_DEFAULT_MARGIN);
    img = cropBox(frame, hb.cx - hb.w / 2.0, hb.cy - hb.h / 2.0, hb.w, hb.h, S, S);
    box = handBoxDict(hb);
    if (fx !== 1.0 || fy !== 1.0) {  // back to frame pixels (rounded again, as Python does)
      for (const k of ["x0", "x1", "hand_x0", "hand_x1", "cx", "w"]) box[k] = round3(box[k] * fx);
      for (const k of ["y0", "y1", "hand_y0", "hand_y1", "cy", "h"]) box[k] = round3(box[k] * fy);
    }
    if (frameRule === "letterbox") {  // report in original pixels (rounded again, as Python does)
      for (const k of ["x0", "x1", "hand_x0", "hand_x1", "cx"]) box[k] = round3(box[k] - left);
      for (const k of ["y0", "y1", "hand_y0", "hand_y1", "cy"]) box[k] = round3(box[k] - top);
    }
  } else {
    img = resizeArea(frame, S, S);
  }
  if (spec.enhance === "hist") img = equalizeHist(img);
  else if (spec.enhance === "clahe") img = clahe(img, spec.clahe_clip ?? 2.0, spec.clahe_tiles ?? [8, 8]);
  return { image: img, box };
}

/** The model input only (see preprocessWithBox). */
export function preprocess(grey, spec) {
  return preprocessWithBox(grey, spec).image;
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


/**
 * The calibrated prediction interval of an age (edge_boneage.calibrate.interval_for): [low, high] months, or null
 * when the model's metadata carries no interval record (outputs.age.interval).
 */
export function intervalFor(ageMonths, interval) {
  if (!interval) return null;
  let hw = interval.overall_half_width_months;
  for (const b of interval.bands || []) {
    if (b.pred_from_months <= ageMonths && ageMonths < b.pred_to_months) { hw = b.half_width_months; break; }
  }
  return [Math.max(0, ageMonths - hw), ageMonths + hw];
}
