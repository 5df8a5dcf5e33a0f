"""Re-running `archivectl put DIR`: the first run over N files, then the same command again
(every file already archived), through the whole stack as a user runs it.

    python -m tools.bench.put_rerun [--files 10000] [--size 10240] [--out FILE]

`archive up` runs under a temporary directory (nats-server with sync_interval: always,
ingest, search, sealing, the gateway); `archivectl put DIR --json` runs as its own process,
twice. The raw baseline of the re-run is what it cannot avoid: reading and hashing every file
(SHA-256, one core), measured in the same run. Ratios: first run over re-run (the issue asks
for at least 5) and re-run over the hashing floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from archive.envfile import read_env_file
from archive.natsserver import free_port
from tools.bench.report import emit

PDF_HEADER = b"%PDF-1.7\n"
ARCHIVECTL = (sys.executable, "-m", "tools.archivectl")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}


def _start_stack(root: Path) -> subprocess.Popen[bytes]:
    env = _clean_env()
    env.update(
        ARCHIVE_DATA_DIR=str(root / "data"),
        ARCHIVE_GATEWAY_PORT=str(free_port()),
        ARCHIVE_NATS_PORT=str(free_port()),
        ARCHIVE_LOG_LEVEL="WARNING",
    )
    log = (root / "launcher.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.launcher", "up"],
        env=env,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while "archive is up" not in (root / "launcher.out").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((root / "launcher.out").read_text(errors="replace"))
        time.sleep(0.2)
    return process


def _put(env_file: Path, folder: Path) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    done = subprocess.run(
        [*ARCHIVECTL, "--env-file", str(env_file), "put", str(folder), "--json"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"archivectl put exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, [json.loads(line) for line in done.stdout.splitlines()]


def _hash_all(folder: Path) -> float:
    started = time.perf_counter()
    for path in sorted(folder.iterdir()):
        hashlib.sha256(path.read_bytes()).hexdigest()
    return time.perf_counter() - started


def bench(files: int, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-put-") as tmp:
        root = Path(tmp)
        folder = root / "statements"
        folder.mkdir()
        for i in range(files):
            (folder / f"statement-{i:05}.pdf").write_bytes(PDF_HEADER + os.urandom(size))
        stack = _start_stack(root)
        try:
            env_file = root / "data" / "archive.env"
            assert read_env_file(env_file)["ARCHIVE_TOKEN"]
            first_s, first = _put(env_file, folder)
            rerun_s, rerun = _put(env_file, folder)
            hash_s = _hash_all(folder)
        finally:
            stack.send_signal(signal.SIGINT)
            try:
                stack.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
    if sum(not line["replayed"] for line in first) != files:
        raise RuntimeError("the first run did not deposit every file as new")
    if not all(line["replayed"] for line in rerun) or len(rerun) != files:
        raise RuntimeError("the re-run deposited something again")
    return {
        "benchmark": "archivectl put DIR, then the same command again",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "what": "whole stack through the gateway (archive up), archivectl as its own process",
        "files": files,
        "file_bytes": size + len(PDF_HEADER),
        "first_run": {"seconds": round(first_s, 2), "files_per_s": round(files / first_s)},
        "rerun": {"seconds": round(rerun_s, 2), "files_per_s": round(files / rerun_s)},
        "raw": {
            "sha256_every_file": {"seconds": round(hash_s, 2), "files_per_s": round(files / hash_s)}
        },
        "ratio_first_over_rerun": round(first_s / rerun_s, 2),
        "ratio_rerun_over_hashing": round(rerun_s / hash_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_240, help="random bytes per file")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    emit(bench(args.files, args.size), args.out)


if __name__ == "__main__":
    main()
