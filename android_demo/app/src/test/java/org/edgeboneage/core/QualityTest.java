package org.edgeboneage.core;

import static org.edgeboneage.core.TestKit.*;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * JVM run of the Java quality gate (org.edgeboneage.core.Quality) on fixtures written by the Python side
 * (tests/test_quality_ports.py): every case's grey pixels (edge_boneage.io.read_image), its file (for the Pillow mode
 * read from the header) and, for a colour file, the colour pixels cv2.imread decodes. Writes each result to
 * FIXTURE_DIR/java_results.json for Python to compare with edge_boneage.quality.assess, and checks here what needs no
 * comparison: the mode against read_image's, Python's round / format on the fixture's numbers.
 * Usage: {@code java -cp core:tests org.edgeboneage.core.QualityTest FIXTURE_DIR}; prints failures and
 * "N passed, M failed"; exit code 1 on any failure.
 */
public final class QualityTest {
    private static String str(Object v) {
        if (v == null) return "null";
        if (v instanceof String) {
            StringBuilder b = new StringBuilder("\"");
            for (char c : ((String) v).toCharArray()) {
                if (c == '"' || c == '\\') b.append('\\').append(c);
                else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                else b.append(c);
            }
            return b.append('"').toString();
        }
        if (v instanceof Double) {
            double d = (Double) v;
            return Double.isNaN(d) || Double.isInfinite(d) ? "null" : Double.toString(d);  // round-trips exactly
        }
        if (v instanceof Number || v instanceof Boolean) return String.valueOf(v);
        StringBuilder b = new StringBuilder();
        if (v instanceof Map) {
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                b.append(first ? "" : ", ").append(str(String.valueOf(e.getKey()))).append(": ");
                b.append(str(e.getValue()));
                first = false;
            }
            return b.append('}').toString();
        }
        if (v instanceof List) {
            b.append('[');
            boolean first = true;
            for (Object o : (List<?>) v) { b.append(first ? "" : ", ").append(str(o)); first = false; }
            return b.append(']').toString();
        }
        throw new IllegalArgumentException("cannot write " + v.getClass());
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        final File dir = new File(args[0]);
        Map<String, Object> fx = (Map<String, Object>) MiniJson.parse(
            new String(read(dir, "quality_cases.json"), StandardCharsets.UTF_8));
        final Map<String, Object> results = new LinkedHashMap<String, Object>();
        for (Object o : (List<Object>) fx.get("cases")) {
            final Map<String, Object> c = (Map<String, Object>) o;
            final String name = (String) c.get("name");
            test(name, new Body() {
                public void run() throws Exception {
                    int w = ((Number) c.get("w")).intValue(), h = ((Number) c.get("h")).intValue();
                    GreyImage grey = new GreyImage(w, h, read(dir, name + ".grey"));
                    String[] fm = Quality.sourceMode(Files.readAllBytes(new File((String) c.get("file")).toPath()));
                    check("mode " + name, String.valueOf(c.get("mode")).equals(String.valueOf(fm[1])),
                        "header says " + fm[1] + ", read_image " + c.get("mode"));
                    int[] argb = null;
                    if (Boolean.TRUE.equals(c.get("colour"))) {
                        byte[] rgb = read(dir, name + ".rgb");
                        argb = new int[w * h];
                        for (int i = 0; i < w * h; i++) {
                            argb[i] = 0xFF000000 | (rgb[3 * i] & 0xFF) << 16 | (rgb[3 * i + 1] & 0xFF) << 8
                                | (rgb[3 * i + 2] & 0xFF);
                        }
                    }
                    long t0 = System.nanoTime();
                    Quality.Result r = Quality.assess(grey, new Quality.Source(fm[0], fm[1], argb, w, h), null);
                    Map<String, Object> out = new LinkedHashMap<String, Object>();
                    out.put("ok", r.ok);
                    out.put("reasons", r.reasons);
                    out.put("scores", r.scores);
                    Map<String, Object> raw = new LinkedHashMap<String, Object>();
                    raw.put("ac64", r.ac64);
                    raw.put("hf", r.hf);
                    raw.put("colourfulness", r.colourfulness);
                    out.put("raw", raw);
                    out.put("warning", r.warning());
                    out.put("marked_age", r.markAge("11 y 6 m (137.6 months)"));
                    out.put("summary", r.summary());
                    out.put("ms", (System.nanoTime() - t0) / 1e6);
                    results.put(name, out);
                }
            });
        }
        // Python's round(x, n) and f"{x:.nf}" on the fixture's numbers (ties, negatives that round to zero, ...)
        for (Object o : (List<Object>) fx.get("formats")) {
            List<Object> f = (List<Object>) o;
            double x = ((Number) f.get(0)).doubleValue();
            int n = ((Number) f.get(1)).intValue();
            double want = ((Number) f.get(2)).doubleValue();
            double got = Quality.pyRound(x, n);
            check("round(" + x + ", " + n + ")", Double.doubleToLongBits(got) == Double.doubleToLongBits(want)
                || (got == 0 && want == 0), got + " != " + want);
            String fixed = Quality.pyFixed(x, n);
            check("format(" + x + ", ." + n + "f)", fixed.equals(f.get(3)), fixed + " != " + f.get(3));
        }
        Files.write(new File(dir, "java_results.json").toPath(), str(results).getBytes(StandardCharsets.UTF_8));
        finish();
    }
}
