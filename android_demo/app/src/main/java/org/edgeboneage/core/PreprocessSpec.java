package org.edgeboneage.core;

import java.util.List;
import java.util.Map;

/** What a model expects as input: the "preprocess" object of the edge_boneage metadata (PreprocessSpec.to_dict()). */
public final class PreprocessSpec {
    public final int inputSize;
    public final String enhance;  // null, "hist" or "clahe"
    public final double claheClip;
    public final int claheTilesX, claheTilesY, padValue;

    public PreprocessSpec(int inputSize, String enhance, double claheClip, int claheTilesX, int claheTilesY, int padValue) {
        if (inputSize <= 0) throw new IllegalArgumentException("input size must be positive, got " + inputSize);
        if ("none".equals(enhance)) enhance = null;
        if (enhance != null && !enhance.equals("hist") && !enhance.equals("clahe")) {
            throw new IllegalArgumentException("unknown enhance '" + enhance + "'");
        }
        this.inputSize = inputSize;
        this.enhance = enhance;
        this.claheClip = claheClip;
        this.claheTilesX = claheTilesX;
        this.claheTilesY = claheTilesY;
        this.padValue = padValue;
    }

    public static PreprocessSpec defaults(int inputSize) {
        return new PreprocessSpec(inputSize, null, 2.0, 8, 8, 0);
    }

    /**
     * From the whole metadata record (may be null: defaults). {@code modelInputSize} is the model's input tensor
     * side (0 = unknown); a mismatch with the metadata is an error, as are other letterbox/resize rules.
     */
    @SuppressWarnings("unchecked")
    public static PreprocessSpec fromMetadata(Map<String, Object> meta, int modelInputSize) {
        Map<String, Object> p = meta == null ? null : (Map<String, Object>) meta.get("preprocess");
        if (p == null) {
            if (modelInputSize <= 0) throw new IllegalArgumentException("no preprocess metadata and no input size");
            return defaults(modelInputSize);
        }
        int size = ((Number) p.get("input_size")).intValue();
        if (modelInputSize > 0 && size != modelInputSize) {
            throw new IllegalArgumentException("metadata says input " + size + " px, the model's input is "
                + modelInputSize + " px");
        }
        Object version = p.get("version");
        if (version != null && ((Number) version).intValue() != 1) {
            throw new IllegalArgumentException("preprocessing spec version " + version + " is not supported");
        }
        Object lb = p.get("letterbox"), rs = p.get("resize");
        if ((lb != null && !"centre-pad-extra-bottom-right".equals(lb)) || (rs != null && !"cv2.INTER_AREA".equals(rs))) {
            throw new IllegalArgumentException("unsupported letterbox/resize rule " + lb + "/" + rs);
        }
        double clip = p.get("clahe_clip") == null ? 2.0 : ((Number) p.get("clahe_clip")).doubleValue();
        int tx = 8, ty = 8;
        if (p.get("clahe_tiles") != null) {
            List<Object> t = (List<Object>) p.get("clahe_tiles");
            tx = ((Number) t.get(0)).intValue();
            ty = ((Number) t.get(1)).intValue();
        }
        int pad = p.get("pad_value") == null ? 0 : ((Number) p.get("pad_value")).intValue();
        return new PreprocessSpec(size, (String) p.get("enhance"), clip, tx, ty, pad);
    }
}
