# session 54 call 1: the issue-16 command on this GPU (host copies queued behind an event); that change A/B in one process; the sweep's GPU tests
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=12 b 200 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3
left 280 && N=10 b 130 hostcopy_ab python3 $R/tmp_dev/hostcopy_ab.py $R 3 512 32
left 400 && gt 110 gpu_tests tests/core/test_sweep.py -k "cuda"
echo "== done at ${SECONDS}s"
