"""`edge-boneage synth`: write a synthetic hand-radiograph data set (RSNA-style labels + TW3 stages + boxes)."""

from __future__ import annotations

import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic left-hand radiographs with bone-age labels, TW3 RUS stages and RUS boxes",
        description="Write OUT/images/{id}.png, OUT/labels.csv (id,boneage,male), OUT/stages.csv (13 TW3 RUS "
        "grades, 0 = stage A), OUT/boxes.csv (13 RUS regions per image, pixels). Same seed -> identical files.",
    )
    p.add_argument("--out", required=True, help="output folder (must be absent or empty unless --overwrite)")
    p.add_argument("--n", type=int, default=100, help="number of images (default 100)")
    p.add_argument("--size", type=int, default=512, help="square image side in pixels (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--start", type=int, default=0, help="first image id (default 0)")
    p.add_argument("--age-range", type=float, nargs=2, default=(0.0, 18.0), metavar=("MIN", "MAX"),
                   help="bone-age range in years, uniform (default 0 18)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty OUT")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a 2 x 18 contact sheet (ages 1..18) here")
    p.set_defaults(func=handler)


def handler(args) -> int:
    import cv2

    from edge_boneage import EdgeBoneageError, fileutil
    from edge_boneage.synth import write_dataset
    from edge_boneage.synth.render import contact_sheet

    if args.n < 1:
        raise EdgeBoneageError(f"--n must be at least 1 (got {args.n})")
    if not 64 <= args.size <= 4096:
        raise EdgeBoneageError(f"--size must be within 64..4096 (got {args.size})")
    t0 = time.perf_counter()

    def progress(done, total):
        if sys.stderr.isatty() and (done % 50 == 0 or done == total):
            print(f"\r{done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    out = write_dataset(args.out, args.n, args.size, args.seed, tuple(args.age_range), overwrite=args.overwrite,
                        start=args.start, progress=progress)
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} images ({args.size}x{args.size}) to {out} in {dt:.1f} s ({args.n / dt:.1f} img/s)")
    if args.contact_sheet:
        ok, png = cv2.imencode(".png", contact_sheet(seed=args.seed))
        if not ok:
            raise EdgeBoneageError(f"{args.contact_sheet}: PNG encoding failed")
        fileutil.write_bytes_atomic(args.contact_sheet, png.tobytes())
        print(f"wrote contact sheet {args.contact_sheet}")
    return 0
