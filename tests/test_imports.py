"""The package dependency picture holds: imports go one way between layers and no module imports itself through a
cycle. Every import counts, including the lazy ones inside functions (read from the source with ast).

Layers, lowest first (a module may import its own layer and the layers below it):

  keras_models            layers and networks (keras.ops only)
  edge_boneage (core)     io, preprocess, hand crop, orientation, datasets, synth, TW3 tables, runtime, predict,
                          training, calibration, quality gate, model files
  convert                 edge_boneage.convert (the convert/ folder): LiteRT / ONNX export, quantisation recipes, the budgeted search
  edge_boneage (app)      cli, commands, bench (the benchmark harness), demo, tw3_pipeline (the TW3 RUS package)
  benchmarks              scripts that measure and write BENCHMARKS.md
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the module prefix it installs as (convert/ installs as edge_boneage.convert; benchmarks/ is not
#: installed: its scripts run from a checkout)
PACKAGES = {"keras_models": "keras_models", "edge_boneage": "edge_boneage", "convert": "edge_boneage.convert",
            "benchmarks": "benchmarks"}
APP = ("edge_boneage.cli", "edge_boneage.commands", "edge_boneage.bench", "edge_boneage.demo",
       "edge_boneage.tw3_pipeline")
LAYERS = ("keras_models", "edge_boneage", "convert", "app", "benchmarks")


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for pkg, prefix in PACKAGES.items():
        for p in (root / pkg).rglob("*.py"):
            name = ".".join((prefix, *p.relative_to(root / pkg).with_suffix("").parts))
            out[name[:-9] if name.endswith(".__init__") else name] = p
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)

    def resolve(name):
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                r = resolve(t)
                if r and r != m:
                    graph[m].add(r)
    return graph


def _within(module: str, packages) -> bool:
    """`module` is one of `packages` or inside one (dotted: edge_boneage.cli does not own edge_boneage.client)."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer(module: str) -> str:
    if _within(module, APP):
        return "app"
    if _within(module, ("edge_boneage.convert",)):
        return "convert"
    return module.split(".")[0]


def test_imports_go_down_the_layers_only():
    bad = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, ts in import_graph().items() for t in ts
           if LAYERS.index(layer(t)) > LAYERS.index(layer(m))]
    assert not bad, "\n".join(sorted(bad))


def test_packages_are_classified_with_all_their_modules():
    mods = modules()
    tw3 = sorted(m for m in mods if _within(m, ("edge_boneage.tw3_pipeline",)))
    assert {"edge_boneage.tw3_pipeline", "edge_boneage.tw3_pipeline.boxes", "edge_boneage.tw3_pipeline.export",
            "edge_boneage.tw3_pipeline.training"} <= set(tw3), tw3
    assert {layer(m) for m in tw3} == {"app"}
    assert layer("edge_boneage.tw3") == "edge_boneage"  # the TW3 tables and curves stay core
    assert layer("edge_boneage.commands.tw3") == "app" and layer("edge_boneage.convert.export") == "convert"
    assert layer("edge_boneage.client") == layer("edge_boneage.convertible") == "edge_boneage"  # no bare-prefix match


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    assert not find_cycles(import_graph())


def test_inference_never_imports_the_training_module():
    graph = import_graph()
    seen, todo = set(), ["edge_boneage.predict", "edge_boneage.runtime", "edge_boneage.orientation",
                         "edge_boneage.device_runner", "edge_boneage.quality"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += graph.get(m, ())
    assert "edge_boneage.train" not in seen and not any(layer(s) == "convert" for s in seen), sorted(seen)


def test_the_checker_sees_a_planted_lazy_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "edge_boneage"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from edge_boneage.b import g  # lazy, inside a function\n")
    (pkg / "b.py").write_text("import edge_boneage.a\n\ndef g():\n    import edge_boneage.convert.x\n")
    (tmp_path / "convert").mkdir()
    (tmp_path / "convert" / "x.py").write_text("")
    graph = import_graph(tmp_path)
    assert find_cycles(graph) == [["edge_boneage.a", "edge_boneage.b"]]
    assert "edge_boneage.convert.x" in graph["edge_boneage.b"]
    assert LAYERS.index(layer("edge_boneage.convert.x")) > LAYERS.index("edge_boneage")


def _top_level_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_nothing_imports_the_folders_by_their_repository_names():
    """convert/ is only reachable as edge_boneage.convert (a bare `import convert` works only from a checkout's root
    and would load the code twice); installed code never imports the uninstalled benchmarks/ scripts."""
    srcs = [p for d in ("edge_boneage", "keras_models", "convert", "benchmarks", "tests", "android_demo", "scripts")
            for p in (ROOT / d).rglob("*.py")]
    bare = sorted(str(p.relative_to(ROOT)) for p in srcs if "convert" in _top_level_imports(p))
    assert not bare, bare
    installed = [p for d in ("edge_boneage", "keras_models", "convert") for p in (ROOT / d).rglob("*.py")]
    up = sorted(str(p.relative_to(ROOT)) for p in installed if "benchmarks" in _top_level_imports(p))
    assert not up, up
