"""``python hash_ab.py <repo> <rounds> <frames> <batch>``: warm issue-16 run_sweep calls
(fp16 / fp16, 1e11 Hz) alternating the frames' hash behind the hand-over (the code) and inline
(the reference: each frame hashed on the frames thread before it is handed out), in one process."""
import sys
from pathlib import Path

repo, rounds, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

from v2x.loading import FrameStream  # noqa: E402

behind_read, behind_hash = FrameStream._read, FrameStream._hash


def inline_read(self, read):
    def hashed_first():
        for frame in read():
            self._digest.add(frame)
            with self._changed:
                self._hashed += 1
            yield frame

    behind_read(self, hashed_first)


def no_hash(self):
    return


def use(name):
    FrameStream._read, FrameStream._hash = (
        (behind_read, behind_hash) if name == "behind" else (inline_read, no_hash)
    )


run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
variants = ["behind", "inline"]
rates = {name: [] for name in variants}
for name in variants:
    use(name)
    print(f"first {name}: {bench_run_sweep(run)['fc_per_s']:.1f}", flush=True)
for r in range(rounds):
    for name in (variants if r % 2 == 0 else variants[::-1]):
        use(name)
        s = bench_run_sweep(run)
        rates[name].append(s["fc_per_s"])
        print(f"round {r} {name}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
for name, rs in rates.items():
    print(f"{name}: " + " ".join(f"{x:.0f}" for x in rs) + f" mean {sum(rs) / len(rs):.0f}")
