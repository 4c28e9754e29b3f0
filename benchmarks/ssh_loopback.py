"""An end-to-end `edge-boneage benchmark --device ssh:` run against an OpenSSH server started on 127.0.0.1 only.

    .venv/bin/python -m benchmarks.ssh_loopback [BENCHMARK ARGS...]

Starts /usr/sbin/sshd on a free loopback port with a throw-away host key, client key and config (nothing
system-wide is started or changed; `bash scripts/install_sshd.sh` installs the package), then runs
`edge-boneage benchmark --device ssh:USER@127.0.0.1:PORT` with the given arguments (default: the packaged RSNA model,
1 and 2 threads, 64 RSNA images) and stops the server. The "box" is this machine, so this exercises the copy /
remote run / JSON-back path for real, not an ARM board's speed. tests/test_benchmark.py uses `loopback_sshd`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")


class SshdUnavailable(RuntimeError):
    """openssh-server or -client is not installed."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_sshd(workdir: str | os.PathLike):
    """Run sshd on 127.0.0.1 with keys and config under `workdir`; yield {"target": user@127.0.0.1:port,
    "opts": ssh/scp options that authenticate and pin the host key}. Stops the server on exit."""
    keygen = shutil.which("ssh-keygen")
    if not SSHD.is_file() or not shutil.which("ssh") or not shutil.which("scp") or not keygen:
        raise SshdUnavailable("openssh-server/client not installed (bash scripts/install_sshd.sh installs them)")
    d = Path(workdir) / "sshd"
    d.mkdir(parents=True)
    d.chmod(0o700)
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    port = _free_port()
    conf = d / "sshd_config"
    conf.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(conf), "-p", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {proc.stdout.read()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within 15 s") from None
                time.sleep(0.1)
        host_pub = (d / "host_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        opts = ["-i", str(d / "client_key"), "-o", f"UserKnownHostsFile={d / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]
        yield {"target": f"{user}@127.0.0.1:{port}", "opts": opts}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        from edge_boneage.pretrained import default_model_path

        args = ["--model", str(default_model_path()), "--threads", "1,2", "--data", "rsna",
                "--rsna-dir", str(ROOT.parent / "shared" / "data" / "rsna"), "--n", "64", "--out", "runs/bench_ssh"]
    from edge_boneage.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="edge_boneage_sshd_") as tmp, loopback_sshd(tmp) as box:
        print(f"sshd on {box['target']} (loopback only); remote python: {sys.executable}", flush=True)
        argv = ["benchmark", "--device", f"ssh:{box['target']}", "--remote-python", sys.executable, *args]
        argv += [f"--ssh-opt={o}" for o in box["opts"]]
        return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
