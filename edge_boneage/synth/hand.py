"""Procedural LEFT hand skeleton + soft tissue, in millimetres (x to the thumb side = image right, y distal = up).

``build_hand(child, rng)`` returns a ``Scene``: polygons to fill on the bone layer (in draw order, each with a
grey level), tissue primitives, the 13 TW3 RUS regions (growth-plate centre, axis, width) and points that must
stay inside the image. No drawing here: ``render.py`` maps millimetres to pixels and rasterises.

Bones: radius, ulna, 5 metacarpals, 5 proximal + 4 middle + 5 distal phalanges (19 tubular bones, each with an
epiphysis), 8 carpals appearing with maturity, and the thumb's adductor sesamoid near puberty.

Epiphysis by visual stage v (0 = A ... 8 = I; the ulna's 7 grades map via ``maturity.ULNA_VISUAL``):
A absent; B a small round centre (~1/3 of the metaphysis width) far from the metaphysis; C oval, ~1/2;
D ~2/3, flatter, its lower border straightening; E ~0.85, shaped (radius/ulna styloids start); F as wide as
the metaphysis, gap narrowing; G wider than the metaphysis with lips capping its edges; H fusion begun (bone
bridges the centre of the growth plate, gaps remain at the edges); I fused (no gap, a faint scar line).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from edge_boneage import tw3
from edge_boneage.synth.maturity import ULNA_VISUAL

# grey levels on the bone layer (uint8 canvas)
CORTEX = 250
MEDULLA = 150
SCAR = 205

# per visual stage 0..8 (A..I)
_RW = np.array([0, 0.32, 0.48, 0.68, 0.86, 1.0, 1.1, 1.07, 1.03])  # epiphysis width / metaphysis width
_TH = np.array([0, 0.26, 0.30, 0.33, 0.36, 0.38, 0.40, 0.40, 0.40])  # dome height / W
_BOT = np.array([0, 0.85, 0.65, 0.35, 0.15, 0.08, 0.05, 0.04, 0.04])  # lower bulge / dome height
_GAP = np.array([0, 0.30, 0.25, 0.20, 0.15, 0.11, 0.075, 0.045, -0.02])  # gap to the metaphysis / W
_LIP = np.array([0, 0, 0, 0, 0, 0.03, 0.13, 0.13, 0.07])  # capping lips / W
_STY = np.array([0, 0, 0, 0, 0.25, 0.45, 0.65, 0.75, 0.8])  # styloid (radius, ulna)

_XS = np.linspace(-1.0, 1.0, 17)
_SQ = np.sqrt(1.0 - _XS**2)
_T_SHAFT = np.concatenate([np.linspace(0, 0.15, 4), np.linspace(0.25, 0.75, 3), np.linspace(0.85, 1.0, 4)])
_CAP = np.linspace(0.0, np.pi, 9)
_ELL = np.linspace(0, 2 * np.pi, 25)[:-1]

# finger rays, adult mm: (base x, base y, angle deg (+ = thumb side), [(name, length, width, epiphysis end)])
RAYS = {
    1: (21.0, 1.0, 30.0, [("mc1", 44, 12.5, "prox"), ("pp1", 31, 11.5, "prox"), ("dp1", 23, 10.0, "prox")]),
    2: (10.5, 14.0, 8.0, [("mc2", 66, 11.0, "dist"), ("pp2", 40, 11.0, "prox"), ("mp2", 23, 9.5, "prox"),
                          ("dp2", 17, 8.0, "prox")]),
    3: (0.0, 16.0, 0.0, [("mc3", 63, 11.0, "dist"), ("pp3", 45, 11.5, "prox"), ("mp3", 28, 10.0, "prox"),
                         ("dp3", 19, 8.5, "prox")]),
    4: (-10.5, 13.0, -7.0, [("mc4", 57, 10.0, "dist"), ("pp4", 42, 10.5, "prox"), ("mp4", 26, 9.5, "prox"),
                            ("dp4", 18, 8.0, "prox")]),
    5: (-20.0, 8.0, -15.0, [("mc5", 53, 10.0, "dist"), ("pp5", 33, 9.5, "prox"), ("mp5", 19, 8.0, "prox"),
                            ("dp5", 16, 7.5, "prox")]),
}
JOINT_GAP = {"mc": 2.6, "pp": 2.2, "mp": 1.8}
# shaft shape: (waist, far-end width, far-end cap depth) relative to W
SHAFT = {"mc": (0.66, 0.95, 0.35), "pp": (0.7, 0.88, 0.45), "mp": (0.7, 0.85, 0.45), "dp": (0.5, 0.66, 0.6)}
# non-RUS bones take the stage of a RUS neighbour
STAGE_PROXY = {"mc2": "mc3", "mc4": "mc5", "pp2": "pp3", "pp4": "pp3", "mp2": "mp3", "mp4": "mp3",
               "dp2": "dp3", "dp4": "dp3"}
# carpals: centre x, y, half-axes a, b, angle deg, appearance (male TW3-C bone age, years)
CARPALS = [
    ("capitate", 0.5, 2.0, 6.5, 10.0, 0.0, 0.2),
    ("hamate", -10.5, 3.5, 6.0, 9.0, 15.0, 0.35),
    ("triquetrum", -16.5, -7.5, 5.5, 6.0, 30.0, 2.5),
    ("lunate", -5.0, -9.5, 6.5, 6.0, 0.0, 3.5),
    ("trapezium", 17.5, 0.0, 6.0, 6.5, 25.0, 5.0),
    ("trapezoid", 10.0, 6.5, 5.0, 6.0, 0.0, 5.5),
    ("scaphoid", 8.5, -9.0, 5.5, 10.0, -55.0, 5.5),
    ("pisiform", -19.5, -4.5, 4.2, 4.2, 0.0, 10.5),
]
RADIUS = dict(plate=(6.0, -28.5), width=24.0, length=120.0, waist=0.62, styloid=-1.0)
ULNA = dict(plate=(-16.0, -30.5), width=13.0, length=120.0, waist=0.78, styloid=+1.0)
BOX_FACTOR = {"radius": 1.5, "ulna": 2.2}  # RUS region side / metaphysis width (others 2.0)


@dataclass
class Scene:
    """Bone items are ``(points (K,2) local, split indices, greys, frame (2,3) local->mm)``: every polygon of
    one bone shares a frame, so rendering maps them with one matrix product."""

    bone: list = field(default_factory=list)
    tissue_polys: list = field(default_factory=list)  # [(poly mm, grey)]
    tissue_lines: list = field(default_factory=list)  # [(p0, p1, width_mm, grey)]
    hull_points: list = field(default_factory=list)  # palm: filled convex hull dilated by hull_margin
    hull_margin: float = 6.0
    rus: dict = field(default_factory=dict)  # bone -> (centre (2,) mm, side mm)
    keep_inside: list = field(default_factory=list)  # points that must stay in the image


def _unit(deg):
    r = np.deg2rad(deg)
    return np.array([np.sin(r), np.cos(r)])


def _frame(origin, axis) -> np.ndarray:
    """(2,3) matrix mapping local (u along axis, v = axis rotated +90 deg) to mm."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.hypot(a[0], a[1])
    return np.array([[a[0], -a[1], origin[0]], [a[1], a[0], origin[1]]])


def _pack(polys_uv, greys):
    pts = np.concatenate([np.stack(p, axis=1) for p in polys_uv])
    splits = np.cumsum([len(p[0]) for p in polys_uv])[:-1]
    return pts, splits, tuple(greys)


def _shaft(ls, w, waist, far, cap_depth, inner):
    """Shaft outline (u, v) from the plate (u=0) to the far end (u=-ls); inner = medullary outline."""
    t = _T_SHAFT
    hw = 0.5 * w * (waist + (1 - waist) * np.exp(-t / 0.1) + (far - waist) * np.exp(-(1 - t) / 0.1))
    u = -t * ls
    conv = 0.05 * w
    if inner:
        ct = w * (0.06 + 0.10 * np.sin(np.pi * t))
        hw = np.maximum(hw - ct, 0.15 * hw)
        u = -(0.05 * w) - t * (ls - 0.1 * w)
        conv = 0.0
    hw0, hwf = hw[0], hw[-1]
    top_v = np.linspace(hw0, -hw0, 7)
    top_u = u[0] + conv * (1 - (top_v / hw0) ** 2)
    cap_v = -hwf * np.cos(_CAP)
    cap_u = u[-1] - cap_depth * w * np.sin(_CAP) * (0.7 if inner else 1.0)
    return np.concatenate([u[::-1], top_u, u, cap_u]), np.concatenate([hw[::-1], top_v, -hw, cap_v])


def _epiphysis(w, v, dome, sty_side, sty_kind, inner):
    hw = 0.5 * _RW[v] * w
    th = _TH[v] * w * dome
    bot = _BOT[v] * th
    u0 = _GAP[v] * w + bot
    lip = _LIP[v] * w
    if inner:
        c = min(0.07 * w, 0.3 * hw, 0.3 * th)
        hw, th, bot, lip = hw - c, th - c, max(bot - c, 0.0), max(lip - c, 0.0)
    x = _XS
    top = th * _SQ**0.8
    if sty_kind and _STY[v] > 0:
        side = np.maximum(0.0, sty_side * x)
        top = top * (1 + _STY[v] * (0.6 * side**2 + (1.6 if sty_kind == "radius" else 2.2) * side**6))
    bottom = bot * _SQ + lip * np.clip((np.abs(x) - 0.7) / 0.3, 0, 1) ** 1.5
    return (np.concatenate([u0 + top, (u0 - bottom)[::-1]]), np.concatenate([x * hw, (x * hw)[::-1]])), u0


def _rect(u0, u1, v0, v1):
    return np.array([u0, u0, u1, u1]), np.array([v0, v1, v1, v0])


@functools.lru_cache(maxsize=4096)
def tubular_template(ls: float, w: float, vstage: int, dome: float, shaft: tuple, sty_side: float = 0.0,
                     sty_kind: str | None = None):
    """Local polygons of one tubular bone at one visual stage (cached: they depend on the bone and stage only)."""
    waist, far, capd = shaft
    polys = [_shaft(ls, w, waist, far, capd, False), _shaft(ls, w, waist, far, capd, True)]
    greys = [CORTEX, MEDULLA]
    if vstage > 0:
        outer, _ = _epiphysis(w, vstage, dome, sty_side, sty_kind, False)
        inner, u0 = _epiphysis(w, vstage, dome, sty_side, sty_kind, True)
        polys += [outer, inner]
        greys += [CORTEX, MEDULLA]
        hin = 0.5 * w - 0.07 * w
        if vstage == 7:  # fusion begun: bone bridges the centre of the growth plate, gaps stay at the edges
            polys.append(_rect(-0.07 * w, u0 + 0.03 * w, -0.5 * hin, 0.5 * hin))
            greys.append(MEDULLA)
        elif vstage == 8:  # fused: bone across the whole plate, a faint scar line
            polys.append(_rect(-0.08 * w, 0.06 * w, -hin, hin))
            polys.append(_rect(-0.012 * w, 0.012 * w, -0.9 * hin, 0.9 * hin))
            greys += [MEDULLA, SCAR]
    return _pack(polys, greys)


def _tubular(scene, start, direction, length, w, epi_end, vstage, kind, dome=1.0, sty_side=0.0, sty_kind=None,
             shaft=None):
    """Add one tubular bone (shaft + epiphysis); return (plate centre, axis towards the epiphysis)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.hypot(d[0], d[1])
    z = w * (0.42 * dome if dome > 1 else 0.36)  # epiphysis zone (adult)
    if epi_end == "dist":
        plate, axis = start + (length - z) * d, d
    else:
        plate, axis = start + z * d, -d
    tpl = tubular_template(float(length - z), float(w), int(vstage), float(dome),
                           tuple(shaft if shaft is not None else SHAFT[kind]), float(sty_side), sty_kind)
    scene.bone.append((*tpl, _frame(plate, axis)))
    return plate, axis


@functools.lru_cache(maxsize=256)
def _blob(w0: float, ph0: float, w1: float, ph1: float):
    k = 1 + w0 * np.sin(2 * _ELL + ph0) + w1 * np.sin(3 * _ELL + ph1)
    return np.stack([np.cos(_ELL) * k, np.sin(_ELL) * k], axis=1)


def _ellipse_item(c, a, b, ang_deg, cth, wobble=(0.0, 0.0, 0.0, 0.0)):
    """A carpal-like blob: cortex outline then medulla (axes shrunk by cth), as one bone item."""
    unit = _blob(*[round(float(x), 2) for x in wobble])
    r = np.deg2rad(ang_deg)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    outer = unit * (a, b)
    inner = unit * (max(a - cth, 0.3 * a), max(b - cth, 0.3 * b))
    frame = np.hstack([rot, np.asarray(c, dtype=np.float64)[:, None]])
    return np.concatenate([outer, inner]), np.array([len(unit)]), (CORTEX, MEDULLA), frame


@functools.lru_cache(maxsize=64)
def _q_of_male_age(age: float) -> float:
    """Maturity q (TW3-C RUS score / 1000) of a boy of this bone age: the common scale of all bones."""
    return float(tw3.age_to_score(age, "male")) / 1000.0


def visual_stages(grades) -> dict:
    """Visual stage 0..8 for every drawn tubular bone (RUS bones from their grades, the rest by proxy)."""
    g = {b: int(x) for b, x in zip(tw3.BONES, grades)}
    vis = {b: (int(ULNA_VISUAL[x]) if b == "ulna" else x) for b, x in g.items()}
    for b, p in STAGE_PROXY.items():
        vis[b] = vis[p]
    return vis


def build_hand(child: dict, rng: np.random.Generator) -> Scene:
    """Skeleton + tissue of one child. ``child``: dict with ``grades`` (13,), ``q`` (maturity 0..1), ``male``."""
    vis = visual_stages(child["grades"])
    q = float(child["q"])
    sc = Scene()
    fat = 1.0 + 0.2 * (1.0 - q) + rng.normal(0, 0.04)
    sc.hull_margin = 7.0 * fat
    jit = lambda s: rng.normal(0.0, s)  # noqa: E731

    # forearm bones
    for key, spec in (("radius", RADIUS), ("ulna", ULNA)):
        tilt = _unit(jit(2.0))
        plate0 = np.asarray(spec["plate"]) + rng.normal(0, 0.6, 2)
        start = plate0 + tilt * (spec["width"] * 0.36)
        start_far = start - tilt * spec["length"]
        _tubular(sc, start_far, tilt, spec["length"], spec["width"], "dist", vis[key], None,
                 sty_side=spec["styloid"], sty_kind=key, shaft=(spec["waist"], spec["waist"], 0.3))
        sc.rus[key] = (plate0 + tilt * 0.22 * spec["width"], BOX_FACTOR[key] * spec["width"])
        sc.hull_points.append(plate0 + np.array([spec["styloid"] * -0.5 * spec["width"], 0.0]))

    # carpals (size grows from appearance to ~13.5 y male-equivalent maturity)
    q_full = _q_of_male_age(13.5)
    # fixed number of draws whatever the maturity, so stages never shift the rest of the random stream
    c_app = rng.normal(0.0, 0.01, len(CARPALS))
    c_pos = rng.normal(0.0, 0.4, (len(CARPALS), 2))
    c_ph = rng.uniform(0.0, 6.28, (len(CARPALS), 2))
    for j, (name, cx, cy, a, b, ang, app) in enumerate(CARPALS):
        q_app = _q_of_male_age(app) + c_app[j]
        if q <= q_app:
            continue
        f = np.clip((q - q_app) / max(q_full - q_app, 1e-3), 0.0, 1.0)
        s = 0.22 + 0.78 * f
        roundness = 1.0 - f  # young centres are round
        aa, bb = a * s, (b * (1 - roundness) + a * roundness) * s
        c = np.array([cx, cy]) * (0.8 + 0.2 * f) + c_pos[j]
        wob = (0.05 * f, c_ph[j, 0], 0.04 * f, c_ph[j, 1])
        sc.bone.append(_ellipse_item(c, aa, bb, ang, min(1.0, 0.25 * min(aa, bb)), wob))

    # finger rays
    spread = rng.uniform(-0.3, 1.3)  # global finger fan
    for ray, (bx, by, ang, bones) in RAYS.items():
        p = np.array([bx, by]) + rng.normal(0, 0.5, 2)
        a = ang + jit(2.0) + (spread * 6.0 if ray == 1 else 0.0)
        offs = {1: 0.0, 2: 1.0, 3: 0.0, 4: -1.0, 5: -2.0}[ray]
        d = _unit(a)
        joints = [p.copy()]
        for k, (name, length, w, epi) in enumerate(bones):
            kind = name[:2]
            if k == 1:  # at the MCP joint: finger spread
                a += offs * spread * 4.0 + jit(3.0) - (6.0 if ray == 1 else 0.0)
            elif k > 1:
                a += jit(2.5)
            d = _unit(a)
            dome = 1.35 if (kind == "mc" and epi == "dist") else 1.0
            plate, axis = _tubular(sc, p, d, length, w, epi, vis[name], kind, dome=dome)
            if name in tw3.N_GRADES:
                sc.rus[name] = (plate + axis * 0.2 * w, BOX_FACTOR.get(name, 2.0) * w)
            p = p + length * d
            joints.append(p.copy())
            if k < len(bones) - 1:
                p = p + JOINT_GAP.get(kind, 2.0) * d
            if name == "mc1" and q > 0.5:  # adductor sesamoid appears near puberty
                f = min(1.0, (q - 0.5) / 0.15)
                cs = p - 4.0 * d + np.array([-d[1], d[0]]) * 4.5
                sc.bone.append(_ellipse_item(cs, 2.2 * f + 0.4, 2.6 * f + 0.5, -a, 0.7))
        tip = p + d * (3.0 + 2.0 * fat)
        width = bones[1][2] * 1.5 * fat
        if ray == 1:
            pts = [joints[0] + (joints[1] - joints[0]) * 0.5] + joints[1:] + [tip]
        else:
            pts = joints[1:] + [tip]
            sc.hull_points.append(joints[1] - d * 4.0)
        sc.hull_points.extend([joints[0], joints[1] if ray != 1 else joints[0] + (joints[1] - joints[0]) * 0.8])
        for p0, p1 in zip(pts[:-1], pts[1:]):
            sc.tissue_lines.append((p0, p1, width, 215))
        sc.keep_inside.append(tip)
    # forearm soft tissue
    half = 30.0 * fat
    top = np.array([[half + 3, -6.0], [-half, -6.0]])
    sc.tissue_polys.append((np.array([[-half - 6, -150.0], [half + 8, -150.0], *top]), 235))
    sc.hull_points.extend(top - np.array([[sc.hull_margin, 0.0], [-sc.hull_margin, 0.0]]) * 0.9)
    for c, _side in sc.rus.values():
        sc.keep_inside.append(c)
    return sc
