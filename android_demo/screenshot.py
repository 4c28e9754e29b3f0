"""PNG screenshot of the demo page showing a result (headless Chromium): docs/android_demo_screenshot.png.

    .venv/bin/python android_demo/screenshot.py --image /work/shared/data/rsna/fullres/1380.png [--sex 1]
        [--model M.tflite] [--out docs/android_demo_screenshot.png]

Without --model the packaged RSNA-trained model (what the APK bundles; edge_boneage/pretrained/MODEL_CARD.md) is
used. The radiograph is served from where it lies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--sex", type=int, choices=(0, 1), default=1)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "android_demo_screenshot.png")
    args = ap.parse_args(argv)
    import browser

    subprocess.run(["bash", str(HERE / "fetch_litertjs.sh")], check=True)
    with tempfile.TemporaryDirectory(prefix="screenshot_") as tmp:
        model = args.model
        if model is None:  # what the APK bundles: the packaged RSNA-trained model
            from edge_boneage.pretrained import default_model_path

            model = Path(shutil.copy(default_model_path(), Path(tmp) / "boneage_age.tflite"))
        mounts = {"/": browser.WEB_DIR, "/m/": model.parent.resolve(), "/i/": args.image.parent.resolve()}
        with browser.serve(mounts) as base, browser.Chromium(width=1000, height=900) as ch:
            ch.navigate(f"{base}/index.html?model=/m/{model.name}&image=/i/{args.image.name}&sex={args.sex}")
            ch.wait_title(accept=("DONE",), timeout=120)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            ch.screenshot(args.out)
            print(ch.evaluate("document.getElementById('age').textContent + ' | ' + "
                              "document.getElementById('latency').textContent"))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
