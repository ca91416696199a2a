# session 50 (third): the sum-of-squares GPU test; kernels per frame-condition with the operators' Python stacks; the issue-16 sweep at 512 frames with the loop
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt; git log -1 --format=%h >> $OUT/gpu.txt 2>/dev/null
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
gt 120 gpu_tests tests/semcom/test_analog_sum_of_squares.py tests/semcom/test_analog_noisy_receive.py
N=20 b 120 kernels_64 python3 $R/benchmarks/bench_sweep.py $A --frames 64 --group-kernels 16 --kernel-stacks 24 --skip-run-sweep --skip-loop
left 330 && N=30 b 200 sweep_512_cells python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 3
