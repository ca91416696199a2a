# session 52 (fourth): the groups' peak reserved memory (batches of 32, no cache); auto with the working-set factor 1.6 (fp32 at 256 frames, fp16 at 512)
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=12 b 150 mem_reserved python3 $R/tmp_dev/mem_probe.py $R 64 32
left 250 && N=8 b 200 factor_16 python3 $R/tmp_dev/factor_probe.py $R 1.6
