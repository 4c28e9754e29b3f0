package org.edgeboneage.core;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The input quality gate, edge_boneage/quality.py's assess(img, meta, box), in plain Java: a line-by-line port of
 * android_demo/web/quality.js, with the thresholds generated from quality.py into {@link QualityConstants}
 * (android_demo/gen_quality_constants.py) and the same reason and explanation strings. Every statistic repeats
 * numpy's / OpenCV's operations in their order (float64 pairwise sums, fine_detail in float32, cv2.blur's float box
 * filter, cv2.IMREAD_REDUCED_COLOR_4 as INTER_LINEAR_EXACT), so the scores equal Python's; tests/test_quality_ports.py
 * checks them on the JVM (org.edgeboneage.core.QualityTest). No Android dependencies.
 */
public final class Quality {
    private Quality() {}

    /** The gate's answer: ok, reasons (short phrases), scores (Python's keys and order, details included). */
    /** The feature check's reason (edge_boneage.featuregate.REASON). */
    public static final String FEATURE_REASON = "unlike the training radiographs";

    /** The feature check's threshold in a model's metadata (outputs.feature_residual.threshold), or null. */
    public static Double featureThreshold(Map<String, Object> meta) {
        Object outs = meta == null ? null : meta.get("outputs");
        Object rec = outs instanceof Map ? ((Map<?, ?>) outs).get("feature_residual") : null;
        Object t = rec instanceof Map ? ((Map<?, ?>) rec).get("threshold") : null;
        return t instanceof Number ? ((Number) t).doubleValue() : null;
    }

    public static final class Result {
        public final boolean ok;
        public final List<String> reasons;
        public final Map<String, Object> scores;
        /** Unrounded ac64, hf and colourfulness (null when not measured), for tests. */
        public final double ac64, hf;
        public final Double colourfulness;

        Result(List<String> reasons, Map<String, Object> scores, double ac64, double hf, Double colourfulness) {
            this.ok = reasons.isEmpty();
            this.reasons = Collections.unmodifiableList(reasons);
            this.scores = scores;
            this.ac64 = ac64;
            this.hf = hf;
            this.colourfulness = colourfulness;
        }

        /** The line predict prints for a flagged image (Prediction.quality_warning), or null when accepted. */
        public String warning() {
            if (ok) return null;
            StringBuilder b = new StringBuilder("WARNING: not accepted as a hand radiograph: ");
            for (int i = 0; i < reasons.size(); i++) b.append(i > 0 ? ", " : "").append(reasons.get(i));
            return b.append(" (age shown for reference only)").toString();
        }

        /** This result with the gate's feature check applied (edge_boneage.featuregate.judge): a residual above the
         * model's threshold (or not a number) adds "unlike the training radiographs"; a null threshold changes
         * nothing. */
        public Result withFeatureResidual(double residual, Double threshold) {
            if (threshold == null || residual <= threshold) return this;
            java.util.List<String> rs = new java.util.ArrayList<String>(reasons);
            rs.add(FEATURE_REASON);
            Map<String, Object> sc = new java.util.LinkedHashMap<String, Object>(scores);
            Map<String, Object> det = new java.util.LinkedHashMap<String, Object>();
            Object old = scores.get("details");
            if (old instanceof Map) for (Map.Entry<?, ?> e : ((Map<?, ?>) old).entrySet()) det.put(String.valueOf(e.getKey()), e.getValue());
            det.put(FEATURE_REASON, String.format(java.util.Locale.ROOT, "feature residual %.2f > %.2f", residual, threshold));
            sc.put("details", det);
            return new Result(rs, sc, ac64, hf, colourfulness);
        }

        /** The age as the app shows it: as given when accepted, marked when not. */
        public String markAge(String ageLabel) {
            return ok ? ageLabel : "\u26a0 " + ageLabel + " \u2014 not accepted as a hand radiograph";
        }

        /** The lines the app shows under the age: the verdict, or predict's warning line and one line per reason with
         * its explanation (scores["details"]). */
        public String summary() {
            if (ok) return "input check (" + scores.get("gate") + "): accepted as a hand radiograph";
            StringBuilder b = new StringBuilder(warning());
            Map<?, ?> details = (Map<?, ?>) scores.get("details");
            for (String r : reasons) b.append("\n- ").append(r).append(": ").append(details.get(r));
            return b.toString();
        }
    }

    /**
     * What the colour check knows about the file: its format ("PNG", "JPEG" or null) and Pillow mode (what
     * edge_boneage.io.read_image records as ImageMeta.photometric; see {@link #sourceMode}), and its decoded colour
     * pixels as packed ARGB (Android Bitmap.getPixels order; null when not decoded in colour).
     */
    public static final class Source {
        public final String format, mode;
        public final int[] argb;
        public final int width, height;

        public Source(String format, String mode, int[] argb, int width, int height) {
            this.format = format; this.mode = mode; this.argb = argb; this.width = width; this.height = height;
        }
    }

    // ---------------------------------------------------------------------------------------------- Python's rounding

    /** Python's round(x, n) on a double (exact value, ties to even, the nearest double; the sign of zero kept). */
    public static double pyRound(double x, int n) {
        if (Double.isNaN(x) || Double.isInfinite(x)) return x;
        double r = new BigDecimal(x).setScale(n, RoundingMode.HALF_EVEN).doubleValue();
        return r == 0 && (x < 0 || 1 / x < 0) ? -0.0 : r;
    }

    /** Python's f"{x:.{n}f}". */
    public static String pyFixed(double x, int n) {
        String s = new BigDecimal(x).setScale(n, RoundingMode.HALF_EVEN).toPlainString();
        if ((x < 0 || (x == 0 && 1 / x < 0)) && !s.startsWith("-")) s = "-" + s;
        return s;
    }

    // ---------------------------------------------------------------------------------------------- statistics

    /** numpy's pairwise summation of float32 values, float32 throughout. */
    static float pairwiseSum32(float[] a, int lo, int n) {
        if (n < 8) {
            float s = 0f;
            for (int i = 0; i < n; i++) s += a[lo + i];
            return s;
        }
        if (n <= 128) {
            float[] r = Arrays.copyOfRange(a, lo, lo + 8);
            int i = 8;
            for (; i < n - (n % 8); i += 8) for (int j = 0; j < 8; j++) r[j] += a[lo + i + j];
            float s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for (; i < n; i++) s += a[lo + i];
            return s;
        }
        int n2 = n / 2;
        n2 -= n2 % 8;
        return pairwiseSum32(a, lo, n2) + pairwiseSum32(a, lo + n2, n - n2);
    }

    static double[] histogram(GreyImage img) {
        double[] hist = new double[256];
        for (byte b : img.data) hist[b & 0xFF]++;
        return hist;
    }

    /** _percentiles: the lowest grey level whose cumulative share reaches q % (for each q). */
    static int[] percentiles(double[] hist, double[] qs) {
        double total = 0;
        for (int i = 0; i < 256; i++) total += hist[i];
        double denom = Math.max(total, 1.0), acc = 0;
        double[] c = new double[256];
        for (int i = 0; i < 256; i++) { acc += hist[i]; c[i] = acc / denom; }
        int[] out = new int[qs.length];
        for (int k = 0; k < qs.length; k++) {
            double v = qs[k] / 100.0 - 1e-12;
            int i = 0;
            while (i < 256 && c[i] < v) i++;
            out[k] = i;
        }
        return out;
    }

    /** levels95: fewest grey levels that together hold 95 % of the pixels. */
    static int levels95(double[] hist) {
        double total = 0;
        for (int i = 0; i < 256; i++) total += hist[i];
        double denom = Math.max(total, 1.0);
        double[] h = hist.clone();
        Arrays.sort(h);
        double v = 0.95 - 1e-12, acc = 0;
        int i = 0;
        for (; i < 256; i++) {
            acc += h[255 - i] / denom;
            if (acc >= v) break;
        }
        return i + 1;
    }

    /** lag1_autocorrelation: the smaller of the horizontal and vertical lag-1 autocorrelations (1.0 if constant). */
    static double lag1Autocorrelation(GreyImage img) {
        int w = img.width, h = img.height, n = w * h;
        double[] z = new double[n], sq = new double[n];
        for (int i = 0; i < n; i++) z[i] = img.data[i] & 0xFF;
        double mean = Preprocess.pairwiseSum(z, 0, n) / n;
        for (int i = 0; i < n; i++) { z[i] -= mean; sq[i] = z[i] * z[i]; }
        double v = Preprocess.pairwiseSum(sq, 0, n) / n;
        if (v <= 1e-12) return 1.0;
        double[] hz = new double[h * (w - 1)], vt = new double[(h - 1) * w];
        for (int y = 0, k = 0; y < h; y++) for (int x = 0; x < w - 1; x++) hz[k++] = z[y * w + x] * z[y * w + x + 1];
        for (int i = 0; i < (h - 1) * w; i++) vt[i] = z[i] * z[i + w];
        double a = Preprocess.pairwiseSum(hz, 0, hz.length) / hz.length / v;
        double b = Preprocess.pairwiseSum(vt, 0, vt.length) / vt.length / v;
        return Math.min(a, b);
    }

    private static int reflect(int p, int n) {  // cv::borderInterpolate(p, n, BORDER_REFLECT)
        if (n == 1) return 0;
        while (p < 0 || p >= n) p = p < 0 ? -p - 1 : 2 * n - 1 - p;
        return p;
    }

    /** fine_detail: mean |a - 3x3 box blur(a)| / std(a) in float32 (numpy, cv2.blur BORDER_REFLECT). */
    static double fineDetail(GreyImage img) {
        int w = img.width, h = img.height, n = w * h;
        float[] f = new float[n], sq = new float[n];
        for (int i = 0; i < n; i++) f[i] = img.data[i] & 0xFF;
        float mean = (float) (pairwiseSum32(f, 0, n) / (double) n);
        for (int i = 0; i < n; i++) { float d = f[i] - mean; sq[i] = d * d; }
        float s = (float) Math.sqrt((float) (pairwiseSum32(sq, 0, n) / (double) n));
        if (s <= 1e-6) return 0.0;
        double ninth = 1.0 / 9;
        int[] xs = new int[3 * w], ys = new int[3 * h];
        for (int x = 0; x < w; x++) for (int k = 0; k < 3; k++) xs[3 * x + k] = reflect(x + k - 1, w);
        for (int y = 0; y < h; y++) for (int k = 0; k < 3; k++) ys[3 * y + k] = reflect(y + k - 1, h) * w;
        float[] diff = new float[n];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int sum = 0;
                for (int j = 0; j < 3; j++) {
                    for (int k = 0; k < 3; k++) sum += img.data[ys[3 * y + j] + xs[3 * x + k]] & 0xFF;
                }
                diff[y * w + x] = Math.abs(f[y * w + x] - (float) (sum * ninth));
            }
        }
        float meanAbs = (float) (pairwiseSum32(diff, 0, n) / (double) n);
        return meanAbs / s;  // float32, as numpy 2 divides a float32 scalar by a Python float
    }

    private static double[] std64(double[] vals) {  // {mean, std} as np.std of a contiguous float64 array
        int n = vals.length;
        double m = Preprocess.pairwiseSum(vals, 0, n) / n;
        double[] sq = new double[n];
        for (int i = 0; i < n; i++) { double d = vals[i] - m; sq[i] = d * d; }
        return new double[] {m, Math.sqrt(Preprocess.pairwiseSum(sq, 0, n) / n)};
    }

    /** background_stats on the 64 x 64 image: {peak, plain, centre}, rounded to 4 decimals. */
    static double[] backgroundStats(GreyImage g64) {
        if (g64.width != 64 || g64.height != 64) throw new IllegalArgumentException("a 64 x 64 image expected");
        int w = 64, n = 4096;
        double[] f = new double[n];
        for (int i = 0; i < n; i++) f[i] = g64.data[i] & 0xFF;
        double[] ms = std64(f);
        double mean = ms[0], s = ms[1];
        if (s <= 1e-9) return new double[] {1.0, 1.0, 0.0};
        double[] z = new double[n];
        for (int i = 0; i < n; i++) z[i] = (f[i] - mean) / s;
        int[] hist = new int[32];  // np.histogram(z, bins=32, range=(-4, 4))
        for (int i = 0; i < n; i++) {
            double v = z[i];
            if (!(v >= -4 && v <= 4)) continue;
            int k = (int) (((v - -4.0) / 8.0) * 32);
            if (k == 32) k -= 1;
            if (v < -4 + 0.25 * k) k -= 1;
            if (v >= -4 + 0.25 * (k + 1) && k != 31) k += 1;
            hist[k]++;
        }
        int peak = 0;
        for (int c : hist) peak = Math.max(peak, c);
        int plain = 0;  // z.reshape(16, 4, 16, 4).std(axis=(1, 3)) < 0.1, summed row by row as numpy does
        for (int by = 0; by < 16; by++) {
            for (int bx = 0; bx < 16; bx++) {
                int o = 4 * by * w + 4 * bx;
                double acc = 0;
                for (int r = 0; r < 4; r++) {
                    acc += ((z[o + r * w] + z[o + r * w + 1]) + z[o + r * w + 2]) + z[o + r * w + 3];
                }
                double m = acc / 16, q = 0;
                for (int r = 0; r < 4; r++) {
                    double d0 = z[o + r * w] - m, d1 = z[o + r * w + 1] - m, d2 = z[o + r * w + 2] - m;
                    double d3 = z[o + r * w + 3] - m;
                    q += ((d0 * d0 + d1 * d1) + d2 * d2) + d3 * d3;
                }
                if (Math.sqrt(q / 16) < 0.1) plain++;
            }
        }
        double[] centre = new double[1024];  // z[16:48, 16:48].mean(): a contiguous copy summed pairwise
        for (int y = 0; y < 32; y++) for (int x = 0; x < 32; x++) centre[32 * y + x] = z[(16 + y) * w + 16 + x];
        return new double[] {pyRound((double) peak / n, 4), pyRound(plain / 256.0, 4),
                             pyRound(Preprocess.pairwiseSum(centre, 0, 1024) / 1024, 4)};
    }

    /** colourfulness of ARGB pixels computed as Python computes it on cv2.imread's BGR array (rg = B - G, ...). */
    static double colourfulness(int[] argb, int width, int height) {
        int n = width * height;
        double[] rg = new double[n], yb = new double[n];
        for (int i = 0; i < n; i++) {
            int p = argb[i], r = (p >> 16) & 0xFF, g = (p >> 8) & 0xFF, b = p & 0xFF;
            rg[i] = b - g;
            yb[i] = 0.5 * (b + g) - r;
        }
        double[] a = std64(rg), c = std64(yb);
        return Math.hypot(a[1], c[1]) + 0.3 * Math.hypot(a[0], c[0]);
    }

    private static int[][] linearExactCoeffs(int ssize, int dsize) {  // OpenCV interpolationLinear, 8-bit weights
        double scale = 1.0 / ((double) dsize / ssize);
        int[] ofs = new int[dsize], c1 = new int[dsize];
        for (int d = 0; d < dsize; d++) {
            double f = scale * (d + 0.5) - 0.5;
            int i = (int) Math.floor(f);
            if (i >= 0 && ssize > 1) {
                if (i < ssize - 1) { ofs[d] = i; c1[d] = (int) Math.rint((f - i) * 256); }
                else { ofs[d] = ssize - 1; c1[d] = 0; }
            } else { ofs[d] = 0; c1[d] = 0; }
        }
        return new int[][] {ofs, c1};
    }

    /** cv2.resize(..., INTER_LINEAR_EXACT) of ARGB pixels, each channel as OpenCV does. */
    static int[] resizeLinearExact(int[] argb, int sw, int sh, int dw, int dh) {
        int[][] X = linearExactCoeffs(sw, dw), Y = linearExactCoeffs(sh, dh);
        int[] out = new int[dw * dh];
        int[] r0 = new int[4 * dw], r1 = new int[4 * dw];
        for (int dy = 0; dy < dh; dy++) {
            int sy = Y[0][dy];
            hrow(argb, sw, X, sy, dw, r0);
            hrow(argb, sw, X, Math.min(sy + 1, sh - 1), dw, r1);
            int b = Y[1][dy], a = 256 - b;
            for (int dx = 0; dx < dw; dx++) {
                int p = 0;
                for (int c = 0; c < 4; c++) {
                    int v = (int) (((long) r0[4 * dx + c] * a + (long) r1[4 * dx + c] * b + 32768) >>> 16);
                    p |= Math.min(v, 255) << (24 - 8 * c);
                }
                out[dy * dw + dx] = p;
            }
        }
        return out;
    }

    private static void hrow(int[] argb, int sw, int[][] X, int sy, int dw, int[] r) {  // channels A, R, G, B
        for (int dx = 0; dx < dw; dx++) {
            int p0 = argb[sy * sw + X[0][dx]], p1 = argb[sy * sw + Math.min(X[0][dx] + 1, sw - 1)];
            int b = X[1][dx], a = 256 - b;
            for (int c = 0; c < 4; c++) {
                int sh = 24 - 8 * c;
                r[4 * dx + c] = ((p0 >>> sh) & 0xFF) * a + ((p1 >>> sh) & 0xFF) * b;
            }
        }
    }

    /**
     * The Pillow mode edge_boneage.io.read_image records (ImageMeta.photometric) from a PNG's or JPEG's first bytes:
     * {format ("PNG", "JPEG" or null), mode ("L", "RGB", "P", "RGBA", "LA", "1", "I;16", "CMYK", ... or null)}.
     */
    public static String[] sourceMode(byte[] b) {
        int[] png = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a};
        boolean isPng = b.length >= 26;
        for (int i = 0; isPng && i < 8; i++) isPng = (b[i] & 0xFF) == png[i];
        if (isPng) {
            int depth = b[24] & 0xFF, type = b[25] & 0xFF;
            String mode = type == 0 ? (depth == 1 ? "1" : depth == 16 ? "I;16" : "L") : type == 2 ? "RGB"
                : type == 3 ? "P" : type == 4 ? (depth == 16 ? "RGBA" : "LA") : type == 6 ? "RGBA" : null;
            return new String[] {"PNG", mode};
        }
        if (b.length >= 4 && (b[0] & 0xFF) == 0xFF && (b[1] & 0xFF) == 0xD8) {
            int p = 2;
            while (p + 9 < b.length) {
                if ((b[p] & 0xFF) != 0xFF) break;
                int m = b[p + 1] & 0xFF;
                if (m == 0xFF) { p++; continue; }
                if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { p += 2; continue; }
                int len = ((b[p + 2] & 0xFF) << 8) | (b[p + 3] & 0xFF);
                if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                    int layers = b[p + 9] & 0xFF;
                    return new String[] {"JPEG", layers == 1 ? "L" : layers == 3 ? "RGB" : layers == 4 ? "CMYK" : null};
                }
                p += 2 + len;
            }
            return new String[] {"JPEG", null};
        }
        return new String[] {null, null};
    }

    /** source_colourfulness: {colourfulness or null, how it was found} (see quality.js sourceColourfulness). */
    static Object[] sourceColourfulness(Source src) {
        if (src == null) return new Object[] {null, "no meta"};
        String mode = src.mode == null ? "" : src.mode.toUpperCase(java.util.Locale.ROOT);
        boolean known = "PNG".equals(src.format) || "JPEG".equals(src.format);
        if (known && !Arrays.asList(QualityConstants.COLOUR_MODES).contains(mode)) {
            return new Object[] {0.0, "grey source (" + (mode.isEmpty() ? "unknown mode" : mode) + ")"};
        }
        String how = known ? mode + " source"
            : "decoded pixels (" + (src.format == null ? "unknown format" : src.format) + ")";
        if (src.argb == null) {
            return new Object[] {null, (mode.isEmpty() ? "unknown" : mode) + " source, no pixels: not measured"};
        }
        int w = src.width, h = src.height;
        if (Math.min(w, h) >= 1024) {
            int dw = w / 4, dh = h / 4;
            return new Object[] {colourfulness(resizeLinearExact(src.argb, w, h, dw, dh), dw, dh), how};
        }
        return new Object[] {colourfulness(src.argb, w, h), how};
    }

    private static double num(Map<String, Object> d, String k, double dflt) {
        Object v = d.get(k);
        return v instanceof Number ? ((Number) v).doubleValue() : dflt;
    }

    /** _hand_stats from a hand box map (HandBox.toMap(): rounded to 3 decimals, as HandBox.to_dict()). */
    static Map<String, Object> handStats(GreyImage img, Map<String, Object> d) {
        int w = img.width, h = img.height;
        double hw = Math.max(num(d, "hand_x1", 0) - num(d, "hand_x0", 0), 1e-9);
        double hh = Math.max(num(d, "hand_y1", 0) - num(d, "hand_y0", 0), 1e-9);
        double cov = num(d, "coverage", 0);
        boolean found = Boolean.TRUE.equals(d.get("found"));
        Map<String, Object> out = new LinkedHashMap<String, Object>();
        out.put("found", found);
        out.put("coverage", pyRound(cov, 4));
        out.put("fill", found ? pyRound(cov * w * h / (hw * hh), 4) : 0.0);
        out.put("aspect", pyRound((hh / h) / (hw / w), 4));
        out.put("angle_deg", pyRound(num(d, "angle_deg", 0), 2));
        return out;
    }

    // ---------------------------------------------------------------------------------------------- the gate

    /**
     * edge_boneage.quality.assess(img, meta, box). {@code img}: the grey image (Preprocess.argbToGrey of the decoded
     * file); {@code src}: what the colour check knows about the file, or null; {@code box}: the hand box found on
     * this image as it is (Preprocess.preprocessWithBox's box with frame "squeeze"), or null to locate it here.
     */
    public static Result assess(GreyImage img, Source src, Map<String, Object> box) {
        int w = img.width, h = img.height;
        final Map<String, Object> scores = new LinkedHashMap<String, Object>();
        final List<String> reasons = new ArrayList<String>();
        final Map<String, String> details = new LinkedHashMap<String, String>();
        scores.put("gate", QualityConstants.GATE_VERSION);

        scores.put("min_side", Math.min(h, w));
        if (Math.min(h, w) < QualityConstants.MIN_SIDE) {
            flag(reasons, details, "too small (" + w + "x" + h + " < " + QualityConstants.TEXT_MIN_SIDE + " px)",
                 "shortest side " + Math.min(h, w) + " px < " + QualityConstants.TEXT_MIN_SIDE);
        }

        double[] hist = histogram(img);
        int[] p = percentiles(hist, new double[] {0.5, 1, 99, 99.5});
        int p05 = p[0], p1 = p[1], p99 = p[2], p995 = p[3], spread = p995 - p05, lv = levels95(hist);
        scores.put("spread", spread);
        scores.put("p1", p1);
        scores.put("p99", p99);
        scores.put("range", p99 - p1);
        scores.put("levels95", lv);
        boolean constant = spread <= QualityConstants.CONSTANT_SPREAD;
        if (constant) {
            flag(reasons, details, "constant image", "99 % of pixels within " + spread + " grey levels (<= "
                 + QualityConstants.TEXT_CONSTANT_SPREAD + ")");
        } else if (p99 <= QualityConstants.UNDER_P99) {
            flag(reasons, details, "hopeless exposure", "under-exposed: 99 % of pixels <= " + p99 + " (limit "
                 + QualityConstants.TEXT_UNDER_P99 + ")");
        } else if (p1 >= QualityConstants.OVER_P1) {
            flag(reasons, details, "hopeless exposure", "over-exposed: 99 % of pixels >= " + p1 + " (limit "
                 + QualityConstants.TEXT_OVER_P1 + ")");
        } else if (p99 - p1 < QualityConstants.MIN_RANGE) {
            flag(reasons, details, "hopeless exposure", "no contrast: 98 % of pixels within " + (p99 - p1)
                 + " grey levels (< " + QualityConstants.TEXT_MIN_RANGE + ")");
        }

        GreyImage g64 = Preprocess.resizeArea(img, 64, 64), g128 = Preprocess.resizeArea(img, 128, 128);
        double ac = lag1Autocorrelation(g64), hf = fineDetail(g128);
        double[] bg = backgroundStats(g64);
        double pk = bg[0], pl = bg[1], ce = bg[2];
        scores.put("ac64", pyRound(ac, 4));
        scores.put("hf", pyRound(hf, 4));
        scores.put("peak", pk);
        scores.put("plain", pl);
        scores.put("centre", ce);
        if (!constant) {
            if (ac < QualityConstants.MIN_AC64) {
                flag(reasons, details, "noise-like", "neighbouring pixels uncorrelated: ac64 " + pyFixed(ac, 3) + " < "
                     + QualityConstants.TEXT_MIN_AC64);
            }
            if (hf > QualityConstants.MAX_HF) {
                flag(reasons, details, "fine-grained texture", "like noise, text or a pattern: hf " + pyFixed(hf, 3)
                     + " > " + QualityConstants.TEXT_MAX_HF);
            } else if (hf < QualityConstants.MIN_HF) {
                flag(reasons, details, "too smooth", "a gradient or flat drawing: hf " + pyFixed(hf, 4) + " < "
                     + QualityConstants.TEXT_MIN_HF);
            } else if (ac > QualityConstants.MAX_AC64) {
                flag(reasons, details, "too smooth", "a smooth blob: ac64 " + pyFixed(ac, 4) + " > "
                     + QualityConstants.TEXT_MAX_AC64);
            }
            if (lv < QualityConstants.MIN_LEVELS95) {
                flag(reasons, details, "few grey levels", "like text or a drawing: 95 % of pixels in " + lv
                     + " levels (< " + QualityConstants.TEXT_MIN_LEVELS95 + ")");
            }
            if (pk < QualityConstants.MIN_PEAK || pl < QualityConstants.MIN_PLAIN) {
                flag(reasons, details, "no plain background", "like a photo of a scene: commonest grey band "
                     + pyFixed(100 * pk, 1) + " % of pixels (limit " + QualityConstants.TEXT_MIN_PEAK_PCT
                     + " %), plain area " + pyFixed(100 * pl, 1) + " % (limit " + QualityConstants.TEXT_MIN_PLAIN_PCT
                     + " %)");
            } else if (pl > QualityConstants.MAX_PLAIN) {
                flag(reasons, details, "flat like a drawing", pyFixed(100 * pl, 0)
                     + " % of the image perfectly plain (> " + QualityConstants.TEXT_MAX_PLAIN_PCT + " %)");
            }
            if (ce < QualityConstants.MIN_CENTRE) {
                flag(reasons, details, "centre darker than surround", "a hand is brighter than its background: centre "
                     + pyFixed(ce, 2) + " std < " + QualityConstants.TEXT_MIN_CENTRE);
            }
        }

        Object[] col = sourceColourfulness(src);
        Double colour = (Double) col[0];
        String how = (String) col[1];
        scores.put("colourfulness", colour == null ? null : (Object) pyRound(colour, 2));
        scores.put("colour_source", how);
        if (colour != null && colour > QualityConstants.MAX_COLOURFULNESS) {
            flag(reasons, details, "colour photo", "colourfulness " + pyFixed(colour, 1) + " > "
                 + QualityConstants.TEXT_MAX_COLOURFULNESS_G + " (" + how + ")");
        }

        Map<String, Object> hand = handStats(img, box != null ? box : Preprocess.locateHand(img,
            PreprocessSpec.DEFAULT_CROP_MARGIN).toMap());
        scores.putAll(hand);
        double cov = (Double) hand.get("coverage");
        if (!Boolean.TRUE.equals(hand.get("found"))) {
            flag(reasons, details, "no hand found", "the hand localiser found no foreground");
        } else if (!(QualityConstants.COVERAGE_MIN <= cov && cov <= QualityConstants.COVERAGE_MAX)) {
            flag(reasons, details, "hand coverage out of range", "the located hand covers " + pyFixed(100 * cov, 1)
                 + " % of the image (range " + QualityConstants.TEXT_COVERAGE_MIN_PCT + "-"
                 + QualityConstants.TEXT_COVERAGE_MAX_PCT + " %)");
        }
        scores.put("details", details);
        return new Result(reasons, scores, ac, hf, colour);
    }

    private static void flag(List<String> reasons, Map<String, String> details, String reason, String detail) {
        if (!details.containsKey(reason)) {
            reasons.add(reason);
            details.put(reason, detail);
        }
    }
}
