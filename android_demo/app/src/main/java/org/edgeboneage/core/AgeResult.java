package org.edgeboneage.core;

import java.util.Locale;

/** Decoded model outputs: "age" (months) and the optional 19-way "probs" (class k = months [12k, 12k+12)). */
public final class AgeResult {
    public final float ageMonths;
    public final float[] probs;  // may be null

    public AgeResult(float ageMonths, float[] probs) {
        this.ageMonths = ageMonths;
        this.probs = probs;
    }

    /** {whole years, remaining months} of the age rounded to whole months (negative ages clamp to 0). */
    public int[] yearsMonths() {
        int m = (int) Math.max(0, Math.round((double) ageMonths));
        return new int[] {m / 12, m % 12};
    }

    public String label() {
        int[] ym = yearsMonths();
        return String.format(Locale.ROOT, "%d y %d m (%.1f months)", ym[0], ym[1], ageMonths);
    }

    /** Index of the most probable one-year class, or -1 without probs. */
    public int argmax() {
        if (probs == null || probs.length == 0) return -1;
        int best = 0;
        for (int i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
        return best;
    }

    /** Expected age in months from probs with bin centres 12k+6 (what the SoftmaxExpectation head computes). */
    public double expectedMonths() {
        double e = 0;
        for (int i = 0; i < probs.length; i++) e += probs[i] * (12.0 * i + 6.0);
        return e;
    }
}
