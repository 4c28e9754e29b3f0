package org.edgeboneage.core;

/**
 * The edge-boneage preprocessing pipeline (docs/PREPROCESSING.md) in plain Java, bit-exact with OpenCV for uint8:
 * grey (Pillow luma) -> centred letterbox (pad 0, extra pixel bottom/right) -> cv2.INTER_AREA to S x S ->
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

    /** grey -> letterbox -> INTER_AREA to S x S -> optional enhancement, per the model's spec. */
    public static GreyImage preprocess(GreyImage grey, PreprocessSpec spec) {
        GreyImage img = resizeArea(letterboxSquare(grey, spec.padValue), spec.inputSize, spec.inputSize);
        if ("hist".equals(spec.enhance)) img = equalizeHist(img);
        else if ("clahe".equals(spec.enhance)) img = clahe(img, spec.claheClip, spec.claheTilesX, spec.claheTilesY);
        return img;
    }
}
