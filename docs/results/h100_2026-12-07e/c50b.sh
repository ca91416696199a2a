# session 50 (second): the noisy receiver's GPU test (fixed expectation); the issue-16 sweep like for like at 512 and 256 frames with the loop; phases; kernels per frame-condition
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
gt 120 gpu_tests tests/semcom/test_analog_noisy_receive.py tests/semcom/test_identity.py
N=30 b 200 sweep_512_cells python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 3
left 330 && N=30 b 110 sweep_256_cells python3 $R/benchmarks/bench_sweep.py $A --frames 256 --run-sweep-repeats 3
left 420 && N=45 b 70 phases_512 python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 2 --skip-loop --phases
left 500 && N=60 b 80 kernels_64 python3 $R/benchmarks/bench_sweep.py $A --frames 64 --group-kernels 14 --skip-run-sweep --skip-loop
