package org.edgeboneage.core;

import java.io.File;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

/** The main-based JVM test runners' shared harness (CoreTest, HandCropTest): checks, failures, the final line. */
final class TestKit {
    private static int passed, failed;
    private static final List<String> failures = new ArrayList<String>();

    private TestKit() {}

    interface Body { void run() throws Exception; }

    static void check(String name, boolean ok, String detail) {
        if (ok) passed++;
        else { failed++; failures.add(name + ": " + detail); }
    }

    static void test(String name, Body body) {
        try { body.run(); }
        catch (Throwable t) { check(name, false, "threw " + t); }
    }

    static byte[] read(File dir, String name) throws Exception {
        return Files.readAllBytes(new File(dir, name).toPath());
    }

    /** Print every failure and "N passed, M failed"; exit 1 on any failure. */
    static void finish() {
        for (String f : failures) System.out.println("FAIL " + f);
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
