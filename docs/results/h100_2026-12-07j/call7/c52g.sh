# session 52 (seventh): kernels per frame-condition on the final code (float16 cache, identity and analog reading it as it is), with the costliest operators' stacks; where the device waits in a 256-frame call (groups one after another)
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
N=40 b 100 kernels_64 python3 $R/benchmarks/bench_sweep.py $A --frames 64 --group-kernels 10 --kernel-stacks 3 --skip-run-sweep --skip-loop
left 200 && N=60 b 120 gaps_256 python3 $R/benchmarks/bench_sweep.py $A --frames 256 --skip-loop --run-sweep-repeats 1 --idle-gaps
