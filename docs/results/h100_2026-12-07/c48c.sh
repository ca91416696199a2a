# session 48 (last, short): the like-for-like (1e11 Hz) issue-16 sweep, 256 frames, against a loop over the same cells
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
N=30 b 115 sweep_256_cells python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P --frames 256 --run-sweep-repeats 2
