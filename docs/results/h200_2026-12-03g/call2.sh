source tmp_dev/common.sh
mkbase_nms
gt 200 pytest_gpu tests/perception/test_nms_triton.py tests/perception/test_nms.py tests/core/test_sweep.py tests/core/test_condition_streams.py tests/core/test_determinism.py
for r in 1 2; do
  N=5 b 100 new$r python3 $R/tmp_dev/calls.py $R 3 0 $((r==1))
  N=5 PYTHONPATH=/tmp/baseN:/tmp/site b 100 base$r python3 $R/tmp_dev/calls.py $R 3 0 $((r==1))
done
N=30 b 90 syncs python3 $R/benchmarks/sweep_syncs.py --lines 25
N=25 b 240 big512 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
