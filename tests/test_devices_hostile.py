"""Issue 13, "trust the input": hostile --device values and file names for the ssh and adb backends, and a
benchmark that never deletes a file it did not make.

The ssh and adb tests run the exact command strings the backends build through a real /bin/sh in a sandbox
(standing in for the box's login shell and the phone's `adb shell`), with canary files and a fake runner /
benchmark_model that records the argv it received: a name that split, expanded or ran anything would show."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_boneage import EdgeBoneageError
from edge_boneage.bench import devices as D

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "benchmark_model_output.txt"
HOSTILE = {  # id -> a file stem no shell may split, expand or run
    "space": "my model",
    "quotes": "it's \"q\"",
    "semicolon": ";rm -rf x;",
    "subshell": "$(touch pwned)",
    "backtick": "`touch pwned`",
    "dash": "-oops",
    "colon": "a:b",
}


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def _canaries(*dirs: Path) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / "x").write_text("canary")


def _assert_nothing_ran(root: Path, *dirs: Path) -> None:
    assert not [p for p in root.rglob("pwned*")], "a file name ran a command substitution"
    for d in dirs:
        assert (d / "x").read_text() == "canary", f"a file name ran rm in {d}"


# ----------------------------------------------------------------------------------------------------------------
# ssh: the target


@pytest.mark.parametrize("spec, part", [
    ("-oProxyCommand=touch_pwned", "-oProxyCommand=touch_pwned"),
    ("-p2222", "-p2222"),
    ("--", "--"),
    ("-F/tmp/cfg@box:22", "-F/tmp/cfg"),
    ("pi@-oProxyCommand=id", "-oProxyCommand=id"),
    ("-lroot@box", "-lroot"),
])
def test_ssh_target_starting_with_dash_is_refused(spec, part, tmp_path, capsys):
    from edge_boneage.bench.config import config_from_dict
    from edge_boneage.cli import main

    what = "host" if spec.endswith(part) else "user"
    want = f"--device ssh:{spec}: the {what} {part!r} starts with '-' (ssh would read it as an option)"
    for make in (lambda: D.parse_ssh_target(spec), lambda: D.make_backend(f"ssh:{spec}"),
                 lambda: config_from_dict({"models": ["m.tflite"], "device": f"ssh:{spec}"})):
        with pytest.raises(EdgeBoneageError) as exc:
            make()
        assert str(exc.value).startswith(want) and "\n" not in str(exc.value)
    # the command line refuses it before any export: nothing is written, the one-line error names the value
    out = tmp_path / "out"
    assert main(["benchmark", "--model", "mobilenetv3_large", "--device", f"ssh:{spec}", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and want in err and not out.exists()


def test_ssh_target_ordinary_values_still_parse():
    assert D.parse_ssh_target("pi@192.168.1.20:2222") == ("pi@192.168.1.20", 2222)
    assert D.parse_ssh_target("my-user@box-1.lan") == ("my-user@box-1.lan", None)  # a '-' inside is fine
    with pytest.raises(EdgeBoneageError, match=r"^--device ssh:pi@box x: expected ssh:user@host\[:port\]$"):
        D.parse_ssh_target("pi@box\nx")  # the message stays on one line


# ----------------------------------------------------------------------------------------------------------------
# ssh: the commands


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """subprocess.run for ssh/scp: records each argv; runs an ssh command string with /bin/sh in a sandbox home
    (what the box's login shell does with it); scp copies between local paths and the sandbox."""
    real_run = subprocess.run
    home = tmp_path / "box_home"
    calls: list[list[str]] = []

    def remote_path(operand: str) -> Path:
        host, _, path = operand.partition(":")
        assert host == "pi@box" and path.startswith(str(tmp_path)), operand
        return Path(path)

    def run(cmd, **kw):
        calls.append(list(cmd))
        if cmd[0] == "ssh":
            return real_run(["sh", "-c", cmd[-1]], cwd=home, capture_output=True, text=True)
        assert cmd[0] == "scp" and "--" in cmd, cmd
        ops = cmd[cmd.index("--") + 1:]
        srcs, dst = ops[:-1], ops[-1]
        if dst.startswith("pi@box:"):  # upload into the remote folder
            for s in srcs:
                assert s.startswith("/"), f"local scp operand {s!r} is not absolute"
                shutil.copy(s, remote_path(dst) / Path(s).name)
        else:
            shutil.copy(remote_path(srcs[0]), dst)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(D.subprocess, "run", run)
    return {"calls": calls, "home": home}


@pytest.mark.parametrize("stem", HOSTILE.values(), ids=HOSTILE.keys())
def test_ssh_hostile_file_names(stem, tmp_path, fake_ssh):
    argv_log = tmp_path / "runner_argv.jsonl"
    runner = _script(tmp_path / "fake_python3", f"""
import json, sys
if sys.argv[1] == "-c":  # prepare()'s numpy check
    print("2.0"), sys.exit(0)
with open({str(argv_log)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
out = sys.argv[sys.argv.index("--out") + 1]
open(out, "w").write(json.dumps({{"ok": True, "timing_us": {{"avg": 1.0}}}}))
""")
    local = tmp_path / "local"
    local.mkdir()
    model, npz = local / f"{stem}.tflite", local / f"{stem}.npz"
    model.write_bytes(b"model"), npz.write_bytes(b"npz")
    be = D.SSHBackend("pi@box:2222", remote_python=str(runner))
    be.remote_dir = rdir = str(tmp_path / "box_tmp" / "edge_boneage_bench_0123456789ab")
    user_dir = tmp_path / "box_tmp" / "users_own"  # a neighbour of the run folder: must survive close()
    _canaries(fake_ssh["home"], user_dir)
    (tmp_path / "box_tmp" / "x").write_text("canary")
    be.prepare([])
    _canaries(Path(rdir))
    res = be.run_tflite(model, npz, threads=2, runs=3, warmup=1)
    _assert_nothing_ran(tmp_path, Path(rdir))
    be.close()

    assert res["ok"] and res["remote_dir"] == rdir, res
    # the runner on the box got each name as ONE argument, behind ./ so a leading '-' is no option
    got = [json.loads(ln) for ln in argv_log.read_text().splitlines()]
    assert len(got) == 1 and got[0][:11] == ["device_runner.py", f"./{stem}.tflite", "--eval", f"./{stem}.npz",
                                             "--threads", "2", "--runs", "3", "--warmup", "1", "--out"]
    _assert_nothing_ran(tmp_path, fake_ssh["home"], user_dir, tmp_path / "box_tmp")
    assert not Path(rdir).exists() and user_dir.is_dir()

    opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    calls = fake_ssh["calls"]
    ssh_calls = [c for c in calls if c[0] == "ssh"]
    scp_calls = [c for c in calls if c[0] == "scp"]
    assert len(ssh_calls) == 3 and all(c[:9] == ["ssh", "-p", "2222", *opts, "--", "pi@box"] and len(c) == 10
                                       for c in ssh_calls), ssh_calls
    run_words = shlex.split(ssh_calls[1][-1])  # how the box's shell splits the command: each name one word
    assert run_words[:8] == ["cd", rdir, "&&", str(runner), "device_runner.py", f"./{stem}.tflite", "--eval",
                             f"./{stem}.npz"]
    assert ssh_calls[2][-1] == f"rm -rf {shlex.quote(rdir)}"
    assert scp_calls[0] == ["scp", "-q", "-P", "2222", *opts, "--", str(D.RUNNER), f"pi@box:{rdir}/"]
    assert scp_calls[1] == ["scp", "-q", "-P", "2222", *opts, "--", str(model), str(npz), f"pi@box:{rdir}/"]
    assert scp_calls[2][:9] == ["scp", "-q", "-P", "2222", *opts, "--"] and len(scp_calls[2]) == 11
    assert scp_calls[2][9].startswith(f"pi@box:{rdir}/result_") and scp_calls[2][10].startswith("/")


def test_ssh_relative_dash_path_is_sent_absolute(tmp_path, fake_ssh, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("-F.tflite").write_bytes(b"m")
    be = D.SSHBackend("pi@box")
    be.remote_dir = str(tmp_path / "rd")
    Path(be.remote_dir).mkdir()
    be.copy(["-F.tflite"])
    assert fake_ssh["calls"][-1][-3:] == ["--", str(tmp_path / "-F.tflite"), f"pi@box:{be.remote_dir}/"]


# ----------------------------------------------------------------------------------------------------------------
# adb


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """A fake `adb` that logs its argv, copies on push and, like adb, joins `shell` arguments with spaces and hands
    the line to the device's shell (/bin/sh here, in a sandbox 'device')."""
    device = tmp_path / "device"
    base = device / "data_local_tmp"
    base.mkdir(parents=True)
    log = tmp_path / "adb_argv.jsonl"
    adb = _script(tmp_path / "adb", f"""
import json, shutil, subprocess, sys
args = sys.argv[1:]
with open({str(log)!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
if args[0] == "push":
    shutil.copyfile(args[1], args[2])
    sys.exit(0)
assert args[0] == "shell", args
r = subprocess.run(["sh", "-c", " ".join(args[1:])], cwd={str(device)!r}, capture_output=True, text=True)
sys.stdout.write(r.stdout), sys.stderr.write(r.stderr)
sys.exit(r.returncode)
""")
    monkeypatch.setattr(D.ADBBackend, "BASE", str(base))
    return {"adb": str(adb), "log": log, "device": device, "base": base}


@pytest.mark.parametrize("stem", HOSTILE.values(), ids=HOSTILE.keys())
def test_adb_hostile_file_names(stem, tmp_path, fake_adb):
    bm_log = tmp_path / "benchmark_model_argv.jsonl"
    binary = _script(tmp_path / "benchmark_model", f"""
import json, sys
with open({str(bm_log)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
sys.stdout.write(open({str(FIXTURE)!r}).read())
""")
    model = tmp_path / "models" / f"{stem}.tflite"
    model.parent.mkdir()
    model.write_bytes(b"m" * 10)
    base = fake_adb["base"]
    old_style = base / "edge_boneage_bench"  # the folder name every run used to share: someone else's now
    _canaries(fake_adb["device"], base, old_style)
    be = D.make_backend("adb:SER1", benchmark_model_bin=str(binary), adb=fake_adb["adb"])
    remote = be.remote
    assert remote.startswith(f"{base}/edge_boneage_bench_") and Path(remote).parent == base
    be.prepare([])
    _canaries(Path(remote))
    res = be.run_tflite(model, None, threads=2, runs=7, warmup=3)
    assert Path(remote, f"{stem}.tflite").read_bytes() == b"m" * 10  # pushed under its own name
    _assert_nothing_ran(tmp_path, Path(remote))
    be.close()

    assert res["ok"] and res["timing_us"]["avg"] == 22684.2 and res["model"] == f"{stem}.tflite", res
    # what the device's benchmark_model received: the whole hostile path as ONE argument
    got = [json.loads(ln) for ln in bm_log.read_text().splitlines()]
    words = [f"--graph={remote}/{stem}.tflite", "--num_threads=2", "--num_runs=7", "--warmup_runs=3",
             "--report_peak_memory_footprint=true"]
    assert got == [words]
    _assert_nothing_ran(tmp_path, fake_adb["device"], base, old_style)
    assert not Path(remote).exists() and old_style.is_dir()  # close() removed its own folder only

    calls = [json.loads(ln) for ln in fake_adb["log"].read_text().splitlines()]
    run_line = " ".join(shlex.quote(w) for w in [f"{remote}/benchmark_model", *words])
    assert calls == [
        ["-s", "SER1", "shell", f"mkdir -p {remote}"],
        ["-s", "SER1", "push", str(binary), f"{remote}/benchmark_model"],
        ["-s", "SER1", "shell", f"chmod 755 {remote}/benchmark_model"],
        ["-s", "SER1", "push", str(model), f"{remote}/{stem}.tflite"],
        ["-s", "SER1", "shell", run_line],
        ["-s", "SER1", "shell", f"rm -rf {remote}"],
    ]
    assert shlex.split(run_line) == [f"{remote}/benchmark_model", *words]  # the hostile path: one word


# ----------------------------------------------------------------------------------------------------------------
# the benchmark's work folder: never delete what is not ours


def _cheap_run(out: Path, model: Path) -> dict:
    """The cheapest benchmark there is: one given .tflite that cannot be read (a 'validation failed' row, no child)."""
    from edge_boneage.bench.config import config_from_dict
    from edge_boneage.bench.harness import run_benchmark

    cfg = config_from_dict({"models": [{"model": str(model)}], "variants": ["f32"], "runtimes": ["litert"],
                            "data": {"source": "synth", "n": 2, "seed": 1}, "runs": 1, "warmup": 0,
                            "out": str(out), "title": "work folder test"})
    return run_benchmark(cfg, log=lambda msg: None)


def test_benchmark_keeps_user_files_and_cleans_its_own(tmp_path):
    from edge_boneage.bench.config import WORK_MARK

    model = tmp_path / "corrupt.tflite"
    model.write_bytes(b"TFL3 but not a flatbuffer" * 4)
    out = tmp_path / "out"
    (out / "work" / "notes").mkdir(parents=True)
    mine = {out / "my_notes.txt": "in out", out / "work" / "keep.tflite": "in work",
            out / "work" / "notes" / "n.txt": "in a sub folder", out / "work" / "eval_age_32_c1.npz": "user's npz"}
    for p, text in mine.items():
        p.write_text(text)
    fake_mark = out / "work" / "looks_like_ours"  # a marker that does not name this tool: not ours
    fake_mark.mkdir()
    (fake_mark / WORK_MARK).write_text("{}")

    rep1 = _cheap_run(out, model)
    work1 = Path(rep1["work_dir"])
    assert work1.parent == out / "work" and work1.name.startswith("run_") and (work1 / WORK_MARK).is_file()
    assert [r["status"] for r in rep1["rows"]] == ["validation failed"]
    assert json.loads((out / "benchmark.json").read_text())["work_dir"] == str(work1)
    (work1 / "tiny_f32.export.json").write_text("{}")  # a stale file of the benchmark's own...

    rep2 = _cheap_run(out, model)
    work2 = Path(rep2["work_dir"])
    assert not work1.exists(), "the earlier run's own work folder was not cleaned up"
    assert work2 != work1 and work2.is_dir() and sorted(p.name for p in work2.iterdir()) == [WORK_MARK]
    for p, text in mine.items():  # ...but nothing it did not make
        assert p.read_text() == text, p
    assert (fake_mark / WORK_MARK).is_file()
    assert sorted(p.name for p in (out / "work").iterdir()) == sorted(
        ["notes", "keep.tflite", "eval_age_32_c1.npz", "looks_like_ours", work2.name])


def test_benchmark_work_that_is_a_file_is_refused(tmp_path):
    model = tmp_path / "corrupt.tflite"
    model.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "work").write_text("a user's file called work")
    with pytest.raises(EdgeBoneageError, match=r"out/work: exists and is not a folder"):
        _cheap_run(out, model)
    assert (out / "work").read_text() == "a user's file called work"
