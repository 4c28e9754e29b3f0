"""The input quality gate's ports against edge_boneage.quality.assess: android_demo/web/quality.js (the page's gate, in
headless Chromium through the page's own decoder, android_demo/web/decode.js) and org.edgeboneage.core.Quality (the
Android app's Java core, on the JVM), plus the thresholds both read from android_demo/gen_quality_constants.py's output.

Inputs: benchmarks/quality_gate.py's non-hand suite (noise, constant, tiny, coloured shapes, rendered text, line
drawing, gradients, checkerboards, stripes, chest / skull caricatures, a blob, scikit-image's pictures as grey and
colour PNG and JPEG; with ../shared, hopelessly exposed real films), pictures made here for what that suite lacks
(40 px images, a bright plate filling the frame, a flat low-contrast film, 1-bit / palette / grey+alpha / RGBA PNGs,
colour and grey-as-RGB PNGs over 1024 px) and, with ../shared, real RSNA radiographs (img100 and full resolution, read
in place, never copied).

Required agreement: the same ok flag, the same reasons and the same explanation strings (scores["details"]); every
score equal to Python's (each is rounded as Python rounds it) and the unrounded ac64 and hf equal to Python's to the
last bit; the unrounded colourfulness within COLOUR_REL_TOL. Why so tight: the ports do not approximate numpy and
OpenCV but repeat their operations in their order. ac64 is a ratio of sums of exactly representable products (any
summation order gives the same double); hf is computed in float32 as numpy does it (Math.fround / Java float after
every operation, numpy's pairwise summation order, cv2.blur's exact 3x3 sums times the double 1/9); background_stats
follow numpy's pairwise and per-axis summation orders; the histogram statistics are integers. A float64 shortcut for hf
or a summation in another order moves the last bits (test_the_agreement_has_teeth), so exact equality is a real
check, not a formality. colourfulness ends in hypot(), which glibc, V8 and the JVM need not round alike (1 ulp), hence
1e-12 relative. One difference is expected by construction: a colour JPEG whose shorter side is >= 1024 px, which
Python re-reads with cv2.IMREAD_REDUCED_COLOR_4 (a 1/4-scale decode inside libjpeg that no browser or Android decoder
offers; the ports reduce the full decode with INTER_LINEAR_EXACT, which is exactly what OpenCV does for PNG): there only
the colourfulness (within COLOUR_JPEG_REDUCED_TOL) and its explanation may differ; flag and reasons must still agree.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "android_demo"
sys.path.insert(0, str(DEMO))

import browser  # noqa: E402  (android_demo/browser.py)

COLOUR_REL_TOL = 1e-12  # unrounded colourfulness, relative: hypot() may differ by an ulp between libms
COLOUR_JPEG_REDUCED_TOL = 1.0  # colourfulness units; libjpeg's 1/4-scale decode vs INTER_LINEAR_EXACT (see above)
ALL_REASONS = ("too small", "constant image", "hopeless exposure", "noise-like", "fine-grained texture", "too smooth",
               "few grey levels", "no plain background", "flat like a drawing", "centre darker than surround",
               "colour photo", "no hand found", "hand coverage out of range")
RAW_KEYS = ("ac64", "hf", "colourfulness")


def _gen():
    spec = importlib.util.spec_from_file_location("gen_quality_constants", DEMO / "gen_quality_constants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------------------------
# the thresholds: one place (edge_boneage/quality.py), generated into the ports


def test_generated_constants_are_current_and_the_ports_read_them(monkeypatch):
    from edge_boneage import quality as q

    gen = _gen()
    assert gen.JS_OUT.read_text() == gen.render_js(), "run python android_demo/gen_quality_constants.py"
    assert gen.JAVA_OUT.read_text() == gen.render_java(), "run python android_demo/gen_quality_constants.py"
    # parse both generated files independently of the generator: every threshold is Python's
    js = dict(re.findall(r"^export const (\w+) = (.+);$", gen.JS_OUT.read_text(), re.M))
    java = dict(re.findall(r"public static final (?:int|double|String) (\w+) = (.+);$", gen.JAVA_OUT.read_text(), re.M))
    want = {k: getattr(q, k) for k in gen.NUMBERS}
    want.update(COVERAGE_MIN=q.COVERAGE[0], COVERAGE_MAX=q.COVERAGE[1])
    for k, v in want.items():
        assert float(js[k]) == v and float(java[k]) == v, (k, js.get(k), java.get(k), v)
        assert isinstance(v, float) or re.fullmatch(r"-?\d+", java[k]), (k, java[k])
    assert json.loads(js["GATE_VERSION"]) == json.loads(java["GATE_VERSION"]) == q.GATE_VERSION
    assert set(json.loads(js["COLOUR_MODES"])) == q.COLOUR_MODES
    # the ports take each threshold from there, never a literal of their own
    qjs = (DEMO / "web/quality.js").read_text()
    qjava = (DEMO / "app/src/main/java/org/edgeboneage/core/Quality.java").read_text()
    for k in want:
        assert f"C.{k}" in qjs or f"T.{k}" in qjs, f"quality.js does not use {k}"
        assert f"QualityConstants.{k}" in qjava or f"QualityConstants.TEXT_{k}" in qjava, f"Quality.java: {k}"
    # and the check has teeth: a changed threshold makes both generated files stale
    monkeypatch.setattr(q, "MIN_AC64", 0.25)
    assert gen.render_js() != gen.JS_OUT.read_text() and gen.render_java() != gen.JAVA_OUT.read_text()
    proc = subprocess.run([sys.executable, str(DEMO / "gen_quality_constants.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------------------------
# the suite and Python's answers


def _save(path: Path, arr, mode=None) -> Path:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(arr)) if mode is None else Image.fromarray(np.ascontiguousarray(arr),
                                                                                         mode)
    im.save(path)
    return path


def _extra_items(d: Path, rsna: Path | None) -> list[tuple[str, str, Path]]:
    """Pictures for what benchmarks/quality_gate.py's suite does not reach: a 40 px image, the 'no contrast' and
    'hand coverage' reasons, PNG modes 1 / P / LA / RGBA, colour files over 1024 px (the reduced colour read)."""
    import cv2
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    out = []
    small = cv2.GaussianBlur(rng.integers(0, 256, (40, 37)).astype(np.uint8), (0, 0), 2)
    out.append(("small", "smooth 40x37", _save(d / "small_40x37.png", small)))
    out.append(("small", "noise 40x40", _save(d / "noise_40.png", rng.integers(0, 256, (40, 40), dtype=np.uint8))))
    plate = np.full((256, 256), 200, np.uint8)
    plate[:12, :12] = 10
    out.append(("frame-filling", "bright plate filling the frame", _save(d / "plate.png", plate)))
    if rsna is not None:
        film = cv2.imread(str(sorted((rsna / "img100").glob("*.png"))[0]), cv2.IMREAD_GRAYSCALE)
    else:
        y, x = np.mgrid[0:200, 0:160]
        film = np.clip(40 + 150 * np.exp(-(((x - 80) / 40) ** 2 + ((y - 100) / 60) ** 2)), 0, 255).astype(np.uint8)
    flat = (100 + film // 26).astype(np.uint8)
    out.append(("bad exposure", "flat film 100 + v / 26", _save(d / "flat_film.png", flat)))
    text = np.full((120, 300), 255, np.uint8)
    cv2.putText(text, "bone age", (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, 0, 4)
    out.append(("modes", "text as 1-bit PNG", _save(d / "text_1bit.png", text > 127, "1")))
    shapes = np.full((300, 260, 3), 255, np.uint8)
    for k in range(8):
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(shapes, (int(rng.integers(30, 230)), int(rng.integers(30, 270))), int(rng.integers(15, 60)), col, -1)
    Image.fromarray(shapes).quantize(32).save(d / "shapes_palette.png")
    out.append(("modes", "coloured shapes, palette PNG", d / "shapes_palette.png"))
    Image.fromarray(film).convert("P").save(d / "film_grey_palette.png")
    out.append(("modes", "film, grey palette PNG", d / "film_grey_palette.png"))
    la = np.dstack([film, np.full(film.shape, 255, np.uint8)])
    out.append(("modes", "film, grey + alpha PNG", _save(d / "film_la.png", la, "LA")))
    rgba = np.dstack([shapes, np.full(shapes.shape[:2], 255, np.uint8)])
    out.append(("modes", "coloured shapes, opaque RGBA PNG", _save(d / "shapes_rgba.png", rgba, "RGBA")))
    big = cv2.resize(shapes, (1030, 1100), interpolation=cv2.INTER_NEAREST)
    big = np.clip(big.astype(np.int16) + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8)
    out.append(("large colour", "coloured shapes 1030x1100 RGB PNG", _save(d / "big_shapes.png", big)))
    bigfilm = cv2.resize(film, (1100, 1040), interpolation=cv2.INTER_LINEAR)
    out.append(("large colour", "film 1100x1040 saved as RGB PNG", _save(d / "big_film_rgb.png",
                                                                          np.dstack([bigfilm] * 3))))
    return out


@pytest.fixture(scope="module")
def suite(tmp_path_factory, rsna_dir_or_none):
    """[{name, group, path, url, want: Python's result, raw, mode, shape}] for every input."""
    import cv2

    from benchmarks.quality_gate import make_nonhand_suite
    from edge_boneage import quality
    from edge_boneage.io import read_image

    rsna = rsna_dir_or_none
    d = tmp_path_factory.mktemp("quality_suite")
    samples = [types.SimpleNamespace(id=p.stem, path=p) for p in sorted((rsna / "img100").glob("*.png"))[:2]] \
        if rsna is not None else []
    items = [(f"non-hand: {s}", n, p) for s, n, p in make_nonhand_suite(d / "nonhand", samples)]
    items += [(f"made here: {s}", n, p) for s, n, p in _extra_items(d / "extra", rsna)]
    if rsna is not None:  # real radiographs, read from ../shared in place
        items += [("real: RSNA img100", p.stem, p) for p in sorted((rsna / "img100").glob("*.png"))[:24]]
        items += [("real: RSNA full resolution", p.stem, p) for p in sorted((rsna / "fullres").glob("*.png"))[:6]]
    cases = []
    for group, name, path in items:
        img, meta = read_image(path)
        r = quality.assess(img, meta)
        raw = {"ac64": quality.lag1_autocorrelation(cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)),
               "hf": quality.fine_detail(cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)),
               "colourfulness": quality.source_colourfulness(meta)[0]}
        url = f"/rsna/{path.parent.name}/{path.name}" if group.startswith("real") else f"/s/{path.relative_to(d)}"
        reduced_jpeg = (meta.format == "JPEG" and meta.photometric.upper() in quality.COLOUR_MODES
                        and min(img.shape) >= 1024)
        cases.append({"name": name, "group": group, "path": path, "url": url, "want": r.to_dict(), "raw": raw,
                      "mode": meta.photometric, "shape": img.shape, "img": img, "reduced_jpeg": reduced_jpeg,
                      "colour": meta.photometric.upper() in quality.COLOUR_MODES})
    return {"cases": cases, "dir": d, "rsna": rsna}


def test_suite_reaches_every_reason(suite):
    """Every reason (and every wording of the two that have several) occurs, so every string is compared."""
    got = {x.split(" (")[0] for c in suite["cases"] for x in c["want"]["reasons"]}
    assert got >= set(ALL_REASONS), set(ALL_REASONS) - got
    words = {v.split(":")[0] for c in suite["cases"] for v in c["want"]["scores"]["details"].values()}
    assert {"under-exposed", "over-exposed", "no contrast", "a gradient or flat drawing", "a smooth blob"} <= words
    real = [c for c in suite["cases"] if c["group"].startswith("real")]
    if suite["rsna"] is not None:
        assert len(real) == 30 and sum(c["want"]["ok"] for c in real) >= 28  # the gate accepts real films


# ------------------------------------------------------------------------------------------------------------
# comparing a port's answer with Python's


def _compare(c, got, stats) -> list[str]:
    """What differs between a port's result `got` and Python's for case `c` (empty list: agreement); updates `stats`
    {key: max |difference|}."""
    want, problems = c["want"], []
    if got["ok"] != want["ok"] or got["reasons"] != want["reasons"]:
        problems.append(f"flag: {want['reasons']} != {got['reasons']}")
    if got.get("mode") != c["mode"]:
        problems.append(f"mode: header {got.get('mode')} != read_image {c['mode']}")
    ws, gs = dict(want["scores"]), dict(got["scores"])
    wd, gd = ws.pop("details"), gs.pop("details")
    if c["reduced_jpeg"]:
        wd, gd = ({k: v for k, v in x.items() if k != "colour photo"} for x in (wd, gd))
    if wd != gd:
        problems.append(f"details: {wd} != {gd}")
    if set(ws) != set(gs):
        problems.append(f"score keys: {sorted(set(ws) ^ set(gs))}")
    for k, v in ws.items():
        g = gs.get(k)
        if k == "colourfulness" and c["reduced_jpeg"]:  # OpenCV's 1/4-scale libjpeg decode (module docstring)
            stats["colourfulness (reduced JPEG)"] = max(stats.get("colourfulness (reduced JPEG)", 0.0), abs(v - g))
            if abs(v - g) > COLOUR_JPEG_REDUCED_TOL:
                problems.append(f"colourfulness (reduced JPEG): {v} vs {g}")
        elif v is None or isinstance(v, (bool, str)) or g is None or isinstance(g, (bool, str)):
            if v != g or type(v) is not type(g):
                problems.append(f"{k}: {v!r} != {g!r}")
        else:
            stats[k] = max(stats.get(k, 0.0), abs(float(v) - float(g)))
            if float(v) != float(g):
                problems.append(f"{k}: {v!r} != {g!r}")
    for k in RAW_KEYS:
        v, g = c["raw"][k], got["raw"][k]
        if v is None or g is None:
            if v != g:
                problems.append(f"raw {k}: {v} != {g}")
        elif k != "colourfulness":  # bit for bit
            stats[f"raw {k}"] = max(stats.get(f"raw {k}", 0.0), abs(v - g))
            if v != g:
                problems.append(f"raw {k}: {v!r} != {g!r} (must be equal to the last bit)")
        elif not c["reduced_jpeg"]:
            rel = abs(v - g) / max(abs(v), 1.0)
            stats["raw colourfulness"] = max(stats.get("raw colourfulness", 0.0), rel)
            if rel > COLOUR_REL_TOL:
                problems.append(f"raw colourfulness: {v!r} != {g!r}")
    line = None if want["ok"] else (f"WARNING: not accepted as a hand radiograph: {', '.join(want['reasons'])} "
                                    f"(age shown for reference only)")  # edge_boneage.predict's quality_warning
    if got.get("warning") != line:
        problems.append(f"warning line: {got.get('warning')!r} != {line!r}")
    return problems


def _report(capsys, title, suite, results, stats, ms):
    """The agreement table (benchmarks.record puts it into BENCHMARKS.md)."""
    groups: dict[str, list] = {}
    for c in suite["cases"]:
        groups.setdefault(c["group"], []).append(c)
    with capsys.disabled():
        print(f"\n{title}: {len(suite['cases'])} inputs, flag + reasons + explanations + every score compared with "
              f"edge_boneage.quality.assess")
        print(f"{'group':<34} {'inputs':>6} {'flagged by Python':>17} {'flagged by port':>15} {'identical':>9}")
        for g, cs in groups.items():
            same = sum(not results[c["url"]][0] for c in cs)
            pf, jf = sum(not c["want"]["ok"] for c in cs), sum(not results[c["url"]][1] for c in cs)
            print(f"{g:<34} {len(cs):>6} {pf:>17} {jf:>15} {same:>9}")
        print("max |port - Python| per score, as rounded by Python: " + ", ".join(
            f"{k} {v:.3g}" for k, v in stats.items() if not k.startswith("raw") and "reduced" not in k))
        print("max |port - Python| unrounded: " + ", ".join(
            f"{k[4:]} {v:.3g}{' (relative)' if k.endswith('colourfulness') else ''}" for k, v in stats.items()
            if k.startswith("raw")))
        jp = [c["name"] for c in suite["cases"] if c["reduced_jpeg"]]
        if jp:
            print(f"colour JPEGs >= 1024 px (OpenCV's 1/4-scale libjpeg decode, expected to differ): {', '.join(jp)}; "
                  f"colourfulness differs by {stats.get('colourfulness (reduced JPEG)', 0):.3g} (tolerance "
                  f"{COLOUR_JPEG_REDUCED_TOL:g}), flag and reasons agree")
        print(f"slowest input: {max(ms):.0f} ms, median {sorted(ms)[len(ms) // 2]:.0f} ms per gate run")


FORMATS = [(0.125, 2), (0.375, 2), (2.675, 2), (-0.0004, 3), (12.25, 1), (0.5, 0), (1.5, 0), (2.5, 0), (-2.5, 0),
           (1e-7, 4), (-1e-7, 4), (91.175, 2), (0.12345, 4), (5e-05, 4), (0.00015, 4), (0.03125, 4), (0.09375, 4),
           (-0.03125, 4), (99.95, 1), (14.000000000000002, 0), (0.9999999999, 3), (-0.0, 2), (1234.5678, 2)]


def _format_cases():
    rng = np.random.default_rng(2)
    cases = list(FORMATS)
    for k in range(300):
        n = int(rng.integers(0, 5))
        if k % 2:  # an exact tie at n decimals, or an exactly representable neighbour of one
            x = float(rng.integers(-4000, 4000)) / 2 ** (n + 1)
        else:
            x = float(rng.normal(0, 10.0 ** int(rng.integers(-3, 3))))
        cases.append((x, n))
    return [(x, n, round(x, n), f"{x:.{n}f}") for x, n in cases]


# ------------------------------------------------------------------------------------------------------------
# the page's gate (quality.js) in headless Chromium


GATE_HTML = """<!doctype html><meta charset="utf-8"><title>loading</title><script type="module">
import * as Q from "/quality.js";
import { decodeBlob } from "/decode.js";
window.Q = Q;
window.t = {
  async gate(url) {  // the page's decode (decode.js, as app.js uses it) and the gate
    const { grey, source } = await decodeBlob(await (await fetch(url)).blob());
    const t0 = performance.now();
    const r = Q.assess(grey, source, null);
    return { ...r, ms: performance.now() - t0, warning: Q.warning(r), mode: source.mode, format: source.format };
  },
  formats(cases) { return cases.map(([x, n]) => [Q.pyRound(x, n), Q.pyFixed(x, n)]); },
};
document.title = "READY";
</script>
"""


@pytest.fixture(scope="module")
def gate_page(tmp_path_factory, suite):
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("gate_page")
    (d / "gate.html").write_text(GATE_HTML)
    mounts = {"/": browser.WEB_DIR, "/t/": d, "/s/": suite["dir"]}
    if suite["rsna"] is not None:
        mounts["/rsna/"] = suite["rsna"]
    with browser.serve(mounts) as base, browser.Chromium() as ch:
        ch.navigate(base + "/t/gate.html")
        ch.wait_title()
        yield ch


def test_page_gate_matches_python(gate_page, suite, capsys):
    """quality.js on the page's own decode of every input: flag, reasons, explanations and scores equal Python's."""
    results, stats, ms, bad = {}, {}, [], []
    for c in suite["cases"]:
        got = gate_page.evaluate(f"t.gate({json.dumps(c['url'])})", timeout=120)
        problems = _compare(c, got, stats)
        results[c["url"]] = (problems, got["ok"])
        ms.append(got["ms"])
        if problems:
            bad.append(f"{c['group']} / {c['name']}: {'; '.join(problems)}")
    assert not bad, f"{len(bad)} of {len(suite['cases'])} inputs differ:\n" + "\n".join(bad[:20])
    fmt = _format_cases()
    got = gate_page.evaluate(f"t.formats({json.dumps([[x, n] for x, n, _, _ in fmt])})")
    wrong = [(x, n, r, s, g) for (x, n, r, s), g in zip(fmt, got) if g[0] != r or g[1] != s]
    assert not wrong, f"Python's round / format differ in quality.js: {wrong[:10]}"
    _report(capsys, "quality.js (headless Chromium) vs Python", suite, results, stats, ms)


# ------------------------------------------------------------------------------------------------------------
# the app's gate (org.edgeboneage.core.Quality) on the JVM


def _compile_java(out: Path) -> Path:
    """javac (Java 8 level, as on Android) of the core and its JVM tests; returns the classes folder."""
    src = DEMO / "app/src"
    core = sorted((src / "main/java/org/edgeboneage/core").glob("*.java"))
    tests = sorted((src / "test/java/org/edgeboneage/core").glob("*.java"))
    for args in (["-d", str(out / "core"), *map(str, core)],
                 ["-cp", str(out / "core"), "-d", str(out / "test"), *map(str, tests)]):
        proc = subprocess.run(["javac", "-nowarn", "-Xlint:-options", "-source", "8", "-target", "8", "-encoding",
                               "UTF-8", *args], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_java_gate_matches_python(tmp_path, suite, capsys):
    """org.edgeboneage.core.Quality on every input (grey pixels and, for a colour file, cv2.imread's colour pixels,
    from Python; the mode from the file's header): flag, reasons, explanations and scores equal Python's."""
    import cv2

    missing = [t for t in ("javac", "java") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install default-jdk-headless)")
    fx = tmp_path / "fixtures"
    fx.mkdir()
    cases = []
    for i, c in enumerate(suite["cases"]):
        name = f"q{i}"
        (fx / f"{name}.grey").write_bytes(np.ascontiguousarray(c["img"]).tobytes())
        if c["colour"]:  # the full-resolution colour decode, as RGB (OpenCV gives BGR)
            bgr = cv2.imread(str(c["path"]), cv2.IMREAD_COLOR)
            (fx / f"{name}.rgb").write_bytes(np.ascontiguousarray(bgr[..., ::-1]).tobytes())
        cases.append({"name": name, "w": c["shape"][1], "h": c["shape"][0], "file": str(c["path"]), "mode": c["mode"],
                      "colour": c["colour"]})
    fmt = _format_cases()
    (fx / "quality_cases.json").write_text(json.dumps({"cases": cases, "formats": [list(f) for f in fmt]}))
    out = _compile_java(tmp_path / "classes")
    cmd = ["java", "-Djava.awt.headless=true", "-cp", f"{out / 'core'}:{out / 'test'}",
           "org.edgeboneage.core.QualityTest", str(fx)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    assert proc.returncode == 0 and m and m.group(2) == "0", proc.stdout[-3000:] + proc.stderr[-2000:]
    assert int(m.group(1)) == len(cases) + 2 * len(fmt), last  # one mode check per case, round + format per number
    java = json.loads((fx / "java_results.json").read_text())
    results, stats, ms, bad = {}, {}, [], []
    for i, c in enumerate(suite["cases"]):
        got = {**java[f"q{i}"], "mode": c["mode"]}  # the mode was checked on the JVM
        problems = _compare(c, got, stats)
        w = c["want"]  # the app's result text (Quality.Result.markAge / summary, android_demo/gradle's MainActivity)
        label = "11 y 6 m (137.6 months)"
        marked = label if w["ok"] else f"\u26a0 {label} \u2014 not accepted as a hand radiograph"
        summary = (f"input check ({w['scores']['gate']}): accepted as a hand radiograph" if w["ok"] else
                   got["warning"] + "".join(f"\n- {r}: {w['scores']['details'][r]}" for r in w["reasons"]))
        if got["marked_age"] != marked or (got["summary"] != summary and not c["reduced_jpeg"]):
            problems.append(f"result text: {got['marked_age']!r} / {got['summary']!r}")
        results[c["url"]] = (problems, got["ok"])
        ms.append(got["ms"])
        if problems:
            bad.append(f"{c['group']} / {c['name']}: {'; '.join(problems)}")
    assert not bad, f"{len(bad)} of {len(suite['cases'])} inputs differ:\n" + "\n".join(bad[:20])
    _report(capsys, f"org.edgeboneage.core.Quality (JVM, {last}) vs Python", suite, results, stats, ms)
    # the runner can fail: a wrong mode in the fixtures is caught
    bad_fx = json.loads((fx / "quality_cases.json").read_text())
    bad_fx["cases"][0]["mode"] = "CMYK"
    (fx / "quality_cases.json").write_text(json.dumps(bad_fx))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "FAIL mode q0" in proc.stdout


# ------------------------------------------------------------------------------------------------------------
# the exactness is not a formality


def test_the_agreement_has_teeth(suite):
    """Shortcuts a port could plausibly take change what the comparisons above look at: hf in float64 instead of
    float32, colourfulness on RGB instead of cv2's BGR, INTER_LINEAR instead of INTER_AREA for the 64 px image, the
    file's full-resolution colour instead of OpenCV's reduced read."""
    import cv2

    from edge_boneage import quality

    f64 = rgb = lin = reduced = 0
    for c in suite["cases"]:
        img = c["img"]
        g128 = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float64)
        s = g128.std()
        if s > 1e-6:
            hf64 = np.abs(g128 - cv2.blur(g128, (3, 3), borderType=cv2.BORDER_REFLECT)).mean() / s
            f64 += hf64 != c["raw"]["hf"]
        g64 = cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR)
        lin += quality.lag1_autocorrelation(g64) != c["raw"]["ac64"]
        if c["colour"] and c["raw"]["colourfulness"]:
            bgr = cv2.imread(str(c["path"]), cv2.IMREAD_COLOR)
            rgb += abs(quality.colourfulness(bgr[..., ::-1]) - quality.colourfulness(bgr)) > 1e-9
            if min(img.shape) >= 1024:
                reduced += abs(quality.colourfulness(bgr) - c["raw"]["colourfulness"]) > 1e-9
    n = len(suite["cases"])
    assert f64 > n // 2, f"hf in float64 equals the float32 hf on {n - f64} of {n} inputs: exactness is no check"
    assert lin > n // 2 and rgb >= 3 and reduced >= 1, (lin, rgb, reduced)
