# session 51 (second): GPU tests of the channels-last pipeline; the issue-16 sweep with the new default (channels-last) and its loop at 512 frames; channels-last against channels-first alternated in one process; phases
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
rm -rf /tmp/t && cp -r $R /tmp/t && ( cd /tmp && timeout 120 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_pipeline.py /tmp/t/tests/perception/test_inference.py ) > $OUT/gpu_tests.txt 2>&1; echo "== gpu_tests rc=$?"; tail -n 6 $OUT/gpu_tests.txt
N=30 b 200 sweep_512_cells python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 3
left 380 && N=12 b 110 chl_ab2 python3 $R/tmp_dev/chl_ab2.py $R 2 512 32
left 480 && N=45 b 70 phases_512 python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 2 --skip-loop --phases
