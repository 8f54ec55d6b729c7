"""Photos per second: ``veil blur --jobs 2`` against the Ray pipeline
(:func:`veil.ray.anonymize_dataset`) with 1 and 2 actors, on the same photos,
in one run; and what starting Ray costs.

* photos: the first ``--count`` (default 200) photos of
  ``../shared/data/faces/wider/images`` by name (WIDER FACE val, about
  1024 px wide: below veil's 1024 px cap, so one detector pass each); where
  that folder is absent, ``--count`` variants of the two fixture photos
  (resized to 320-1024 px);
* the command: ``python -m veil blur PHOTOS... --out-dir OUT --jobs 2``, one
  process as a user runs it, so its start-up (imports, the model) is
  included; CPU is that process's user + system time (``os.wait4``);
* Ray: a local cluster started here (``ray.init(num_cpus=2,
  include_dashboard=False)`` on 127.0.0.1), whose start is timed on its
  own ("Ray start"); then one pipeline per pool size into a fresh folder,
  timed from the call to the last report row, so each includes starting its
  actors and their onnxruntime sessions ("pipeline start-up" is the same
  call on one photo); CPU is the user + system time of this process and of
  every process below it (raylet, workers, actors), sampled from /proc
  every 0.1 s; "Ray idle" is that CPU over 10 s with nothing submitted;
* every Ray output is checked byte for byte against the command's.

Run: ``python benches/bench_ray.py [--count N]`` (needs ``veil[ray]``:
``pip install -r requirements-ray.txt``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDER = ROOT.parent / "shared" / "data" / "faces" / "wider" / "images"
FIXTURES = ROOT / "tests" / "fixtures"

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to Ray's servers


def photos(count: int, scratch: Path) -> list:
    if WIDER.is_dir():
        found = sorted(p for p in WIDER.rglob("*.jpg"))[:count]
        if len(found) == count:
            return found
    from PIL import Image

    made = []
    sources = [Image.open(FIXTURES / "portrait.jpg"), Image.open(FIXTURES / "two_faces.jpg")]
    for i in range(count):
        im = sources[i % 2].copy()
        side = 320 + (i * 37) % 704
        im = im.resize((side, round(side * im.height / im.width)), Image.LANCZOS)
        path = scratch / f"photo{i:03d}.jpg"
        im.save(path, quality=85)
        made.append(path)
    return made


class CpuMeter:
    """User + system seconds of this process and all processes below it,
    including ones that exit before the end (sampled every 0.1 s)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.kinds: dict = {}
        self.base = self._sample()
        self.last = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict:
        stats, children = {}, {}
        own = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
            children.setdefault(int(fields[1]), []).append(int(entry))
        mine, todo = {}, [own]
        while todo:
            pid = todo.pop()
            if pid in stats:
                mine[pid] = stats[pid][1]
                if self.kinds.get(pid) not in ("driver", "actors"):  # a worker becomes an actor later
                    self.kinds[pid] = "driver" if pid == own else self._kind(pid)
            todo.extend(children.get(pid, []))
        return mine

    @staticmethod
    def _kind(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            return "ray"
        return "actors" if b"Anonymizer" in cmd else "ray"

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.last.update(self._sample())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.last.update(self._sample())
        self.split = {}
        for pid, v in self.last.items():
            kind = self.kinds.get(pid, "ray")
            self.split[kind] = self.split.get(kind, 0.0) + (v - self.base.get(pid, 0)) / self.tick
        return sum(self.split.values())


def run_command(paths: list, out: Path) -> tuple:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "veil", "blur", *map(str, paths), "--out-dir", str(out), "--jobs", "2", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"veil blur failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    opts = parser.parse_args()
    try:
        import ray
    except ImportError:
        print("bench_ray: Ray is not installed (pip install -r requirements-ray.txt); skipped")
        return 0
    from veil.ray import anonymize_dataset

    scratch = Path(tempfile.mkdtemp(prefix="veil-bench-ray-"))
    try:
        paths = photos(opts.count, scratch)
        source = "WIDER FACE val (shared data)" if WIDER.is_dir() and str(paths[0]).startswith(str(WIDER)) else "fixture variants"
        print(f"{len(paths)} photos from {source}; {os.cpu_count()} CPUs (shared machine: compare same-run ratios)")

        rows = []
        wall, cpu = run_command(paths, scratch / "cli")
        rows.append(("veil blur --jobs 2", wall, cpu))

        meter = CpuMeter()
        start = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        ray_start = time.perf_counter() - start
        ray_start_cpu = meter.stop()
        ray.data.DataContext.get_current().enable_progress_bars = False
        meter = CpuMeter()
        time.sleep(10)
        idle_cpu = meter.stop() / 10

        meter = CpuMeter()
        start = time.perf_counter()
        anonymize_dataset([str(paths[0])], str(scratch / "one"), actors=1, progress=False)
        one = time.perf_counter() - start
        one_cpu = meter.stop()

        splits = []
        want = {p.name: p.read_bytes() for p in (scratch / "cli").iterdir() if p.is_file()}
        for actors in (1, 2):
            out = scratch / f"ray{actors}"
            meter = CpuMeter()
            start = time.perf_counter()
            report = anonymize_dataset([str(p) for p in paths], str(out), actors=actors, progress=False)
            wall = time.perf_counter() - start
            cpu = meter.stop()
            assert report["summary"]["done"] == len(paths), report["failed"][:3]
            got = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
            same = got == want
            rows.append((f"Ray pipeline, {actors} actor{'s' if actors > 1 else ''}", wall, cpu, same))
            splits.append((actors, meter.split))
        ray.shutdown()

        base = rows[0][1]
        print()
        print("| run | wall s | photos/s | vs --jobs 2 | CPU s | CPU s/photo | bytes = command's |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for row in rows:
            name, wall, cpu = row[:3]
            same = "yes" if len(row) == 3 or row[3] else "NO"
            print(f"| {name} | {wall:.1f} | {len(paths) / wall:.2f} | {base / wall:.2f}x | {cpu:.1f} | "
                  f"{cpu / len(paths):.3f} | {same} |")
        print()
        print(f"Ray start (ray.init, local, 2 CPUs): {ray_start:.1f} s wall, {ray_start_cpu:.1f} CPU s")
        for actors, split in splits:
            parts = ", ".join(f"{k} {split.get(k, 0.0):.1f}" for k in ("actors", "driver", "ray"))
            print(f"CPU s with {actors} actor(s): {parts} (driver: this process, Ray Data's executor; "
                  "ray: raylet, GCS, other workers)")
        print(f"Ray idle (its own processes, nothing submitted): {idle_cpu:.2f} CPU s per second")
        print(f"pipeline start-up (1 photo, 1 actor: actor + onnxruntime session + 1 photo): {one:.1f} s wall, "
              f"{one_cpu:.1f} CPU s")
        return 0 if all(len(r) == 3 or r[3] for r in rows) else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
