# session 51 (third): the loop and the batched pipeline (GPU-paced) with the detector channels-last and channels-first, on one host, alternated; kernels per frame-condition channels-last
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
N=5 b 120 loop256_last python3 $R/benchmarks/bench_sweep.py $A --frames 256 --skip-run-sweep
left 150 && N=5 b 90 loop256_first python3 $R/benchmarks/bench_sweep.py $A --frames 256 --skip-run-sweep --channels-first
left 220 && N=5 b 70 loop256_last2 python3 $R/benchmarks/bench_sweep.py $A --frames 256 --skip-run-sweep
left 280 && N=40 b 80 kernels_64 python3 $R/benchmarks/bench_sweep.py $A --frames 64 --group-kernels 8 --skip-run-sweep --skip-loop
