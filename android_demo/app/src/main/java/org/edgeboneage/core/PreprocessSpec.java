package org.edgeboneage.core;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What a model expects as input: the "preprocess" object of the edge_boneage metadata (PreprocessSpec.to_dict()).
 * Anything this code does not implement (another spec version, frame, crop or hand-crop rule, an unknown field) is
 * refused with an IllegalArgumentException naming it, never preprocessed differently.
 */
public final class PreprocessSpec {
    public static final String LETTERBOX_RULE = "centre-pad-extra-bottom-right";
    public static final String RESIZE_RULE = "cv2.INTER_AREA";
    /** edge_boneage.handcrop.HAND_RULE: the one hand-localisation rule Preprocess.locateHand implements. */
    public static final String HAND_RULE = "otsu128-open5-refine80-largest-square-v1";
    public static final double DEFAULT_CROP_MARGIN = 0.04;
    /** The spec versions this code reads (version 1 records have no frame / crop: letterbox, no crop; version 3
     * records may carry source_size, docs/PREPROCESSING.md section 2.1). */
    public static final int[] VERSIONS = {1, 2, 3};
    /** The smallest source_size PreprocessSpec accepts. */
    public static final int SOURCE_SIZE_MIN = 16;
    /** The fields of edge_boneage.preprocess.PreprocessSpec; any other key is refused. */
    public static final Set<String> KEYS = new HashSet<String>(Arrays.asList("input_size", "enhance", "clahe_clip",
        "clahe_tiles", "dtype", "channels", "value_range", "pad_value", "letterbox", "resize", "colour", "version",
        "frame", "crop", "crop_margin", "crop_rule", "source_size", "extra"));

    public final int inputSize;
    public final String enhance;  // null, "hist" or "clahe"
    public final double claheClip;
    public final int claheTilesX, claheTilesY, padValue;
    public final String frame;  // "letterbox" or "squeeze"
    public final String crop;  // null or "hand"
    public final double cropMargin;
    /** Version 3: the frame is first resized to sourceSize x sourceSize (INTER_AREA) unless it is that already;
     * 0 = no such step (version 1 and 2 records). */
    public final int sourceSize;

    public PreprocessSpec(int inputSize, String enhance, double claheClip, int claheTilesX, int claheTilesY,
                          int padValue) {
        this(inputSize, enhance, claheClip, claheTilesX, claheTilesY, padValue, "letterbox", null, DEFAULT_CROP_MARGIN);
    }

    public PreprocessSpec(int inputSize, String enhance, double claheClip, int claheTilesX, int claheTilesY,
                          int padValue, String frame, String crop, double cropMargin) {
        this(inputSize, enhance, claheClip, claheTilesX, claheTilesY, padValue, frame, crop, cropMargin, 0);
    }

    public PreprocessSpec(int inputSize, String enhance, double claheClip, int claheTilesX, int claheTilesY,
                          int padValue, String frame, String crop, double cropMargin, int sourceSize) {
        if (sourceSize != 0 && sourceSize < SOURCE_SIZE_MIN) {
            throw new IllegalArgumentException("unsupported preprocessing spec: source_size must be >= "
                + SOURCE_SIZE_MIN + ", got " + sourceSize);
        }
        if (inputSize <= 0) throw new IllegalArgumentException("input size must be positive, got " + inputSize);
        if ("none".equals(enhance)) enhance = null;
        if (enhance != null && !enhance.equals("hist") && !enhance.equals("clahe")) {
            throw new IllegalArgumentException("unknown enhance '" + enhance + "'");
        }
        if (frame == null) frame = "letterbox";
        if (!frame.equals("letterbox") && !frame.equals("squeeze")) {
            throw new IllegalArgumentException("unsupported preprocessing spec: frame rule '" + frame
                + "' (this app implements letterbox, squeeze)");
        }
        if ("none".equals(crop)) crop = null;
        if (crop != null && !crop.equals("hand")) {
            throw new IllegalArgumentException("unsupported preprocessing spec: crop '" + crop
                + "' (this app implements none, hand)");
        }
        if (Double.isNaN(cropMargin) || Double.isInfinite(cropMargin)) {
            throw new IllegalArgumentException("bad crop_margin " + cropMargin);
        }
        this.inputSize = inputSize;
        this.enhance = enhance;
        this.claheClip = claheClip;
        this.claheTilesX = claheTilesX;
        this.claheTilesY = claheTilesY;
        this.padValue = padValue;
        this.frame = frame;
        this.crop = crop;
        this.cropMargin = cropMargin;
        this.sourceSize = sourceSize;
    }

    public static PreprocessSpec defaults(int inputSize) {
        return new PreprocessSpec(inputSize, null, 2.0, 8, 8, 0);
    }

    /**
     * From the whole metadata record (may be null: defaults). {@code modelInputSize} is the model's input tensor
     * side (0 = unknown); a mismatch with the metadata is an error, as are other versions, letterbox/resize rules,
     * frames, crops, hand-crop rules and unknown fields.
     */
    @SuppressWarnings("unchecked")
    public static PreprocessSpec fromMetadata(Map<String, Object> meta, int modelInputSize) {
        Map<String, Object> p = meta == null ? null : (Map<String, Object>) meta.get("preprocess");
        if (p == null) {
            if (modelInputSize <= 0) throw new IllegalArgumentException("no preprocess metadata and no input size");
            return defaults(modelInputSize);
        }
        for (String k : p.keySet()) {
            if (!KEYS.contains(k)) {
                throw new IllegalArgumentException("unsupported preprocessing spec: unknown field '" + k
                    + "' (update the app)");
            }
        }
        int size = ((Number) p.get("input_size")).intValue();
        if (modelInputSize > 0 && size != modelInputSize) {
            throw new IllegalArgumentException("metadata says input " + size + " px, the model's input is "
                + modelInputSize + " px");
        }
        Object source = p.get("source_size");  // null or absent: none
        // absent: version 1 (or 3 with a source_size, as PreprocessSpec's default); null is refused
        Object version = p.containsKey("version") ? p.get("version") : Long.valueOf(source != null ? 3 : 1);
        boolean known = false;
        if (version instanceof Number && ((Number) version).doubleValue() == ((Number) version).intValue()) {
            for (int v : VERSIONS) known |= ((Number) version).intValue() == v;
        }
        if (!known) {
            throw new IllegalArgumentException("unsupported preprocessing spec version " + version
                + " (this app implements versions " + versionList() + "; update the app)");
        }
        int sourceSize = 0;
        if (source != null) {  // as PreprocessSpec.__post_init__
            if (((Number) version).intValue() < 3) {
                throw new IllegalArgumentException("unsupported preprocessing spec: source_size needs spec version 3, "
                    + "got version " + ((Number) version).intValue());
            }
            double sv = source instanceof Number ? ((Number) source).doubleValue() : Double.NaN;
            if (!(source instanceof Number) || sv != Math.rint(sv) || Math.abs(sv) > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("unsupported preprocessing spec: source_size " + source
                    + " is not an integer");
            }
            sourceSize = ((Number) source).intValue();
            if (sourceSize < SOURCE_SIZE_MIN) {
                throw new IllegalArgumentException("unsupported preprocessing spec: source_size must be >= "
                    + SOURCE_SIZE_MIN + ", got " + source);
            }
        }
        Object lb = p.get("letterbox"), rs = p.get("resize");
        if ((lb != null && !LETTERBOX_RULE.equals(lb)) || (rs != null && !RESIZE_RULE.equals(rs))) {
            throw new IllegalArgumentException("unsupported letterbox/resize rule " + lb + "/" + rs);
        }
        Object dtype = p.get("dtype"), channels = p.get("channels");
        List<Object> range = (List<Object>) p.get("value_range");
        if ((dtype != null && !"uint8".equals(dtype)) || (channels != null && ((Number) channels).intValue() != 1)
            || (range != null && !(range.size() == 2 && ((Number) range.get(0)).intValue() == 0
                                   && ((Number) range.get(1)).intValue() == 255))) {
            throw new IllegalArgumentException(
                "unsupported preprocessing spec: the model contract is uint8, 1 channel, values 0..255");
        }
        double clip = p.get("clahe_clip") == null ? 2.0 : ((Number) p.get("clahe_clip")).doubleValue();
        int tx = 8, ty = 8;
        if (p.get("clahe_tiles") != null) {
            List<Object> t = (List<Object>) p.get("clahe_tiles");
            tx = ((Number) t.get(0)).intValue();
            ty = ((Number) t.get(1)).intValue();
        }
        int pad = p.get("pad_value") == null ? 0 : ((Number) p.get("pad_value")).intValue();
        String crop = string(p, "crop");
        if ("none".equals(crop)) crop = null;
        Object rule = p.get("crop_rule");
        if ("hand".equals(crop) && rule != null && !HAND_RULE.equals(rule)) {  // no rule with a hand crop = this one
            throw new IllegalArgumentException("unsupported preprocessing spec: hand-crop rule '" + rule
                + "' (this app implements '" + HAND_RULE + "'; update the app)");
        }
        double margin = p.get("crop_margin") == null ? DEFAULT_CROP_MARGIN
            : ((Number) p.get("crop_margin")).doubleValue();
        // absent: letterbox; null reads as "null" and is refused, as in Python
        String frame = p.containsKey("frame") ? String.valueOf(p.get("frame")) : "letterbox";
        return new PreprocessSpec(size, string(p, "enhance"), clip, tx, ty, pad, frame, crop, margin, sourceSize);
    }

    private static String versionList() {
        StringBuilder b = new StringBuilder();
        for (int v : VERSIONS) b.append(b.length() == 0 ? "" : ", ").append(v);
        return b.toString();
    }

    private static String string(Map<String, Object> p, String key) {
        Object v = p.get(key);
        if (v != null && !(v instanceof String)) {
            throw new IllegalArgumentException("unsupported preprocessing spec: " + key + " " + v + " is not a string");
        }
        return (String) v;
    }
}
