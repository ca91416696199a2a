# session 56 call 1: last session's channel A/B, the issue-16 command, the sweep's GPU tests
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
P=docs/results/pending_2026-12-07n
source $P/common.sh  # R, the CUDA env, the b and gt helpers
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=10 b 150 channel_ab python3 $R/docs/results/pending_2026-12-07m/channel_ab.py $R 3 512 32
left 200 && N=12 b 200 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3
left 420 && gt 150 gpu_tests tests/core/test_sweep.py tests/core/test_sweep_scoring.py tests/core/test_worker_channel.py
echo "== done at ${SECONDS}s"
