package org.edgeboneage.core;

import static org.edgeboneage.core.TestKit.*;

import java.awt.image.BufferedImage;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/**
 * JVM tests of the Java core against fixtures written by the Python side (tests/test_android_demo.py uses
 * edge_boneage.preprocess, edge_boneage.io.read_image and edge_boneage.tflite_meta). Usage:
 * {@code java -cp core:tests org.edgeboneage.core.CoreTest FIXTURE_DIR}. Prints one line per failure and a
 * final "N passed, M failed" line; exit code 1 on any failure.
 */
public final class CoreTest {
    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        final File dir = new File(args[0]);
        List<Object> cases = (List<Object>) MiniJson.parse(new String(read(dir, "cases.json"), StandardCharsets.UTF_8));
        // 1. preprocessing: pixel for pixel against edge_boneage.preprocess (OpenCV)
        for (Object o : cases) {
            final Map<String, Object> c = (Map<String, Object>) o;
            final String name = (String) c.get("name");
            test(name, new Body() {
                public void run() throws Exception {
                    int w = ((Number) c.get("w")).intValue(), h = ((Number) c.get("h")).intValue();
                    int S = ((Number) c.get("S")).intValue();
                    GreyImage src = new GreyImage(w, h, read(dir, name + ".in"));
                    byte[] want = read(dir, name + ".out");
                    PreprocessSpec spec = new PreprocessSpec(S, (String) c.get("enhance"), 2.0, 8, 8, 0);
                    GreyImage got = Preprocess.preprocess(src, spec);
                    int diff = 0, first = -1;
                    for (int i = 0; i < want.length; i++) if (want[i] != got.data[i]) { diff++; if (first < 0) first = i; }
                    check("preprocess " + name, got.data.length == want.length && diff == 0,
                        diff + " of " + want.length + " pixels differ (first at " + first + ")");
                }
            });
        }
        // 2. decoding colour/palette images to grey: ImageIO ARGB -> Pillow luma, against edge_boneage.io.read_image
        File[] pngs = dir.listFiles();
        java.util.Arrays.sort(pngs);
        for (final File f : pngs) {
            if (!f.getName().startsWith("decode_") || !f.getName().endsWith(".png")) continue;
            test(f.getName(), new Body() {
                public void run() throws Exception {
                    BufferedImage bi = javax.imageio.ImageIO.read(f);
                    int w = bi.getWidth(), h = bi.getHeight();
                    int[] argb = bi.getRGB(0, 0, w, h, null, 0, w);
                    GreyImage g = Preprocess.argbToGrey(argb, w, h);
                    byte[] want = read(dir, f.getName() + ".grey");
                    check("decode " + f.getName(), java.util.Arrays.equals(g.data, want), "grey pixels differ");
                }
            });
        }
        // 3. metadata inside the .tflite
        test("metadata", new Body() {
            public void run() throws Exception {
                Map<String, Object> meta = TfliteMetadata.read(read(dir, "model.tflite"));
                Map<String, Object> want = (Map<String, Object>) MiniJson.parse(
                    new String(read(dir, "model_meta.json"), StandardCharsets.UTF_8));
                Object plainEntries = want.remove("_plain_entries");  // the fixture's note, not model metadata
                check("metadata equals Python's read_metadata", want.equals(meta), meta + " != " + want);
                PreprocessSpec spec = PreprocessSpec.fromMetadata(meta, 0);
                check("spec input size", spec.inputSize == ((Number) ((Map<String, Object>) want.get("preprocess"))
                    .get("input_size")).intValue(), "input size " + spec.inputSize);
                boolean threw = false;
                try { PreprocessSpec.fromMetadata(meta, spec.inputSize + 1); } catch (IllegalArgumentException e) { threw = true; }
                check("spec rejects a mismatching model input", threw, "no exception");
                check("model without metadata", TfliteMetadata.read(read(dir, "plain.tflite")) == null, "expected null");
                check("converter metadata listed", TfliteMetadata.list(read(dir, "plain.tflite")).size()
                    == ((Number) plainEntries).intValue(), "entry count");
            }
        });
        test("metadata rejects junk", new Body() {
            public void run() throws Exception {
                boolean threw = false;
                try { TfliteMetadata.read("not a model at all".getBytes(StandardCharsets.UTF_8)); }
                catch (IllegalArgumentException e) { threw = true; }
                check("junk rejected", threw, "no exception");
                byte[] m = read(dir, "model.tflite");
                byte[] cut = java.util.Arrays.copyOf(m, 64);
                threw = false;
                try { TfliteMetadata.read(cut); } catch (IllegalArgumentException e) { threw = true; }
                check("truncated rejected", threw, "no exception");
            }
        });
        // 3b. the quality gate's feature check (edge_boneage.featuregate) on the packaged model's metadata
        test("feature check", new Body() {
            public void run() throws Exception {
                Map<String, Object> want = (Map<String, Object>) MiniJson.parse(
                    new String(read(dir, "gate.json"), StandardCharsets.UTF_8));
                double thr = ((Number) want.get("threshold")).doubleValue();
                Double got = Quality.featureThreshold(TfliteMetadata.read(read(dir, "packaged.tflite")));
                check("feature threshold read from the packaged model", got != null && got == thr, got + " != " + thr);
                check("no feature threshold without the output record",
                    Quality.featureThreshold(TfliteMetadata.read(read(dir, "model.tflite"))) == null, "expected null");
                GreyImage g = new GreyImage(64, 64, new byte[64 * 64]);
                Quality.Result base = Quality.assess(g, new Quality.Source(null, null, null, 64, 64), null);
                double v = ((Number) want.get("residual")).doubleValue();
                Quality.Result r = base.withFeatureResidual(v, thr);
                Object detail = ((Map<?, ?>) r.scores.get("details")).get(Quality.FEATURE_REASON);
                check("a residual above the threshold flags, as predict words it", !r.ok
                    && r.reasons.get(r.reasons.size() - 1).equals(Quality.FEATURE_REASON)
                    && r.reasons.size() == base.reasons.size() + 1 && want.get("detail").equals(detail),
                    r.reasons + " " + detail + " != " + want.get("detail"));
                check("a residual at or below the threshold changes nothing",
                    base.withFeatureResidual(thr, thr) == base && base.withFeatureResidual(v, null) == base, "changed");
                check("NaN never passes", !base.withFeatureResidual(Double.NaN, thr).reasons.equals(base.reasons),
                    "NaN passed");
            }
        });
        // 4. output decoding (hand values)
        test("age result", new Body() {
            public void run() {
                float[] p = new float[19];
                p[10] = 0.75f; p[11] = 0.25f;
                AgeResult r = new AgeResult(137.6f, p);
                int[] ym = r.yearsMonths();
                check("138 months = 11 y 6 m", ym[0] == 11 && ym[1] == 6, ym[0] + " y " + ym[1] + " m");
                check("argmax", r.argmax() == 10, "argmax " + r.argmax());
                check("expected months", Math.abs(r.expectedMonths() - (0.75 * 126 + 0.25 * 138)) < 1e-9,
                    "expected " + r.expectedMonths());
                check("label", r.label().equals("11 y 6 m (137.6 months)"), r.label());
                check("negative clamps", new AgeResult(-3f, null).yearsMonths()[0] == 0, "negative");
            }
        });
        test("json", new Body() {
            public void run() {
                Object v = MiniJson.parse("{\"a\": [1, 2.5, \"x\\u00e9\\n\"], \"b\": null, \"c\": true}");
                check("json parse", v.toString().equals("{a=[1, 2.5, x\u00e9\n], b=null, c=true}"), String.valueOf(v));
                boolean threw = false;
                try { MiniJson.parse("{\"a\": 1,}"); } catch (IllegalArgumentException e) { threw = true; }
                check("json rejects trailing comma", threw, "no exception");
            }
        });
        finish();
    }
}
