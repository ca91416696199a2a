# session 49 (short): the noisy receiver against the two kernels; the GPU tests of this session's CUDA paths; the issue-16 sweep at 256 frames
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
S="python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
N=12 b 60 analog_receive python3 $R/benchmarks/bench_analog_receive.py
gt 130 gpu_tests tests/semcom/test_analog_noisy_receive.py tests/semcom/test_identity.py tests/core/test_condition_streams.py tests/perception/test_warp_fusion_triton.py
left 185 && N=30 b 110 sweep_256_cells $S --frames 256 --run-sweep-repeats 2
