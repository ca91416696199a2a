# session 52 (fifth): GPU tests of the reduced-precision maps (identity and analog read them as they are); the issue-16 command on the final code; on an H100 the cache auto against 36 GB, on an H200 its phases
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
rm -rf /tmp/t && cp -r $R /tmp/t && ( cd /tmp && timeout 120 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_pipeline.py /tmp/t/tests/core/test_sweep.py /tmp/t/tests/semcom/test_identity.py -k "reduced_precision or keeping or identity or analog" ) > $OUT/gpu_tests.txt 2>&1; echo "== gpu_tests rc=$?"; tail -n 4 $OUT/gpu_tests.txt
N=30 b 200 sweep_512_cells python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 3
if nvidia-smi -L | grep -q H200; then
  left 420 && N=45 b 70 phases_512 python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 2 --skip-loop --phases
else
  left 400 && N=12 b 150 cache_ab python3 $R/tmp_dev/cache_ab.py $R 2 512 32 36
  left 500 && N=45 b 70 phases_512_36 python3 $R/benchmarks/bench_sweep.py $A --frames 512 --run-sweep-repeats 2 --skip-loop --phases --feature-cache-gb 36
fi
