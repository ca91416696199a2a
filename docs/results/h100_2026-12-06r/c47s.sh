# session 47 (short): the issue-16 sweep (fp16/fp16, 512 frames, batches of 32) with every payload on time (1e11 Hz, with the loop), then at the default budget (same host)
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
S="python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16"
N=16 b 210 sweep_512_fp16_onair $S --run-sweep-repeats 3 --bandwidth-hz 1e11
left 240 && N=10 b 110 sweep_512_fp16_default $S --run-sweep-repeats 3 --skip-loop
