# session 53 call 2: which part of the booking slows the device-paced groups (ledger rows, detections' scoring); on an H200 also the issue-16 command
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=12 b 150 book_parts_ab python3 $R/tmp_dev/book_parts_ab.py $R 3 512 32
if nvidia-smi -L | grep -q H200; then
left 200 && N=12 b 240 issue16_h200 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3
fi
