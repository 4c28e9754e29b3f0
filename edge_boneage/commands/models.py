"""`edge-boneage models`: the model registry (name, task, inputs, default input contract)."""

from __future__ import annotations

import inspect
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered model builders",
                              description="List every registered model builder: name, task, inputs, knobs and the "
                                          "input contract train gives it by default (edge_boneage.train_config.RECIPES).")
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(func=handler)


def describe() -> list[dict]:
    from edge_boneage.train_config import RECIPES
    from keras_models.registry import list_models

    rows = []
    for e in list_models():
        params = inspect.signature(e.builder).parameters
        knobs = {k: v.default for k, v in params.items() if v.default is not inspect.Parameter.empty
                 and k not in ("name", "preprocess")}
        size = params["input_size"].default if "input_size" in params else None
        inputs = ["image"] + (["sex"] if knobs.get("use_sex") else []) + (["bone"] if knobs.get("use_bone_input") else [])
        contract = None
        if e.task == "age":  # what `train` (default recipe, no --enhance) writes into the model
            rec = RECIPES["cpu"]
            contract = {"frame": rec["frame"], "crop": rec["crop"], "enhance": None, "input_size": "--size (train)",
                        "source_size": rec["source_size"]}
        rows.append({"name": e.name, "task": e.task, "inputs": inputs, "default_input_size": size,
                     "description": e.description, "knobs": knobs, "default_contract": contract})
    return rows


def handler(args) -> int:
    rows = describe()
    if args.json:
        for r in rows:
            print(json.dumps(r, default=str))
        return 0
    for r in rows:
        c = r["default_contract"]
        cs = (f"; train's default contract: frame {c['frame']}, crop {c['crop']}, enhance {c['enhance']}, "
              f"source_size {c['source_size']}") if c else ""
        print(f"{r['name']:<24} {r['task']:<10} inputs {'+'.join(r['inputs'])}, {r['default_input_size']} px{cs}")
        print(f"    {r['description']}")
        print("    knobs: " + ", ".join(f"{k}={v!r}" for k, v in r["knobs"].items() if k != "input_size"))
    return 0
