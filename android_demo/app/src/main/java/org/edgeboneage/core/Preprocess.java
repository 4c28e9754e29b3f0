package org.edgeboneage.core;

/**
 * The edge-boneage preprocessing pipeline (docs/PREPROCESSING.md) in plain Java, bit-exact with OpenCV for uint8:
 * grey (Pillow luma) -> frame (centred letterbox, pad 0, extra pixel bottom/right; or the image itself, "squeeze")
 * -> [source_size N (contract version 3): cv2.INTER_AREA to N x N] -> [hand crop: edge_boneage.handcrop's box, cut
 * from the frame] -> cv2.INTER_AREA to S x S ->
 * optional cv2.equalizeHist / CLAHE. A line-by-line port of android_demo/web/boneage.js; no Android dependencies.
 * Java float arithmetic is IEEE single precision, which reproduces OpenCV's float32 accumulation exactly.
 */
public final class Preprocess {
    private Preprocess() {}

    /** Packed ARGB pixels (Android Bitmap.getPixels order) -> grey: (19595 R + 38470 G + 7471 B + 32768) >> 16. */
    public static GreyImage argbToGrey(int[] argb, int width, int height) {
        byte[] out = new byte[width * height];
        for (int i = 0; i < out.length; i++) {
            int p = argb[i];
            int r = (p >> 16) & 0xFF, g = (p >> 8) & 0xFF, b = p & 0xFF;
            out[i] = (byte) ((19595 * r + 38470 * g + 7471 * b + 32768) >>> 16);
        }
        return new GreyImage(width, height, out);
    }

    public static GreyImage letterboxSquare(GreyImage img, int pad) {
        int w = img.width, h = img.height, side = Math.max(w, h);
        int top = (side - h) / 2, left = (side - w) / 2;
        byte[] out = new byte[side * side];
        if (pad != 0) java.util.Arrays.fill(out, (byte) pad);
        for (int y = 0; y < h; y++) System.arraycopy(img.data, y * w, out, (y + top) * side + left, w);
        return new GreyImage(side, side, out);
    }

    /** cvRound of a float (round half to even) saturated to 0..255. */
    static int roundU8(float x) {
        double r = Math.rint(x);
        return r < 0 ? 0 : r > 255 ? 255 : (int) r;
    }

    private static final class AreaTab {
        int[] di, si; float[] alpha; int n;
    }

    private static AreaTab areaTab(int ssize, int dsize, double scale) {  // OpenCV computeResizeAreaTab
        AreaTab t = new AreaTab();
        t.di = new int[ssize * 2 + 2]; t.si = new int[ssize * 2 + 2]; t.alpha = new float[ssize * 2 + 2];
        int k = 0;
        for (int dx = 0; dx < dsize; dx++) {
            double fsx1 = dx * scale, fsx2 = fsx1 + scale;
            double cell = Math.min(scale, ssize - fsx1);
            int sx1 = (int) Math.ceil(fsx1), sx2 = (int) Math.floor(fsx2);
            sx2 = Math.min(sx2, ssize - 1);
            sx1 = Math.min(sx1, sx2);
            if (sx1 - fsx1 > 1e-3) { t.di[k] = dx; t.si[k] = sx1 - 1; t.alpha[k++] = (float) ((sx1 - fsx1) / cell); }
            for (int sx = sx1; sx < sx2; sx++) { t.di[k] = dx; t.si[k] = sx; t.alpha[k++] = (float) (1.0 / cell); }
            if (fsx2 - sx2 > 1e-3) {
                t.di[k] = dx; t.si[k] = sx2; t.alpha[k++] = (float) (Math.min(Math.min(fsx2 - sx2, 1.0), cell) / cell);
            }
        }
        t.n = k;
        return t;
    }

    private static byte[] shrink(GreyImage img, int dw, int dh, double scaleX, double scaleY) {
        AreaTab xt = areaTab(img.width, dw, scaleX), yt = areaTab(img.height, dh, scaleY);
        byte[] out = new byte[dw * dh];
        float[] buf = new float[dw], sum = new float[dw];
        int prevDy = yt.di[0];
        for (int j = 0; j < yt.n; j++) {
            int dy = yt.di[j], sy = yt.si[j];
            float beta = yt.alpha[j];
            java.util.Arrays.fill(buf, 0f);
            int row = sy * img.width;
            for (int k = 0; k < xt.n; k++) buf[xt.di[k]] += (img.data[row + xt.si[k]] & 0xFF) * xt.alpha[k];
            if (dy != prevDy) {
                for (int dx = 0; dx < dw; dx++) { out[prevDy * dw + dx] = (byte) roundU8(sum[dx]); sum[dx] = beta * buf[dx]; }
                prevDy = dy;
            } else {
                for (int dx = 0; dx < dw; dx++) sum[dx] += beta * buf[dx];
            }
        }
        for (int dx = 0; dx < dw; dx++) out[prevDy * dw + dx] = (byte) roundU8(sum[dx]);
        return out;
    }

    private static byte[] shrinkInteger(GreyImage img, int dw, int dh, int kx, int ky) {  // resizeAreaFast
        byte[] out = new byte[dw * dh];
        float scale = 1f / (kx * ky);
        for (int dy = 0; dy < dh; dy++) {
            for (int dx = 0; dx < dw; dx++) {
                int s = 0;
                for (int y = 0; y < ky; y++) {
                    int row = (dy * ky + y) * img.width + dx * kx;
                    for (int x = 0; x < kx; x++) s += img.data[row + x] & 0xFF;
                }
                out[dy * dw + dx] = (byte) ((kx == 2 && ky == 2) ? (s + 2) >> 2 : roundU8(s * scale));
            }
        }
        return out;
    }

    private static int[][] linearAreaCoeffs(int ssize, int dsize) {  // resizeGeneric, INTER_AREA when enlarging
        double inv = (double) dsize / ssize, scale = 1.0 / inv;
        int[] ofs = new int[dsize], c0 = new int[dsize], c1 = new int[dsize];
        for (int d = 0; d < dsize; d++) {
            int s = (int) Math.floor(d * scale);
            float f = (float) ((d + 1) - (s + 1) * inv);
            f = f <= 0 ? 0f : f - (float) Math.floor(f);
            if (s >= ssize - 1) { s = ssize - 1; f = 0f; }
            ofs[d] = s;
            c0[d] = (int) Math.rint((1f - f) * 2048f);
            c1[d] = (int) Math.rint(f * 2048f);
        }
        return new int[][] {ofs, c0, c1};
    }

    private static byte[] enlarge(GreyImage img, int dw, int dh) {
        int sw = img.width, sh = img.height;
        int[][] X = linearAreaCoeffs(sw, dw), Y = linearAreaCoeffs(sh, dh);
        int[][] rows = new int[sh][];
        byte[] out = new byte[dw * dh];
        for (int dy = 0; dy < dh; dy++) {
            int sy = Y[0][dy];
            int[] r0 = hrow(img, X, sy, dw, rows), r1 = hrow(img, X, Math.min(sy + 1, sh - 1), dw, rows);
            int b0 = Y[1][dy], b1 = Y[2][dy];
            for (int dx = 0; dx < dw; dx++) {
                int v = (((b0 * (r0[dx] >> 4)) >> 16) + ((b1 * (r1[dx] >> 4)) >> 16) + 2) >> 2;
                out[dy * dw + dx] = (byte) (v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
        return out;
    }

    private static int[] hrow(GreyImage img, int[][] X, int sy, int dw, int[][] cache) {
        if (cache[sy] != null) return cache[sy];
        int[] r = new int[dw];
        int base = sy * img.width;
        for (int dx = 0; dx < dw; dx++) {
            int s = X[0][dx];
            int a = img.data[base + s] & 0xFF;
            r[dx] = s + 1 < img.width ? a * X[1][dx] + (img.data[base + s + 1] & 0xFF) * X[2][dx] : a * X[1][dx];
        }
        cache[sy] = r;
        return r;
    }

    /** cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA) for uint8 grey. */
    public static GreyImage resizeArea(GreyImage img, int dw, int dh) {
        if (img.width == dw && img.height == dh) return new GreyImage(dw, dh, img.data.clone());
        double scaleX = 1.0 / ((double) dw / img.width), scaleY = 1.0 / ((double) dh / img.height);
        byte[] data;
        if (scaleX >= 1 && scaleY >= 1) {
            int kx = (int) Math.round(scaleX), ky = (int) Math.round(scaleY);
            boolean fast = Math.abs(scaleX - kx) < Math.ulp(1.0) && Math.abs(scaleY - ky) < Math.ulp(1.0);
            data = fast ? shrinkInteger(img, dw, dh, kx, ky) : shrink(img, dw, dh, scaleX, scaleY);
        } else {
            data = enlarge(img, dw, dh);
        }
        return new GreyImage(dw, dh, data);
    }

    /** cv2.equalizeHist. */
    public static GreyImage equalizeHist(GreyImage img) {
        int n = img.width * img.height;
        int[] hist = new int[256];
        for (int i = 0; i < n; i++) hist[img.data[i] & 0xFF]++;
        int i0 = 0;
        while (i0 < 255 && hist[i0] == 0) i0++;
        if (hist[i0] == n) return new GreyImage(img.width, img.height, img.data.clone());
        float scale = 255f / (n - hist[i0]);
        byte[] lut = new byte[256];
        int sum = 0;
        for (int v = i0 + 1; v < 256; v++) { sum += hist[v]; lut[v] = (byte) roundU8(sum * scale); }
        byte[] out = new byte[n];
        for (int i = 0; i < n; i++) out[i] = lut[img.data[i] & 0xFF];
        return new GreyImage(img.width, img.height, out);
    }

    /** cv2.createCLAHE(clipLimit=clip, tileGridSize=(tx, ty)).apply(img). */
    public static GreyImage clahe(GreyImage img, double clip, int tx, int ty) {
        int W = img.width, H = img.height;
        int PW = W % tx != 0 ? W + tx - W % tx : W, PH = H % ty != 0 ? H + ty - H % ty : H;
        byte[] padded = new byte[PW * PH];
        for (int y = 0; y < PH; y++) {
            int sy = y < H ? y : 2 * (H - 1) - y;
            for (int x = 0; x < PW; x++) padded[y * PW + x] = img.data[sy * W + (x < W ? x : 2 * (W - 1) - x)];
        }
        int tw = PW / tx, th = PH / ty, area = tw * th;
        int limit = Math.max((int) (clip * area / 256), 1);
        float lutScale = 255f / area;
        byte[] luts = new byte[tx * ty * 256];
        int[] hist = new int[256];
        for (int j = 0; j < ty; j++) {
            for (int i = 0; i < tx; i++) {
                java.util.Arrays.fill(hist, 0);
                for (int y = j * th; y < (j + 1) * th; y++)
                    for (int x = i * tw; x < (i + 1) * tw; x++) hist[padded[y * PW + x] & 0xFF]++;
                int clipped = 0;
                for (int v = 0; v < 256; v++) if (hist[v] > limit) { clipped += hist[v] - limit; hist[v] = limit; }
                int batch = clipped / 256, residual = clipped - batch * 256;
                for (int v = 0; v < 256; v++) hist[v] += batch;
                if (residual != 0) {
                    int step = Math.max(256 / residual, 1);
                    for (int v = 0; v < 256 && residual > 0; v += step, residual--) hist[v]++;
                }
                int sum = 0, base = (j * tx + i) * 256;
                for (int v = 0; v < 256; v++) { sum += hist[v]; luts[base + v] = (byte) roundU8(sum * lutScale); }
            }
        }
        float invTw = 1f / tw, invTh = 1f / th;
        byte[] out = new byte[W * H];
        for (int y = 0; y < H; y++) {
            float tyf = y * invTh - 0.5f;
            int ty1 = (int) Math.floor(tyf), ty2 = ty1 + 1;
            float ya = tyf - ty1, ya1 = 1f - ya;
            ty1 = Math.max(ty1, 0); ty2 = Math.min(ty2, ty - 1);
            for (int x = 0; x < W; x++) {
                float txf = x * invTw - 0.5f;
                int tx1 = (int) Math.floor(txf), tx2 = tx1 + 1;
                float xa = txf - tx1, xa1 = 1f - xa;
                tx1 = Math.max(tx1, 0); tx2 = Math.min(tx2, tx - 1);
                int v = img.data[y * W + x] & 0xFF;
                float l11 = luts[(ty1 * tx + tx1) * 256 + v] & 0xFF, l12 = luts[(ty1 * tx + tx2) * 256 + v] & 0xFF;
                float l21 = luts[(ty2 * tx + tx1) * 256 + v] & 0xFF, l22 = luts[(ty2 * tx + tx2) * 256 + v] & 0xFF;
                float top = l11 * xa1 + l12 * xa, bot = l21 * xa1 + l22 * xa;
                out[y * W + x] = (byte) roundU8(top * ya1 + bot * ya);
            }
        }
        return new GreyImage(W, H, out);
    }

    // -------------------------------------------------------------------------------------------------------
    // Hand crop: edge_boneage.handcrop.locate_hand / crop_box (rule PreprocessSpec.HAND_RULE), every OpenCV step
    // reproduced bit for bit (docs/PREPROCESSING.md, section 5); double steps in the Python code's operation order.

    public static final int HAND_WORK_SIZE = 128;
    private static final double FLT_EPSILON = 1.1920928955078125e-7;

    private static int reflect101(int p, int n) {  // cv::borderInterpolate(p, n, BORDER_REFLECT_101)
        if (n == 1) return 0;
        while (p < 0 || p >= n) p = p < 0 ? -p : 2 * n - 2 - p;
        return p;
    }

    /**
     * cv2.GaussianBlur(img, (5, 5), 0) for uint8: OpenCV's fixed-point kernel [1, 4, 6, 4, 1] / 16 per axis (exact),
     * BORDER_REFLECT_101; the integer 5x5 sum S of k[i] k[j] src is rounded as (S + 128) >> 8.
     */
    public static GreyImage gaussianBlur5(GreyImage img) {
        int w = img.width, h = img.height;
        int[] K = {1, 4, 6, 4, 1};
        int[] xi = new int[5 * w];
        for (int x = 0; x < w; x++) for (int k = 0; k < 5; k++) xi[5 * x + k] = reflect101(x + k - 2, w);
        int[] hp = new int[w * h];
        for (int y = 0; y < h; y++) {
            int row = y * w;
            for (int x = 0; x < w; x++) {
                int s = 0;
                for (int k = 0; k < 5; k++) s += K[k] * (img.data[row + xi[5 * x + k]] & 0xFF);
                hp[row + x] = s;
            }
        }
        byte[] out = new byte[w * h];
        int[] rows = new int[5];
        for (int y = 0; y < h; y++) {
            for (int k = 0; k < 5; k++) rows[k] = reflect101(y + k - 2, h) * w;
            for (int x = 0; x < w; x++) {
                int s = 0;
                for (int k = 0; k < 5; k++) s += K[k] * hp[rows[k] + x];
                out[y * w + x] = (byte) ((s + 128) >> 8);
            }
        }
        return new GreyImage(w, h, out);
    }

    /** cv2.threshold(vals, 0, 255, THRESH_BINARY + THRESH_OTSU)'s threshold from the 256-bin histogram of n values
     * (OpenCV's getThreshVal_Otsu_8u in double, same operation order; the first maximum wins). */
    public static int otsuThreshold(int[] hist, int n) {
        double scale = 1.0 / n, mu = 0;
        for (int i = 0; i < 256; i++) mu += i * (double) hist[i];
        mu *= scale;
        double mu1 = 0, q1 = 0, maxSigma = 0;
        int maxVal = 0;
        for (int i = 0; i < 256; i++) {
            double pi = hist[i] * scale;
            mu1 *= q1;
            q1 += pi;
            double q2 = 1.0 - q1;
            if (Math.min(q1, q2) < FLT_EPSILON || Math.max(q1, q2) > 1.0 - FLT_EPSILON) continue;
            mu1 = (mu1 + i * pi) / q1;
            double mu2 = (mu - q1 * mu1) / q2;
            double sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
            if (sigma > maxSigma) { maxSigma = sigma; maxVal = i; }
        }
        return maxVal;
    }

    // cv2.getStructuringElement(MORPH_ELLIPSE, (5, 5)), anchor at the centre: rows 00100 / 11111 x 3 / 00100
    private static final int[][] ELLIPSE5;
    static {
        java.util.List<int[]> offs = new java.util.ArrayList<int[]>();
        for (int dy = -2; dy <= 2; dy++) {
            for (int dx = -2; dx <= 2; dx++) if (Math.abs(dy) < 2 || dx == 0) offs.add(new int[] {dy, dx});
        }
        ELLIPSE5 = offs.toArray(new int[0][]);
    }

    private static byte[] morph5(byte[] m, int w, int h, boolean erode) {  // pixels outside the image are ignored
        byte[] out = new byte[w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int v = erode ? 1 : 0;
                for (int[] o : ELLIPSE5) {
                    int yy = y + o[0], xx = x + o[1];
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                    if (erode) v &= m[yy * w + xx]; else v |= m[yy * w + xx];
                }
                out[y * w + x] = (byte) v;
            }
        }
        return out;
    }

    /** handcrop._otsu_mask: g > t, t halfway between Otsu's threshold and the mean of the values <= it (over where,
     * if not null), then the opening with the 5x5 ellipse. 0/1 bytes. */
    private static byte[] otsuMask(GreyImage g, byte[] where) {
        int n = g.data.length, count = 0, lo = 255, hi = 0;
        int[] hist = new int[256];
        for (int i = 0; i < n; i++) {
            if (where != null && where[i] == 0) continue;
            int v = g.data[i] & 0xFF;
            hist[v]++; count++;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        byte[] m = new byte[n];
        if (count == 0 || lo == hi) return m;
        int ot = otsuThreshold(hist, count);
        long sumLow = 0, nLow = 0;  // exact, like numpy's float64 sum of uint8
        for (int v = 0; v <= ot; v++) { sumLow += (long) v * hist[v]; nLow += hist[v]; }
        double t = 0.5 * (ot + (nLow != 0 ? (double) sumLow / nLow : ot));
        for (int i = 0; i < n; i++) m[i] = (byte) ((g.data[i] & 0xFF) > t && (where == null || where[i] != 0) ? 1 : 0);
        return morph5(morph5(m, g.width, g.height, true), g.width, g.height, false);
    }

    private static final class Component {
        byte[] mask; int area, x0, y0, x1, y1;  // inclusive bounds
    }

    /**
     * handcrop._largest_component: the largest 8-connected component, or null. Ties: the first in
     * cv2.connectedComponentsWithStats label order, which follows each component's first 2x2 block (block row
     * y / 2, then block column x / 2: OpenCV's block-based 8-connectivity labelling), not pixel raster order.
     */
    private static Component largestComponent(byte[] m, int w, int h) {
        int[] labels = new int[w * h], stack = new int[w * h];
        int bw = (w + 1) >> 1, n = 0, best = 0, bestArea = 0, bestKey = Integer.MAX_VALUE;
        for (int i = 0; i < w * h; i++) {
            if (m[i] == 0 || labels[i] != 0) continue;
            n++;
            int area = 0, key = Integer.MAX_VALUE, sp = 0;
            labels[i] = n; stack[sp++] = i;
            while (sp > 0) {
                int p = stack[--sp];
                area++;
                int y = p / w, x = p - y * w;
                int k = (y >> 1) * bw + (x >> 1);
                if (k < key) key = k;
                for (int yy = Math.max(y - 1, 0); yy <= Math.min(y + 1, h - 1); yy++) {
                    for (int xx = Math.max(x - 1, 0); xx <= Math.min(x + 1, w - 1); xx++) {
                        int q = yy * w + xx;
                        if (m[q] != 0 && labels[q] == 0) { labels[q] = n; stack[sp++] = q; }
                    }
                }
            }
            if (area > bestArea || (area == bestArea && key < bestKey)) { best = n; bestArea = area; bestKey = key; }
        }
        if (n == 0) return null;
        Component c = new Component();
        c.mask = new byte[w * h]; c.area = bestArea; c.x0 = w; c.y0 = h; c.x1 = -1; c.y1 = -1;
        for (int i = 0; i < w * h; i++) {
            if (labels[i] != best) continue;
            c.mask[i] = 1;
            int y = i / w, x = i - y * w;
            c.x0 = Math.min(c.x0, x); c.x1 = Math.max(c.x1, x); c.y0 = Math.min(c.y0, y); c.y1 = Math.max(c.y1, y);
        }
        return c;
    }

    /** numpy's pairwise summation of float64 (np.add.reduce / np.mean of a contiguous 1-D array). */
    static double pairwiseSum(double[] a, int lo, int n) {
        if (n < 8) {
            double s = 0;
            for (int i = 0; i < n; i++) s += a[lo + i];
            return s;
        }
        if (n <= 128) {
            double[] r = java.util.Arrays.copyOfRange(a, lo, lo + 8);
            int i = 8;
            for (; i < n - (n % 8); i += 8) for (int j = 0; j < 8; j++) r[j] += a[lo + i + j];
            double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for (; i < n; i++) s += a[lo + i];
            return s;
        }
        int n2 = n / 2;
        n2 -= n2 % 8;
        return pairwiseSum(a, lo, n2) + pairwiseSum(a, lo + n2, n - n2);
    }

    /** edge_boneage.handcrop.HandBox: a box in frame pixels (unrounded; the corner is (cx - w / 2, cy - h / 2)). */
    public static final class HandBox {
        public final double cx, cy, w, h, handX0, handY0, handX1, handY1, coverage, angleDeg;
        public final boolean found;

        HandBox(double cx, double cy, double w, double h, double handX0, double handY0, double handX1, double handY1,
                double coverage, double angleDeg, boolean found) {
            this.cx = cx; this.cy = cy; this.w = w; this.h = h; this.handX0 = handX0; this.handY0 = handY0;
            this.handX1 = handX1; this.handY1 = handY1; this.coverage = coverage; this.angleDeg = angleDeg;
            this.found = found;
        }

        public double x0() { return cx - w / 2.0; }
        public double y0() { return cy - h / 2.0; }

        /** HandBox.to_dict(): every number rounded to 3 decimals (half to even), corners x0, y0, x1, y1 added. */
        public java.util.Map<String, Object> toMap() {
            java.util.Map<String, Object> d = new java.util.LinkedHashMap<String, Object>();
            double x0 = x0(), y0 = y0();
            double[] v = {cx, cy, w, h, handX0, handY0, handX1, handY1, coverage, angleDeg, x0, y0, x0 + w, y0 + h};
            String[] k = {"cx", "cy", "w", "h", "hand_x0", "hand_y0", "hand_x1", "hand_y1", "coverage", "angle_deg",
                          "x0", "y0", "x1", "y1"};
            for (int i = 0; i < k.length; i++) d.put(k[i], round3(v[i]));
            d.put("found", found);
            return d;
        }
    }

    /** Python's round(x, 3) on a double: the nearest multiple of 0.001 (ties to even), as the nearest double. */
    public static double round3(double x) {
        if (Double.isNaN(x) || Double.isInfinite(x)) return x;
        return new java.math.BigDecimal(x).setScale(3, java.math.RoundingMode.HALF_EVEN).doubleValue();
    }

    /** edge_boneage.handcrop.locate_hand on a frame (see docs/PREPROCESSING.md section 5). */
    public static HandBox locateHand(GreyImage frame, double margin) {
        int w = frame.width, h = frame.height, N = HAND_WORK_SIZE;
        GreyImage g = gaussianBlur5(resizeArea(frame, N, N));
        Component comp = largestComponent(otsuMask(g, null), N, N);
        if (comp != null && (double) comp.area / (double) ((comp.y1 - comp.y0 + 1) * (comp.x1 - comp.x0 + 1)) > 0.85) {
            Component inner = largestComponent(otsuMask(g, comp.mask), N, N);
            if (inner != null && inner.area >= 0.05 * comp.area) comp = inner;
        }
        if (comp == null) return new HandBox(w / 2.0, h / 2.0, w, h, 0, 0, w, h, 0, 0, false);
        double sx = (double) w / N, sy = (double) h / N;
        int gx0 = comp.x0, gx1 = comp.x1 + 1, gy0 = comp.y0, gy1 = comp.y1 + 1;
        double side = Math.max(gx1 - gx0, gy1 - gy0) * (1.0 + 2.0 * margin);  // grid units
        double x0 = gx0 * sx, x1 = gx1 * sx, y0 = gy0 * sy, y1 = gy1 * sy;
        int n = comp.area;  // principal axis from central second moments, as numpy computes them (pairwise sums)
        double[] dx = new double[n], dy = new double[n];
        for (int i = 0, k = 0; i < N * N; i++) {
            if (comp.mask[i] == 0) continue;
            dx[k] = (i % N + 0.5) * sx; dy[k] = (i / N + 0.5) * sy; k++;
        }
        double mx = pairwiseSum(dx, 0, n) / n, my = pairwiseSum(dy, 0, n) / n;
        double[] xx = new double[n], yy = new double[n], xy = new double[n];
        for (int k = 0; k < n; k++) {
            dx[k] -= mx; dy[k] -= my;
            xx[k] = dx[k] * dx[k]; yy[k] = dy[k] * dy[k]; xy[k] = dx[k] * dy[k];
        }
        double mxx = pairwiseSum(xx, 0, n) / n, myy = pairwiseSum(yy, 0, n) / n, mxy = pairwiseSum(xy, 0, n) / n;
        double angle = 0.5 * (StrictMath.atan2(2.0 * mxy, myy - mxx) * (180 / Math.PI));
        return new HandBox((x0 + x1) / 2.0, (y0 + y1) / 2.0, side * sx, side * sy, x0, y0, x1, y1,
                           (double) n / (N * N), -angle, true);
    }

    /** handcrop.crop_box: the rectangle (x0, y0, bw, bh) rounded outwards to whole pixels (outside -> 0), resized
     * to ow x oh with INTER_AREA. */
    public static GreyImage cropBox(GreyImage img, double x0, double y0, double bw, double bh, int ow, int oh) {
        int ix0 = (int) Math.floor(x0), iy0 = (int) Math.floor(y0);
        int ix1 = Math.max(ix0 + 1, (int) Math.ceil(x0 + bw)), iy1 = Math.max(iy0 + 1, (int) Math.ceil(y0 + bh));
        int cw = ix1 - ix0, ch = iy1 - iy0;
        byte[] out = new byte[cw * ch];
        int sx0 = Math.max(ix0, 0), sy0 = Math.max(iy0, 0);
        int sx1 = Math.min(ix1, img.width), sy1 = Math.min(iy1, img.height);
        if (sx1 > sx0 && sy1 > sy0) {
            for (int y = sy0; y < sy1; y++) {
                System.arraycopy(img.data, y * img.width + sx0, out, (y - iy0) * cw + (sx0 - ix0), sx1 - sx0);
            }
        }
        GreyImage c = new GreyImage(cw, ch, out);
        return cw == ow && ch == oh ? c : resizeArea(c, ow, oh);
    }

    /** The model input and the hand box (in the original image's pixels, rounded like HandBox.to_dict(); null
     * without a hand crop). */
    public static final class Result {
        public final GreyImage image;
        public final java.util.Map<String, Object> box;
        Result(GreyImage image, java.util.Map<String, Object> box) { this.image = image; this.box = box; }
    }

    /**
     * edge_boneage.preprocess.preprocess_full / PreprocessSpec.apply_with_box: grey -> frame ("letterbox" or
     * "squeeze") -> [source_size N (version 3): INTER_AREA of the frame to N x N unless it is N x N] -> [hand crop,
     * found and cut in that frame, reported in the original image's pixels] or INTER_AREA of the frame to S x S ->
     * optional enhancement.
     */
    public static Result preprocessWithBox(GreyImage grey, PreprocessSpec spec) {
        GreyImage frame = grey;
        int left = 0, top = 0;
        boolean letterbox = "letterbox".equals(spec.frame);
        if (letterbox) {
            frame = letterboxSquare(grey, spec.padValue);
            left = (frame.width - grey.width) / 2; top = (frame.height - grey.height) / 2;
        } else if (!"squeeze".equals(spec.frame)) {
            throw new IllegalArgumentException("unknown frame rule '" + spec.frame + "'");
        }
        int n = spec.sourceSize;
        double fx = 1.0, fy = 1.0;  // frame pixels per working pixel
        if (n > 0 && !(frame.width == n && frame.height == n)) {
            fx = frame.width / (double) n; fy = frame.height / (double) n;
            frame = resizeArea(frame, n, n);
        }
        GreyImage img;
        java.util.Map<String, Object> box = null;
        if ("hand".equals(spec.crop)) {
            HandBox hb = locateHand(frame, spec.cropMargin);
            img = cropBox(frame, hb.x0(), hb.y0(), hb.w, hb.h, spec.inputSize, spec.inputSize);
            box = hb.toMap();
            if (fx != 1.0 || fy != 1.0) {  // back to frame pixels (rounded again, as Python does)
                for (String k : new String[] {"x0", "x1", "hand_x0", "hand_x1", "cx", "w"}) {
                    box.put(k, round3((Double) box.get(k) * fx));
                }
                for (String k : new String[] {"y0", "y1", "hand_y0", "hand_y1", "cy", "h"}) {
                    box.put(k, round3((Double) box.get(k) * fy));
                }
            }
            if (letterbox) {  // report in original pixels (rounded again, as Python does)
                for (String k : new String[] {"x0", "x1", "hand_x0", "hand_x1", "cx"}) {
                    box.put(k, round3((Double) box.get(k) - left));
                }
                for (String k : new String[] {"y0", "y1", "hand_y0", "hand_y1", "cy"}) {
                    box.put(k, round3((Double) box.get(k) - top));
                }
            }
        } else if (spec.crop == null) {
            img = resizeArea(frame, spec.inputSize, spec.inputSize);
        } else {
            throw new IllegalArgumentException("unknown crop '" + spec.crop + "'");
        }
        if ("hist".equals(spec.enhance)) img = equalizeHist(img);
        else if ("clahe".equals(spec.enhance)) img = clahe(img, spec.claheClip, spec.claheTilesX, spec.claheTilesY);
        return new Result(img, box);
    }

    /** The model input only (see preprocessWithBox). */
    public static GreyImage preprocess(GreyImage grey, PreprocessSpec spec) {
        return preprocessWithBox(grey, spec).image;
    }
}
