package org.edgeboneage.core;

import static org.edgeboneage.core.TestKit.*;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * JVM tests of the Java core's frame / hand-crop / source_size rules (contract versions 2 and 3) against fixtures
 * written by the Python side (tests/test_android_demo.py::test_java_hand_crop_matches_python, from
 * PreprocessSpec.apply_with_box, cv2).
 * Usage: {@code java -cp core:tests org.edgeboneage.core.HandCropTest FIXTURE_DIR}. Prints one line per failure
 * and a final "N passed, M failed" line; exit code 1 on any failure.
 */
public final class HandCropTest {
    private static Object json(File dir, String name) throws Exception {
        return MiniJson.parse(new String(read(dir, name), StandardCharsets.UTF_8));
    }

    private static int num(Map<String, Object> c, String k) { return ((Number) c.get(k)).intValue(); }

    private static String pixelDiff(byte[] want, byte[] got) {
        if (got.length != want.length) return "size " + got.length + " != " + want.length;
        int diff = 0, first = -1;
        for (int i = 0; i < want.length; i++) if (want[i] != got[i]) { diff++; if (first < 0) first = i; }
        return diff == 0 ? null : diff + " of " + want.length + " pixels differ (first at " + first + ")";
    }

    /** PreprocessSpec.fromMetadata of a record whose "preprocess" entry is {@code spec}. */
    private static PreprocessSpec specOf(Object spec) {
        Map<String, Object> meta = new LinkedHashMap<String, Object>();
        meta.put("preprocess", spec);
        return PreprocessSpec.fromMetadata(meta, 0);
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        final File dir = new File(args[0]);
        // 1. the whole pipeline with frame / crop: pixels and hand box against PreprocessSpec.apply_with_box
        for (Object o : (List<Object>) json(dir, "hand_cases.json")) {
            final Map<String, Object> c = (Map<String, Object>) o;
            final String name = (String) c.get("name");
            test(name, new Body() {
                public void run() throws Exception {
                    GreyImage src = new GreyImage(num(c, "w"), num(c, "h"), read(dir, name + ".in"));
                    Preprocess.Result r = Preprocess.preprocessWithBox(src, specOf(c.get("spec")));
                    String d = pixelDiff(read(dir, name + ".out"), r.image.data);
                    check("hand " + name + " pixels", d == null, d);
                    Map<String, Object> want = (Map<String, Object>) c.get("box");
                    if (want == null) {
                        check("hand " + name + " box", r.box == null, "expected no box, got " + r.box);
                        return;
                    }
                    String bad = r.box == null ? "no box"
                        : !r.box.keySet().equals(want.keySet()) ? "keys " + r.box.keySet() : null;
                    for (String k : want.keySet()) {
                        if (bad != null) break;
                        Object w = want.get(k), g = r.box.get(k);
                        boolean ok = w instanceof Boolean ? w.equals(g)
                            : Math.abs(((Number) w).doubleValue() - ((Number) g).doubleValue()) <= 1e-6;
                        if (!ok) bad = k + " " + g + " != " + w;
                    }
                    check("hand " + name + " box", bad == null, bad + " (box " + r.box + ")");
                }
            });
        }
        // 2. the OpenCV steps one by one: GaussianBlur 5x5, Otsu's threshold, INTER_AREA with per-axis scales
        for (Object o : (List<Object>) json(dir, "blur_cases.json")) {
            final Map<String, Object> c = (Map<String, Object>) o;
            final String name = (String) c.get("name");
            test(name, new Body() {
                public void run() throws Exception {
                    GreyImage src = new GreyImage(num(c, "w"), num(c, "h"), read(dir, name + ".in"));
                    GreyImage g = Preprocess.gaussianBlur5(src);
                    String d = pixelDiff(read(dir, name + ".out"), g.data);
                    check("blur " + name, d == null, d);
                }
            });
        }
        test("otsu", new Body() {
            public void run() throws Exception {
                int bad = 0, n = 0;
                String first = null;
                for (Object o : (List<Object>) json(dir, "otsu_cases.json")) {
                    Map<String, Object> c = (Map<String, Object>) o;
                    List<Object> h = (List<Object>) c.get("hist");
                    int[] hist = new int[256];
                    for (int i = 0; i < 256; i++) hist[i] = ((Number) h.get(i)).intValue();
                    int got = Preprocess.otsuThreshold(hist, num(c, "n")), want = num(c, "t");
                    n++;
                    if (got != want) { bad++; if (first == null) first = "case " + n + ": " + got + " != " + want; }
                }
                check("otsu thresholds equal cv2.threshold's (" + n + " histograms)", bad == 0,
                    bad + " differ, " + first);
            }
        });
        for (Object o : (List<Object>) json(dir, "resize_cases.json")) {
            final Map<String, Object> c = (Map<String, Object>) o;
            final String name = (String) c.get("name");
            test(name, new Body() {
                public void run() throws Exception {
                    GreyImage src = new GreyImage(num(c, "sw"), num(c, "sh"), read(dir, name + ".in"));
                    GreyImage g = Preprocess.resizeArea(src, num(c, "dw"), num(c, "dh"));
                    String d = pixelDiff(read(dir, name + ".out"), g.data);
                    check("resize " + name, d == null, d);
                }
            });
        }
        // 3. the contract: what the metadata says is read, what this code does not implement is refused
        test("contract", new Body() {
            public void run() throws Exception {
                Map<String, Object> c = (Map<String, Object>) json(dir, "contract.json");
                check("spec keys = PreprocessSpec fields",
                    PreprocessSpec.KEYS.equals(new HashSet<Object>((List<Object>) c.get("keys"))),
                    PreprocessSpec.KEYS + " != " + c.get("keys"));
                check("hand rule", PreprocessSpec.HAND_RULE.equals(c.get("hand_rule")), PreprocessSpec.HAND_RULE);
                for (Object o : (List<Object>) c.get("good")) {
                    Map<String, Object> g = (Map<String, Object>) o;
                    PreprocessSpec s = specOf(g.get("spec"));
                    Map<String, Object> w = (Map<String, Object>) g.get("want");
                    boolean ok = s.frame.equals(w.get("frame"))
                        && (s.crop == null ? w.get("crop") == null : s.crop.equals(w.get("crop")))
                        && s.cropMargin == ((Number) w.get("crop_margin")).doubleValue()
                        && s.inputSize == num(w, "input_size")
                        && s.sourceSize == (w.get("source_size") == null ? 0 : num(w, "source_size"));
                    check("reads " + g.get("spec"), ok, s.frame + "/" + s.crop + "/" + s.cropMargin + "/" + s.inputSize
                        + "/" + s.sourceSize);
                }
                for (Object o : (List<Object>) c.get("bad")) {
                    Map<String, Object> b = (Map<String, Object>) o;
                    String msg = null;
                    try { specOf(b.get("spec")); }
                    catch (IllegalArgumentException e) { msg = e.getMessage(); }
                    check("refuses " + b.get("why"), msg != null && msg.contains((String) b.get("match")),
                        msg == null ? "accepted" : "message '" + msg + "' lacks '" + b.get("match") + "'");
                }
            }
        });
        finish();
    }
}
