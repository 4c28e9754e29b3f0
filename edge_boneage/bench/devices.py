"""Where a .tflite variant runs: here (a child process), on a box over ssh, or on an Android phone over adb.

Every backend returns the device_runner result dict ({"ok": True, "timing_us": ..., "memory": ..., "accuracy": ...})
or {"ok": False, "error": one line, "crashed": bool, "returncode": int}; a crash is a result, never an exception.

* ``local``: ``python device_runner.py MODEL --eval NPZ ...`` in a child process of this Python.
* ``ssh:user@host[:port]``: copies device_runner.py, the packed evaluation sets (.npz of preprocessed uint8
  images + labels) and the models into a fresh temporary folder on the box (scp), runs the runner there with the
  box's python3 (numpy + ai-edge-litert or tflite-runtime needed there), one ssh command per variant, copies the
  result JSON back, and removes the folder at the end. A user or host that starts with ``-`` is refused, every
  ssh/scp command puts ``--`` before the host / file operands, local operands are absolute paths (no operand reads
  as an option, no local ``a:b`` reads as a remote) and every word of a remote command is shlex-quoted.
* ``adb[:serial]``: pushes the model and a LiteRT ``benchmark_model`` binary (``--benchmark-model-bin``; it
  cannot be downloaded here) to a fresh /data/local/tmp/edge_boneage_bench_* folder (removed at the end; every
  word sent to ``adb shell`` is shlex-quoted) and parses the binary's summary lines
  (``parse_benchmark_model_output``). benchmark_model feeds random inputs, so adb rows carry latency and memory
  only, no accuracy; its statistics have median/p5/p95 but no p90.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from edge_boneage import EdgeBoneageError

RUNNER = Path(__file__).resolve().parents[1] / "device_runner.py"


def describe_exit(rc: int, *, shell: bool = False) -> tuple[str, bool]:
    """('crashed with SIGABRT' / 'exited with code 3', crashed?) for a child's return code (a remote shell reports a
    signal as 128 + its number)."""
    sig = -rc if rc < 0 else (rc - 128 if shell and 128 < rc < 128 + 65 else None)
    if sig:
        try:
            return f"crashed with {signal.Signals(sig).name}", True
        except ValueError:
            return f"was killed by signal {sig}", True
    return f"exited with code {rc}", False


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no error output"


def _runner_args(model: str, eval_npz: str, threads: int, runs: int, warmup: int, out: str) -> list[str]:
    return [model, "--eval", eval_npz, "--threads", str(int(threads)), "--runs", str(int(runs)),
            "--warmup", str(int(warmup)), "--out", out]


class LocalBackend:
    name = "local"

    def __init__(self, python: str | None = None, env: dict | None = None):
        self.python = python or sys.executable
        self.env = env

    def prepare(self, files) -> None:
        pass

    def run_tflite(self, model, eval_npz, *, threads=1, runs=50, warmup=5, timeout=600.0) -> dict:
        with tempfile.TemporaryDirectory(prefix="edge_boneage_bench_") as tmp:
            out = Path(tmp) / "result.json"
            cmd = [self.python, str(RUNNER)] + _runner_args(os.path.abspath(model), os.path.abspath(eval_npz), threads,
                                                            runs, warmup, str(out))
            return run_child(cmd, out, timeout=timeout, env=self.env)

    def close(self) -> None:
        pass


def run_child(cmd: list[str], out: Path, *, timeout: float, env: dict | None = None, shell_codes: bool = False) -> dict:
    """Run a child that writes a result JSON to `out`; a crash or a missing JSON becomes {"ok": False, ...}."""
    env = dict(os.environ if env is None else env)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:g} s", "crashed": False, "returncode": None}
    res = None
    if out.is_file():
        try:
            res = json.loads(out.read_text())
        except json.JSONDecodeError:
            res = None
    if proc.returncode == 0 and res is not None:
        return res
    how, crashed = describe_exit(proc.returncode, shell=shell_codes)
    if res is not None and not res.get("ok", False):
        return {**res, "crashed": crashed, "returncode": proc.returncode}
    return {"ok": False, "error": f"child {how}: {_last_line(proc.stderr)}", "crashed": crashed,
            "returncode": proc.returncode}


# --------------------------------------------------------------------------------------------------------------
# ssh


def parse_ssh_target(spec: str) -> tuple[str, int | None]:
    """'user@host[:port]' -> ('user@host', port or None); a user or host that starts with '-' is refused (ssh would
    read it as an option, e.g. -oProxyCommand=...)."""
    where = "--device ssh:" + " ".join(spec.split())  # one line, whatever the value holds
    user, _, host = spec.rpartition("@")
    for what, part in (("user", user), ("host", host)):
        if part.startswith("-"):
            raise EdgeBoneageError(f"{where}: the {what} {part!r} starts with '-' (ssh would read it as an option); "
                                   "expected ssh:user@host[:port]")
    m = re.fullmatch(r"([^\s:@]+@)?([^\s:@]+)(?::(\d+))?", spec)
    if not m:
        raise EdgeBoneageError(f"{where}: expected ssh:user@host[:port]")
    return f"{m.group(1) or ''}{m.group(2)}", (int(m.group(3)) if m.group(3) else None)


class SSHBackend:
    def __init__(self, target: str, *, ssh_opts=(), remote_python: str = "python3", connect_timeout: int = 10):
        self.dest, self.port = parse_ssh_target(target)
        self.name = f"ssh:{target}"
        self.opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}", *ssh_opts]
        self.remote_python = remote_python
        self.remote_dir = f"/tmp/edge_boneage_bench_{uuid.uuid4().hex[:12]}"
        self.copied: dict[str, str] = {}

    def _ssh(self, command: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        port = ["-p", str(self.port)] if self.port else []
        return subprocess.run(["ssh", *port, *self.opts, "--", self.dest, command], capture_output=True, text=True,
                              timeout=timeout)

    def _scp(self, srcs: list[str], dst: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
        port = ["-P", str(self.port)] if self.port else []
        return subprocess.run(["scp", "-q", *port, *self.opts, "--", *srcs, dst], capture_output=True, text=True,
                              timeout=timeout)

    def prepare(self, files) -> None:
        r = self._ssh(f"mkdir -p {shlex.quote(self.remote_dir)} && {shlex.quote(self.remote_python)} -c "
                      "'import numpy; print(numpy.__version__)'")
        if r.returncode != 0:
            raise EdgeBoneageError(f"{self.name}: cannot prepare the box ({_last_line(r.stderr)}); the box needs "
                                   f"{self.remote_python} with numpy and ai-edge-litert (or tflite-runtime)")
        self.copy([str(RUNNER), *map(str, files)])

    def copy(self, files) -> None:
        todo = [f for f in files if f not in self.copied]
        names = [Path(f).name for f in todo]
        if len(set(names)) != len(names) or any(n in {Path(c).name for c in self.copied} for n in names):
            raise EdgeBoneageError(f"{self.name}: two files to copy share a name: {sorted(names)}")
        if not todo:
            return
        r = self._scp([os.path.abspath(f) for f in todo], f"{self.dest}:{self.remote_dir}/")
        if r.returncode != 0:
            raise EdgeBoneageError(f"{self.name}: scp failed ({_last_line(r.stderr)})")
        for f in todo:
            self.copied[f] = f"{self.remote_dir}/{Path(f).name}"

    def run_tflite(self, model, eval_npz, *, threads=1, runs=50, warmup=5, timeout=600.0) -> dict:
        self.copy([str(model), str(eval_npz)])
        rdir = self.remote_dir
        out_name = f"result_{uuid.uuid4().hex[:8]}.json"
        # ./NAME: a file name that starts with '-' must not read as an option of the runner
        args = _runner_args(f"./{Path(model).name}", f"./{Path(eval_npz).name}", threads, runs, warmup, out_name)
        cmd = (f"cd {shlex.quote(rdir)} && {shlex.quote(self.remote_python)} device_runner.py "
               + " ".join(shlex.quote(a) for a in args))
        try:
            r = self._ssh(cmd, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout:g} s", "crashed": False, "returncode": None}
        with tempfile.TemporaryDirectory(prefix="edge_boneage_ssh_") as tmp:
            local = Path(tmp) / "result.json"
            got = self._scp([f"{self.dest}:{rdir}/{out_name}"], str(local), timeout=120)
            res = json.loads(local.read_text()) if got.returncode == 0 and local.is_file() else None
        if r.returncode == 0 and res is not None:
            res["remote_dir"] = rdir
            return res
        if r.returncode == 255:  # ssh's own failure
            return {"ok": False, "error": f"ssh failed: {_last_line(r.stderr)}", "crashed": False, "returncode": 255}
        how, crashed = describe_exit(r.returncode, shell=True)
        if res is not None and not res.get("ok", False):
            return {**res, "crashed": crashed, "returncode": r.returncode}
        return {"ok": False, "error": f"remote runner {how}: {_last_line(r.stderr)}", "crashed": crashed,
                "returncode": r.returncode}

    def close(self) -> None:
        try:
            self._ssh(f"rm -rf {shlex.quote(self.remote_dir)}", timeout=60)
        except (subprocess.SubprocessError, OSError):
            pass


# --------------------------------------------------------------------------------------------------------------
# adb + benchmark_model

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def parse_benchmark_model_output(text: str) -> dict:
    """Read LiteRT ``benchmark_model``'s summary into the runner's result shape (microseconds, MB).

    Uses: ``Inference timings in us: Init: a, First inference: b, Warmup (avg): c, Inference (avg): d``, the last
    ``count=... first=... curr=... min=... max=... avg=... std=...[ p5=... median=... p95=...]`` line (the timed
    runs), ``Memory footprint delta from the start of the tool (MB): init=x overall=y`` and, when present,
    ``Overall peak memory footprint (MB) via periodic monitoring: z``. Lines may carry ``INFO:`` or logcat prefixes.
    Raises EdgeBoneageError when the timing line is missing (e.g. the binary failed: its last line is quoted).
    """
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    body = "\n".join(lines)
    m = re.search(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, Warmup \(avg\): {_NUM}, "
                  rf"Inference \(avg\): {_NUM}", body)
    if not m:
        raise EdgeBoneageError(f"benchmark_model output has no 'Inference timings in us' line; last line: "
                               f"{_last_line(body)}")
    init, first, warm, avg = (float(g) for g in m.groups())
    timing = {"init": init, "first": first, "warmup_avg": warm, "avg": avg, "std": None, "p50": None, "p90": None,
              "p5": None, "p95": None, "min": None, "max": None, "runs": None, "warmup_runs": None}
    stats = [dict(re.findall(rf"(\w+)={_NUM}", ln)) for ln in lines if re.search(r"\bcount=\d+", ln)]
    if stats:
        last = stats[-1]  # the timed runs follow the warm-up line
        f = {k: float(v) for k, v in last.items()}
        timing.update({"runs": int(f["count"]) if "count" in f else None, "std": f.get("std"), "min": f.get("min"),
                       "max": f.get("max"), "p50": f.get("median"), "p5": f.get("p5"), "p95": f.get("p95")})
        if len(stats) > 1 and "count" in stats[-2]:
            timing["warmup_runs"] = int(float(stats[-2]["count"]))
    mem = {"init_delta_mb": None, "overall_delta_mb": None, "peak_mb": None}
    m = re.search(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUM} overall={_NUM}", body)
    if m:
        mem["init_delta_mb"], mem["overall_delta_mb"] = float(m.group(1)), float(m.group(2))
    m = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}", body)
    if m:
        mem["peak_mb"] = float(m.group(1))
    m = re.search(rf"The input model file size \(MB\): {_NUM}", body)
    return {"ok": True, "runtime": "LiteRT benchmark_model", "timing_us": timing, "memory": mem,
            "model_file_mb": float(m.group(1)) if m else None, "accuracy": None}


class ADBBackend:
    BASE = "/data/local/tmp"

    def __init__(self, serial: str | None, benchmark_model_bin: str | None, *, adb: str = "adb"):
        if not benchmark_model_bin:
            raise EdgeBoneageError("--device adb needs --benchmark-model-bin PATH (LiteRT's benchmark_model built "
                                   "for the phone's ABI; it cannot be downloaded here)")
        if not Path(benchmark_model_bin).is_file():
            raise EdgeBoneageError(f"{benchmark_model_bin}: no such benchmark_model binary")
        self.serial, self.bin, self.adb = serial, benchmark_model_bin, adb
        self.name = f"adb:{serial}" if serial else "adb"
        self.remote = f"{self.BASE}/edge_boneage_bench_{uuid.uuid4().hex[:12]}"  # ours alone: close() removes it
        self.pushed: set[str] = set()

    def _adb(self, *args, timeout: float = 600.0) -> subprocess.CompletedProcess:
        ser = ["-s", self.serial] if self.serial else []
        try:
            return subprocess.run([self.adb, *ser, *args], capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise EdgeBoneageError(f"{self.adb}: adb not found (install android-tools-adb)") from exc

    def _shell(self, *words, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """`adb shell` joins its arguments into ONE command line for the device's shell: send it as one string of
        shlex-quoted words, so no file name can split, expand or run anything there."""
        return self._adb("shell", " ".join(shlex.quote(str(w)) for w in words), timeout=timeout)

    def prepare(self, files) -> None:
        r = self._shell("mkdir", "-p", self.remote, timeout=60)
        if r.returncode != 0:
            raise EdgeBoneageError(f"{self.name}: adb shell failed ({_last_line(r.stderr or r.stdout)})")
        self._push(self.bin, "benchmark_model")
        self._shell("chmod", "755", f"{self.remote}/benchmark_model", timeout=60)

    def _push(self, local: str, name: str) -> None:
        if name in self.pushed:
            return
        # adb push takes its paths verbatim (no device shell); an absolute local path never reads as an option
        r = self._adb("push", os.path.abspath(local), f"{self.remote}/{name}")
        if r.returncode != 0:
            raise EdgeBoneageError(f"{self.name}: adb push {local} failed ({_last_line(r.stderr or r.stdout)})")
        self.pushed.add(name)

    def run_tflite(self, model, eval_npz=None, *, threads=1, runs=50, warmup=5, timeout=600.0) -> dict:
        name = Path(model).name
        self._push(str(model), name)
        cmd = [f"{self.remote}/benchmark_model", f"--graph={self.remote}/{name}", f"--num_threads={int(threads)}",
               f"--num_runs={int(runs)}", f"--warmup_runs={int(warmup)}", "--report_peak_memory_footprint=true"]
        try:
            r = self._shell(*cmd, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout:g} s", "crashed": False, "returncode": None}
        text = (r.stdout or "") + "\n" + (r.stderr or "")
        try:
            res = parse_benchmark_model_output(text)
        except EdgeBoneageError as exc:
            how, crashed = describe_exit(r.returncode, shell=True)
            return {"ok": False, "error": f"benchmark_model {how}: {exc}", "crashed": crashed,
                    "returncode": r.returncode}
        res.update({"threads": int(threads), "model": name, "model_bytes": os.path.getsize(model),
                    "note": "benchmark_model feeds random inputs: no accuracy on adb rows"})
        return res

    def close(self) -> None:
        self._shell("rm", "-rf", self.remote, timeout=60)


def check_device(device: str) -> str:
    """The --device value ('local' when empty) after the checks that need no device: run before any export."""
    device = device or "local"
    if device.startswith("ssh:"):
        parse_ssh_target(device[4:])
    elif device != "local" and device != "adb" and not device.startswith("adb:"):
        raise EdgeBoneageError(f"--device {' '.join(device.split())}: expected local, ssh:user@host[:port] or "
                               "adb[:serial]")
    return device


def make_backend(device: str, *, ssh_opts=(), remote_python: str = "python3", benchmark_model_bin=None,
                 adb: str = "adb"):
    device = check_device(device)
    if device == "local":
        return LocalBackend()
    if device.startswith("ssh:"):
        return SSHBackend(device[4:], ssh_opts=ssh_opts, remote_python=remote_python)
    return ADBBackend(device[4:] or None, benchmark_model_bin, adb=adb)
