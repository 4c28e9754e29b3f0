// edge-boneage input quality gate for the page: a port of edge_boneage/quality.py's assess(img, meta, box), statistic
// for statistic, with the thresholds generated from quality.py (quality_constants.js, written by
// android_demo/gen_quality_constants.py) and the same reason and explanation strings. No DOM and no LiteRT here. The
// Java port (android_demo/app/src/main/java/org/edgeboneage/core/Quality.java) follows this file line by line.
//
// Arithmetic: every statistic repeats numpy's / OpenCV's operations in their order: integer histograms; float64 sums
// in numpy's pairwise order (boneage.js's pairwiseSum; 4-element block sums row by row, as numpy reduces axes (1, 3));
// fine_detail in float32 (Math.fround after each operation, numpy's float32 pairwise sums, cv2.blur's float box filter
// summed exactly and scaled by the double 1/9); the reduced colour read of a large file (cv2.IMREAD_REDUCED_COLOR_4:
// libpng decode, then cv2.resize INTER_LINEAR_EXACT, 8-bit fixed point). tests/test_quality_ports.py compares all of
// it with Python in headless Chromium.
import { resizeArea, locateHand, handBoxDict, pairwiseSum } from "./boneage.js";
import * as C from "./quality_constants.js";

export { C };
const T = C.TEXT;
const f32 = Math.fround;

// ------------------------------------------------------------------------------------------------------------
// Python's number rounding and formatting (scores are round(x, n); explanations use f"{x:.nf}")

function isTie(x, n) {  // x exactly halfway between two multiples of 10^-n: then x * 2^(n+1) is an odd integer
  const t = x * 2 ** (n + 1);
  return Number.isInteger(t) && t % 2 !== 0;
}

/** Python's round(x, n) on a double: the multiple of 10^-n nearest to x's exact value (ties to even), as a double. */
export function pyRound(x, n) {
  if (!Number.isFinite(x)) return x;
  if (isTie(x, n)) {
    const k = Math.floor(x * 10 ** n);  // exact here: x * 10^n = k + 0.5
    return (k % 2 === 0 ? k : k + 1) / 10 ** n;
  }
  return Number(x.toFixed(n));  // toFixed rounds the exact value; Number() gives the nearest double, as Python does
}

/** Python's f"{x:.{n}f}" (exact value rounded half to even; the sign of a negative that rounds to zero is kept). */
export function pyFixed(x, n) {
  let s;
  if (Number.isFinite(x) && isTie(x, n)) {
    let k = Math.floor(x * 10 ** n);
    if (k % 2 !== 0) k += 1;
    const digits = Math.abs(k).toString().padStart(n + 1, "0");
    s = (k < 0 ? "-" : "") + (n ? `${digits.slice(0, -n)}.${digits.slice(-n)}` : digits);
  } else {
    s = x.toFixed(n);
  }
  if ((x < 0 || Object.is(x, -0)) && !s.startsWith("-")) s = "-" + s;
  return s;
}

// ------------------------------------------------------------------------------------------------------------
// statistics (quality.py's helpers of the same names)

/** numpy's pairwise summation of float32 values (np.add.reduce of a contiguous float32 array), float32 throughout. */
export function pairwiseSum32(a, lo, n) {
  if (n < 8) {
    let s = 0;
    for (let i = 0; i < n; i++) s = f32(s + a[lo + i]);
    return s;
  }
  if (n <= 128) {
    const r = Array.from(a.subarray(lo, lo + 8));
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[lo + i + j]);
    let s = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) s = f32(s + a[lo + i]);
    return s;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return f32(pairwiseSum32(a, lo, n2) + pairwiseSum32(a, lo + n2, n - n2));
}

/** 256-bin histogram of a uint8 image (Float64Array of counts). */
export function histogram(img) {
  const hist = new Float64Array(256);
  for (const v of img.data) hist[v]++;
  return hist;
}

/** _percentiles: the lowest grey level whose cumulative share reaches q % (for each q). */
export function percentiles(hist, qs) {
  let total = 0;
  for (let i = 0; i < 256; i++) total += hist[i];
  const denom = Math.max(total, 1);
  const c = new Float64Array(256);
  for (let i = 0, acc = 0; i < 256; i++) { acc += hist[i]; c[i] = acc / denom; }
  return qs.map((q) => {
    const v = q / 100 - 1e-12;
    let i = 0;
    while (i < 256 && c[i] < v) i++;  // np.searchsorted(c, v), side "left"
    return i;
  });
}

/** levels95: fewest grey levels that together hold 95 % of the pixels. */
export function levels95(hist) {
  let total = 0;
  for (let i = 0; i < 256; i++) total += hist[i];
  const denom = Math.max(total, 1);
  const h = Float64Array.from(hist).sort().reverse();
  const v = 0.95 - 1e-12;
  let acc = 0, i = 0;
  for (; i < 256; i++) {
    acc += h[i] / denom;  // np.cumsum of the shares: sequential
    if (acc >= v) break;
  }
  return i + 1;
}

/** lag1_autocorrelation: the smaller of the horizontal and vertical lag-1 autocorrelations (1.0 if constant). */
export function lag1Autocorrelation(img) {
  const { data, width: w, height: h } = img;
  const n = w * h;
  const z = Float64Array.from(data);
  const mean = pairwiseSum(z, 0, n) / n;
  const sq = new Float64Array(n);
  for (let i = 0; i < n; i++) { z[i] -= mean; sq[i] = z[i] * z[i]; }
  const v = pairwiseSum(sq, 0, n) / n;
  if (v <= 1e-12) return 1.0;
  const hz = new Float64Array(h * (w - 1)), vt = new Float64Array((h - 1) * w);
  for (let y = 0, k = 0; y < h; y++) for (let x = 0; x < w - 1; x++) hz[k++] = z[y * w + x] * z[y * w + x + 1];
  for (let i = 0; i < (h - 1) * w; i++) vt[i] = z[i] * z[i + w];
  const a = pairwiseSum(hz, 0, hz.length) / hz.length / v, b = pairwiseSum(vt, 0, vt.length) / vt.length / v;
  return Math.min(a, b);
}

function reflect(p, n) {  // cv::borderInterpolate(p, n, BORDER_REFLECT): ... b a | a b c d | d c ...
  if (n === 1) return 0;
  while (p < 0 || p >= n) p = p < 0 ? -p - 1 : 2 * n - 1 - p;
  return p;
}

/** fine_detail: mean |a - 3x3 box blur(a)| / std(a) in float32, as numpy and cv2.blur (BORDER_REFLECT) compute it. */
export function fineDetail(img) {
  const { data, width: w, height: h } = img;
  const n = w * h;
  const f = Float32Array.from(data);
  const mean = f32(pairwiseSum32(f, 0, n) / n);  // np.std of float32: float32 mean, squares and sums
  const sq = new Float32Array(n);
  for (let i = 0; i < n; i++) { const d = f32(f[i] - mean); sq[i] = f32(d * d); }
  const s = f32(Math.sqrt(f32(pairwiseSum32(sq, 0, n) / n)));
  if (s <= 1e-6) return 0.0;
  const ninth = 1.0 / 9;  // cv2.blur: exact integer window sums (in double) times the double 1/9, stored as float32
  const xs = new Int32Array(3 * w), ys = new Int32Array(3 * h);
  for (let x = 0; x < w; x++) for (let k = 0; k < 3; k++) xs[3 * x + k] = reflect(x + k - 1, w);
  for (let y = 0; y < h; y++) for (let k = 0; k < 3; k++) ys[3 * y + k] = reflect(y + k - 1, h) * w;
  const diff = new Float32Array(n);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let sum = 0;
      for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) sum += data[ys[3 * y + j] + xs[3 * x + k]];
      diff[y * w + x] = Math.abs(f32(data[y * w + x] - f32(sum * ninth)));
    }
  }
  const meanAbs = f32(pairwiseSum32(diff, 0, n) / n);
  return f32(meanAbs / s);  // numpy 2: a float32 scalar divided by a Python float stays float32
}

function std64(vals) {  // np.std of a contiguous float64 array
  const n = vals.length;
  const m = pairwiseSum(vals, 0, n) / n;
  const sq = new Float64Array(n);
  for (let i = 0; i < n; i++) { const d = vals[i] - m; sq[i] = d * d; }
  return { mean: m, std: Math.sqrt(pairwiseSum(sq, 0, n) / n) };
}

/** background_stats on the 64 x 64 image: {peak, plain, centre} (rounded to 4 decimals, as Python). */
export function backgroundStats(g64) {
  const { data, width: w, height: h } = g64;
  if (w !== 64 || h !== 64) throw new Error("backgroundStats: a 64 x 64 image expected");
  const n = 4096;
  const { mean, std: s } = std64(Float64Array.from(data));
  if (s <= 1e-9) return { peak: 1.0, plain: 1.0, centre: 0.0 };
  const z = new Float64Array(n);
  for (let i = 0; i < n; i++) z[i] = (data[i] - mean) / s;
  // np.histogram(z, bins=32, range=(-4, 4)): edges -4 + 0.25 k (exact); numpy's index formula and edge corrections
  const hist = new Int32Array(32);
  const edge = (k) => -4 + 0.25 * k;
  for (let i = 0; i < n; i++) {
    const v = z[i];
    if (!(v >= -4 && v <= 4)) continue;
    let k = Math.trunc(((v - -4) / 8) * 32);
    if (k === 32) k -= 1;
    if (v < edge(k)) k -= 1;
    if (v >= edge(k + 1) && k !== 31) k += 1;
    hist[k]++;
  }
  let peak = 0;
  for (const c of hist) peak = Math.max(peak, c);
  // z.reshape(16, 4, 16, 4).std(axis=(1, 3)): numpy sums each block's 4 rows of 4 in turn
  let plain = 0;
  for (let by = 0; by < 16; by++) {
    for (let bx = 0; bx < 16; bx++) {
      const o = 4 * by * w + 4 * bx;
      let acc = 0;
      for (let r = 0; r < 4; r++) acc += ((z[o + r * w] + z[o + r * w + 1]) + z[o + r * w + 2]) + z[o + r * w + 3];
      const m = acc / 16;
      let q = 0;
      for (let r = 0; r < 4; r++) {
        const d0 = z[o + r * w] - m, d1 = z[o + r * w + 1] - m, d2 = z[o + r * w + 2] - m, d3 = z[o + r * w + 3] - m;
        q += ((d0 * d0 + d1 * d1) + d2 * d2) + d3 * d3;
      }
      if (Math.sqrt(q / 16) < 0.1) plain++;
    }
  }
  // z[16:48, 16:48].mean(): numpy copies the strided block and sums it pairwise
  const centre = new Float64Array(1024);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) centre[32 * y + x] = z[(16 + y) * w + 16 + x];
  return { peak: pyRound(peak / n, 4), plain: pyRound(plain / 256, 4),
           centre: pyRound(pairwiseSum(centre, 0, 1024) / 1024, 4) };
}

/**
 * colourfulness (Hasler & Suesstrunk 2003) of 4-byte RGBA pixels (canvas ImageData order), computed as Python computes
 * it on the BGR array cv2.imread returns: channel 0 is blue, so rg = B - G and yb = (B + G) / 2 - R.
 */
export function colourfulness(rgba, width, height) {
  const n = width * height;
  const rg = new Float64Array(n), yb = new Float64Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const r = rgba[j], g = rgba[j + 1], b = rgba[j + 2];
    rg[i] = b - g;
    yb[i] = 0.5 * (b + g) - r;
  }
  const a = std64(rg), c = std64(yb);
  return Math.hypot(a.std, c.std) + 0.3 * Math.hypot(a.mean, c.mean);
}

function linearExactCoeffs(ssize, dsize) {  // OpenCV resize_bitExact, interpolationLinear: 8-bit fixed-point weights
  const scale = 1 / (dsize / ssize);
  const ofs = new Int32Array(dsize), c1 = new Int32Array(dsize);
  for (let d = 0; d < dsize; d++) {
    const f = scale * (d + 0.5) - 0.5;
    const i = Math.floor(f);
    if (i >= 0 && ssize > 1) {
      if (i < ssize - 1) {
        ofs[d] = i;
        const t = (f - i) * 256;  // cvRound: half to even
        let r = Math.round(t);
        if (r - t === 0.5 && (r & 1)) r -= 1;
        c1[d] = r;
      } else { ofs[d] = ssize - 1; c1[d] = 0; }
    } else { ofs[d] = 0; c1[d] = 0; }
  }
  return { ofs, c1 };
}

/** cv2.resize(rgba, (dw, dh), interpolation=cv2.INTER_LINEAR_EXACT) of 4-byte pixels, each channel as OpenCV does. */
export function resizeLinearExact(rgba, sw, sh, dw, dh) {
  const X = linearExactCoeffs(sw, dw), Y = linearExactCoeffs(sh, dh);
  const rows = new Map();
  const hrow = (sy) => {  // horizontal pass of a source row: 4 channels, 8 fractional bits
    let r = rows.get(sy);
    if (r) return r;
    r = new Int32Array(4 * dw);
    for (let dx = 0; dx < dw; dx++) {
      const s0 = (sy * sw + X.ofs[dx]) * 4, s1 = (sy * sw + Math.min(X.ofs[dx] + 1, sw - 1)) * 4;
      const b = X.c1[dx], a = 256 - b;
      for (let c = 0; c < 4; c++) r[4 * dx + c] = rgba[s0 + c] * a + rgba[s1 + c] * b;
    }
    rows.set(sy, r);
    return r;
  };
  const out = new Uint8Array(4 * dw * dh);
  for (let dy = 0; dy < dh; dy++) {
    const sy = Y.ofs[dy];
    const r0 = hrow(sy), r1 = hrow(Math.min(sy + 1, sh - 1));
    const b = Y.c1[dy], a = 256 - b;
    for (let i = 0; i < 4 * dw; i++) out[dy * 4 * dw + i] = Math.min(255, (r0[i] * a + r1[i] * b + 32768) >>> 16);
    for (const k of rows.keys()) if (k < sy) rows.delete(k);  // rows only move down: keep the two in use
  }
  return out;
}

/**
 * The Pillow mode edge_boneage.io.read_image records as ImageMeta.photometric, from a PNG's or JPEG's header:
 * {format: "PNG" | "JPEG" | null, mode: "L", "RGB", "P", "RGBA", "LA", "1", "I;16", "CMYK", ... or null}.
 */
export function sourceMode(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (b.length >= 26 && png.every((v, i) => b[i] === v)) {
    const depth = b[24], type = b[25];
    const mode = { 0: depth === 1 ? "1" : depth === 16 ? "I;16" : "L", 2: "RGB", 3: "P",
                   4: depth === 16 ? "RGBA" : "LA", 6: "RGBA" }[type];  // Pillow's PNG modes
    return { format: "PNG", mode: mode ?? null };
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let p = 2;
    while (p + 9 < b.length) {
      if (b[p] !== 0xff) return { format: "JPEG", mode: null };
      const m = b[p + 1];
      if (m === 0xff) { p++; continue; }
      if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { p += 2; continue; }
      const len = (b[p + 2] << 8) | b[p + 3];
      if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
        const layers = b[p + 9];
        return { format: "JPEG", mode: { 1: "L", 3: "RGB", 4: "CMYK" }[layers] ?? null };
      }
      p += 2 + len;
    }
    return { format: "JPEG", mode: null };
  }
  return { format: null, mode: null };
}

/**
 * source_colourfulness: [colourfulness or null, how it was found] for a decoded file. `source`: {format, mode} (from
 * sourceMode) and the decoded pixels {rgba, width, height}. As in Python, a grey mode is not measured (0.0), a colour
 * one is measured on the file's colour pixels, reduced to a quarter when its shorter side is >= 1024 px
 * (cv2.IMREAD_REDUCED_COLOR_4). A file that is neither PNG nor JPEG (the page decodes more than read_image reads) is
 * measured on its decoded pixels.
 */
export function sourceColourfulness(source) {
  if (!source) return [null, "no meta"];
  const mode = String(source.mode || "").toUpperCase();
  const known = source.format === "PNG" || source.format === "JPEG";
  if (known && !C.COLOUR_MODES.includes(mode)) return [0.0, `grey source (${mode || "unknown mode"})`];
  const how = known ? `${mode} source` : `decoded pixels (${source.format || "unknown format"})`;
  const { rgba, width: w, height: h } = source;
  if (!rgba) return [null, `${mode || "unknown"} source, no pixels: not measured`];
  if (Math.min(w, h) >= 1024) {
    const dw = Math.floor(w / 4), dh = Math.floor(h / 4);
    return [colourfulness(resizeLinearExact(rgba, w, h, dw, dh), dw, dh), how];
  }
  return [colourfulness(rgba, w, h), how];
}

/** _hand_stats from a HandBox dict (handBoxDict(...), rounded to 3 decimals as HandBox.to_dict()). */
export function handStats(img, d) {
  const { width: w, height: h } = img;
  const hw = Math.max(d.hand_x1 - d.hand_x0, 1e-9), hh = Math.max(d.hand_y1 - d.hand_y0, 1e-9);
  const cov = d.coverage ?? 0;
  return {
    found: Boolean(d.found),
    coverage: pyRound(cov, 4),
    fill: d.found ? pyRound((cov * w * h) / (hw * hh), 4) : 0.0,
    aspect: pyRound((hh / h) / (hw / w), 4),
    angle_deg: pyRound(d.angle_deg ?? 0, 2),
  };
}

// ------------------------------------------------------------------------------------------------------------
// the gate

/**
 * edge_boneage.quality.assess(img, meta, box). `img`: the grey image {data, width, height} (boneage.js's rgbaToGrey
 * of the decoded file); `source`: {format, mode, rgba, width, height} for the colour check (see sourceColourfulness),
 * or null; `box`: the hand box dict found on this image as it is (preprocessWithBox's box with frame "squeeze"), or
 * null to locate the hand here. Returns {ok, reasons, scores (details included), raw: unrounded ac64, hf, colour}.
 */
export function assess(img, source = null, box = null) {
  const { width: w, height: h, data } = img;
  if (!(w > 0 && h > 0 && data && data.length === w * h)) throw new Error(`assess: need a grey image, got ${w}x${h}`);
  const scores = { gate: C.GATE_VERSION };
  const reasons = [], details = {};
  const flag = (reason, detail) => {
    if (!(reason in details)) { reasons.push(reason); details[reason] = detail; }
  };

  scores.min_side = Math.min(h, w);
  if (Math.min(h, w) < C.MIN_SIDE) {
    flag(`too small (${w}x${h} < ${T.MIN_SIDE} px)`, `shortest side ${Math.min(h, w)} px < ${T.MIN_SIDE}`);
  }

  const hist = histogram(img);
  const [p05, p1, p99, p995] = percentiles(hist, [0.5, 1, 99, 99.5]);
  const spread = p995 - p05;
  Object.assign(scores, { spread, p1, p99, range: p99 - p1, levels95: levels95(hist) });
  const constant = spread <= C.CONSTANT_SPREAD;
  if (constant) {
    flag("constant image", `99 % of pixels within ${spread} grey levels (<= ${T.CONSTANT_SPREAD})`);
  } else if (p99 <= C.UNDER_P99) {
    flag("hopeless exposure", `under-exposed: 99 % of pixels <= ${p99} (limit ${T.UNDER_P99})`);
  } else if (p1 >= C.OVER_P1) {
    flag("hopeless exposure", `over-exposed: 99 % of pixels >= ${p1} (limit ${T.OVER_P1})`);
  } else if (p99 - p1 < C.MIN_RANGE) {
    flag("hopeless exposure", `no contrast: 98 % of pixels within ${p99 - p1} grey levels (< ${T.MIN_RANGE})`);
  }

  const g64 = resizeArea(img, 64, 64), g128 = resizeArea(img, 128, 128);
  const ac = lag1Autocorrelation(g64), hf = fineDetail(g128);
  Object.assign(scores, { ac64: pyRound(ac, 4), hf: pyRound(hf, 4) }, backgroundStats(g64));
  if (!constant) {
    if (ac < C.MIN_AC64) flag("noise-like", `neighbouring pixels uncorrelated: ac64 ${pyFixed(ac, 3)} < ${T.MIN_AC64}`);
    if (hf > C.MAX_HF) {
      flag("fine-grained texture", `like noise, text or a pattern: hf ${pyFixed(hf, 3)} > ${T.MAX_HF}`);
    } else if (hf < C.MIN_HF) flag("too smooth", `a gradient or flat drawing: hf ${pyFixed(hf, 4)} < ${T.MIN_HF}`);
    else if (ac > C.MAX_AC64) flag("too smooth", `a smooth blob: ac64 ${pyFixed(ac, 4)} > ${T.MAX_AC64}`);
    if (scores.levels95 < C.MIN_LEVELS95) {
      flag("few grey levels", `like text or a drawing: 95 % of pixels in ${scores.levels95} levels ` +
                              `(< ${T.MIN_LEVELS95})`);
    }
    const { peak: pk, plain: pl, centre: ce } = scores;
    if (pk < C.MIN_PEAK || pl < C.MIN_PLAIN) {
      flag("no plain background", `like a photo of a scene: commonest grey band ${pyFixed(100 * pk, 1)} % of pixels ` +
                                  `(limit ${T.MIN_PEAK_PCT} %), plain area ${pyFixed(100 * pl, 1)} % ` +
                                  `(limit ${T.MIN_PLAIN_PCT} %)`);
    } else if (pl > C.MAX_PLAIN) {
      flag("flat like a drawing", `${pyFixed(100 * pl, 0)} % of the image perfectly plain (> ${T.MAX_PLAIN_PCT} %)`);
    }
    if (ce < C.MIN_CENTRE) {
      flag("centre darker than surround", `a hand is brighter than its background: centre ${pyFixed(ce, 2)} std ` +
                                          `< ${T.MIN_CENTRE}`);
    }
  }

  const [colour, how] = sourceColourfulness(source);
  scores.colourfulness = colour === null ? null : pyRound(colour, 2);
  scores.colour_source = how;
  if (colour !== null && colour > C.MAX_COLOURFULNESS) {
    flag("colour photo", `colourfulness ${pyFixed(colour, 1)} > ${T.MAX_COLOURFULNESS_G} (${how})`);
  }

  const hand = handStats(img, box || handBoxDict(locateHand(img)));
  Object.assign(scores, hand);
  if (!hand.found) {
    flag("no hand found", "the hand localiser found no foreground");
  } else if (!(C.COVERAGE_MIN <= hand.coverage && hand.coverage <= C.COVERAGE_MAX)) {
    flag("hand coverage out of range", `the located hand covers ${pyFixed(100 * hand.coverage, 1)} % of the image ` +
                                       `(range ${T.COVERAGE_MIN_PCT}-${T.COVERAGE_MAX_PCT} %)`);
  }
  scores.details = details;
  return { ok: reasons.length === 0, reasons, scores, raw: { ac64: ac, hf, colourfulness: colour } };
}

/** The line predict prints for a flagged image (edge_boneage.predict.Prediction.quality_warning), or null. */
export function warning(result) {
  if (result.ok) return null;
  return `WARNING: not accepted as a hand radiograph: ${result.reasons.join(", ")} (age shown for reference only)`;
}
