# session 50 (fourth): where the copies come from (kernel profile with the operators' Python frames); AP workers 8 against 14 at 512 frames, alternated in one process
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 $P"
N=4 b 100 stacks_64 python3 $R/benchmarks/bench_sweep.py $A --codecs identity deepjscc analog --frames 64 --group-kernels 6 --kernel-stacks 14 --skip-run-sweep --skip-loop
left 250 && N=8 b 170 cells_ab python3 $R/tmp_dev/cells_ab.py $R 3 512 32 8 14
