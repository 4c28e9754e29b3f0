package org.edgeboneage.core;

/** An 8-bit grey image, row-major, values 0..255 stored in signed bytes (read with {@code & 0xFF}). */
public final class GreyImage {
    public final int width, height;
    public final byte[] data;

    public GreyImage(int width, int height, byte[] data) {
        if (width <= 0 || height <= 0 || data.length != width * height) {
            throw new IllegalArgumentException("GreyImage: " + width + "x" + height + " needs " + (width * height)
                + " bytes, got " + data.length);
        }
        this.width = width;
        this.height = height;
        this.data = data;
    }

    public int get(int x, int y) {
        return data[y * width + x] & 0xFF;
    }
}
