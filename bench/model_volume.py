"""Model volume benchmarks: cold warm vs ``cp -r``, re-warm, ``verify --deep`` vs ``sha256sum``.

Usage: ``python bench/model_volume.py [--gb 1.0] [--files 4]``

Generates random "model" files (cached under ``bench/out/volume/mirror``), then times, in one
run and on the same files:

1. a cold warm through ``Volume`` from a ``file://`` mirror (parallel fetch, sha256 while
   copying, fsync, rename) against ``cp -r`` of the same folder (and ``cp -r`` + ``sync``, since
   the warm's copies are durable and ``cp``'s are not);
2. a re-warm of the already warm model (target: under 1 s);
3. ``verify --deep`` (sha256 of every file, both cores) against ``sha256sum`` of the same
   files, as throughput.

Page cache is warm for every contender (each reads the same files right after the other).
Cold warm and ``cp -r`` alternate over ``--repeat`` rounds, each on an emptied, synced target;
the medians are compared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blocks.volume import Volume  # noqa: E402
from profiles.catalog import ModelSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "volume"
REPO = "voxflow/bench-model"


def make_files(folder: Path, total: int, count: int) -> list[str]:
    """Random weights-like files: ``count`` shards of ``total`` bytes plus two small files."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(count)]
    shard = total // count
    for name in names:
        path = folder / name
        if not path.exists() or path.stat().st_size != shard:
            with open(path, "wb") as f:
                for _ in range(shard // (64 << 20)):
                    f.write(os.urandom(64 << 20))
                f.write(os.urandom(shard % (64 << 20)))
    (folder / "config.json").write_text('{"bench": true}\n')
    (folder / "tokenizer.json").write_bytes(os.urandom(2 << 20))
    return [*names, "config.json", "tokenizer.json"]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the model (default 1.0)")
    parser.add_argument("--files", type=int, default=4, help="weight shards (default 4)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of cp vs warm (default 5)")
    args = parser.parse_args()

    mirror = OUT / "mirror"
    folder = mirror / REPO
    files = make_files(folder, int(args.gb * (1 << 30)), args.files)
    total = sum((folder / f).stat().st_size for f in files)
    spec = ModelSpec(
        name="bench-model",
        source="file:///nonexistent/bench-model",  # only the mirror can serve it
        revision="bench",
        files=tuple(files),
        format="safetensors",
        repo_id=REPO,
    )
    copy_dst = OUT / "cp-copy"
    store_root = OUT / "store"
    run(["cat", *(str(folder / f) for f in files)])  # same page-cache state for everyone

    def fresh() -> None:
        for path in (copy_dst, store_root):
            shutil.rmtree(path, ignore_errors=True)
        os.sync()  # nothing of the last round left to write back

    # Rounds alternate the contenders on the same files; the median of each is reported (a
    # shared virtual disk varies by 2x from one write to the next).
    cps, cp_syncs, colds = [], [], []
    for _ in range(args.repeat):
        fresh()
        cps.append(timed(lambda: run(["cp", "-r", str(folder), str(copy_dst)])))
        cp_syncs.append(cps[-1] + timed(os.sync))
        fresh()
        store = Volume(root=str(store_root), mirrors=[f"file://{mirror}"])
        colds.append(timed(lambda: store.warm(spec)))  # noqa: B023 (called at once)
    cp, cp_sync, cold = (statistics.median(t) for t in (cps, cp_syncs, colds))
    os.sync()
    rewarm = timed(lambda: store.warm(spec))

    paths = [str(store.locate(spec) / f) for f in files]
    sha = timed(lambda: run(["sha256sum", *paths]))
    deep = timed(lambda: store.verify(spec, deep=True))

    mb = total / 1e6
    print(
        f"model: {len(files)} files, {mb:.0f} MB; {os.cpu_count()} cores; median of {args.repeat}"
    )
    print(f"cp -r              {cp:7.2f} s  {mb / cp:7.0f} MB/s")
    print(f"cp -r + sync       {cp_sync:7.2f} s  {mb / cp_sync:7.0f} MB/s")
    print(f"cold warm (mirror) {cold:7.2f} s  {mb / cold:7.0f} MB/s")
    print(f"re-warm (present)  {rewarm:7.3f} s")
    print(f"sha256sum          {sha:7.2f} s  {mb / sha:7.0f} MB/s")
    print(f"verify --deep      {deep:7.2f} s  {mb / deep:7.0f} MB/s")
    print()
    print(f"cold warm / cp -r          = {cold / cp:.2f}x  (target <= 1.3x)")
    print(f"cold warm / (cp -r + sync) = {cold / cp_sync:.2f}x")
    print(f"re-warm                    = {rewarm:.3f} s  (target < 1 s)")
    print(f"verify --deep throughput / sha256sum = {sha / deep:.2f}x  (target >= 0.8x)")
    shutil.rmtree(copy_dst, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
