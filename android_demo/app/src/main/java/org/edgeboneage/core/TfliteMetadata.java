package org.edgeboneage.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reads the metadata entries of a .tflite flatbuffer without any flatbuffers library:
 * Model (root) -> metadata[i] {0 name, 1 buffer} -> buffers[buffer] {0 data, 1 offset, 2 size}.
 * Model fields: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers, 5 metadata_buffer, 6 metadata.
 */
public final class TfliteMetadata {
    public static final String NAME = "edge_boneage";
    private final ByteBuffer b;

    private TfliteMetadata(byte[] model) {
        this.b = ByteBuffer.wrap(model).order(ByteOrder.LITTLE_ENDIAN);
    }

    private int check(int pos, int n) {
        if (pos < 0 || n < 0 || (long) pos + n > b.capacity()) {
            throw new IllegalArgumentException("corrupt flatbuffer: read of " + n + " bytes at " + pos);
        }
        return pos;
    }

    private int field(int table, int i) {
        int vt = table - b.getInt(check(table, 4));
        int vtSize = b.getShort(check(vt, 2)) & 0xFFFF;
        int o = 4 + 2 * i;
        if (o >= vtSize) return 0;
        int off = b.getShort(check(vt + o, 2)) & 0xFFFF;
        return off == 0 ? 0 : table + off;
    }

    private int deref(int p) {
        return p + b.getInt(check(p, 4));
    }

    /** {start, length} of a vector field or null. */
    private int[] vector(int table, int i) {
        int p = field(table, i);
        if (p == 0) return null;
        int v = deref(p);
        return new int[] {v + 4, b.getInt(check(v, 4))};
    }

    /** All metadata entries as name -> bytes. */
    public static Map<String, byte[]> list(byte[] model) {
        if (model.length < 8 || model[4] != 'T' || model[5] != 'F' || model[6] != 'L' || model[7] != '3') {
            throw new IllegalArgumentException("not a TFLite/LiteRT model (missing 'TFL3' identifier)");
        }
        TfliteMetadata r = new TfliteMetadata(model);
        Map<String, byte[]> out = new LinkedHashMap<String, byte[]>();
        int root = r.deref(0);
        int[] md = r.vector(root, 6);
        if (md == null) return out;
        int[] bufs = r.vector(root, 4);
        for (int k = 0; k < md[1]; k++) {
            int m = r.deref(md[0] + 4 * k);
            int[] nameVec = r.vector(m, 0);
            String name = "";
            if (nameVec != null) name = new String(model, r.check(nameVec[0], nameVec[1]), nameVec[1], StandardCharsets.UTF_8);
            int bp = r.field(m, 1);
            int bi = bp == 0 ? 0 : r.b.getInt(r.check(bp, 4));
            if (bufs == null || bi < 0 || bi >= bufs[1]) {
                throw new IllegalArgumentException("corrupt flatbuffer: metadata '" + name + "' -> buffer " + bi);
            }
            int buf = r.deref(bufs[0] + 4 * bi);
            int[] data = r.vector(buf, 0);
            byte[] payload = new byte[0];
            if (data != null && data[1] > 0) {
                payload = java.util.Arrays.copyOfRange(model, r.check(data[0], data[1]), data[0] + data[1]);
            } else {
                int op = r.field(buf, 1), sp = r.field(buf, 2);
                long off = op == 0 ? 0 : r.b.getLong(r.check(op, 8)), size = sp == 0 ? 0 : r.b.getLong(r.check(sp, 8));
                if (off > 0 && size > 0) {
                    if (off + size > model.length) throw new IllegalArgumentException("corrupt flatbuffer: buffer outside file");
                    payload = java.util.Arrays.copyOfRange(model, (int) off, (int) (off + size));
                }
            }
            out.put(name, payload);
        }
        return out;
    }

    /** The edge_boneage JSON record as a parsed map, or null when the model has none. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> read(byte[] model) {
        byte[] raw = list(model).get(NAME);
        if (raw == null) return null;
        Object v = MiniJson.parse(new String(raw, StandardCharsets.UTF_8));
        if (!(v instanceof Map)) throw new IllegalArgumentException("metadata '" + NAME + "' is not a JSON object");
        return (Map<String, Object>) v;
    }
}
