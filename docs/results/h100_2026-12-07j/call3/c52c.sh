# session 52 (third): each group's device working set per precision (batches of 32, no cache); the issue-16 sweep with a fixed 36 GB cache (sequential groups) against auto (lockstep), alternated
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=20 b 200 mem_probe python3 $R/tmp_dev/mem_probe.py $R 64 32
left 330 && N=12 b 200 cache_ab python3 $R/tmp_dev/cache_ab.py $R 2 512 32 36
