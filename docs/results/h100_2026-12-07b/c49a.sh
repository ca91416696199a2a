# session 49 (first): the issue-16 sweep with the analog change (d385dad), 512 then 256 frames, and device busy at 256
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; git log -1 --format=%h >> $OUT/gpu.txt 2>/dev/null
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
S="python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
N=30 b 200 sweep_512_cells $S --frames 512 --run-sweep-repeats 3
left 230 && N=60 b 100 busy_256 python3 $R/benchmarks/sweep_busy.py --frames 256 --batch-size 32 $P
left 320 && N=60 b 90 kernels_64 $S --frames 64 --group-kernels 14 --skip-run-sweep --skip-loop
