# session 52 (second): GPU tests of the kept float16 maps (pipeline, sweep) and the channels-last pipeline; the feature cache as it now is against float32 maps, alternated, 512 frames; the issue-16 command with its loop
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
rm -rf /tmp/t && cp -r $R /tmp/t && ( cd /tmp && timeout 150 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_pipeline.py /tmp/t/tests/core/test_sweep.py -k "reduced_precision or channels_last or keeping" ) > $OUT/gpu_tests.txt 2>&1; echo "== gpu_tests rc=$?"; tail -n 8 $OUT/gpu_tests.txt
N=12 b 200 kept_ab python3 $R/tmp_dev/kept_ab.py $R 2 512 32
left 330 && N=30 b 230 sweep_512_cells python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 3
