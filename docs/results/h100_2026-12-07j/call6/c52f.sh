# session 52 (sixth): auto at fp16 / fp16 on the final code (lockstep or not, memory); the issue-16 command with its loop
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
N=6 b 150 auto_check python3 $R/tmp_dev/auto_check.py $R 3 512 32
left 300 && N=30 b 200 sweep_512_cells python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 3
