source tmp_dev/common.sh
mkbase
N=40 b 200 busy python3 $R/benchmarks/sweep_busy.py
for r in 1 2; do
  N=14 b 120 new$r python3 $R/tmp_dev/calls.py $R 2 0 $((r==1))
  N=14 PYTHONPATH=/tmp/baseX:/tmp/site b 120 base$r python3 $R/tmp_dev/calls.py $R 2 0 $((r==1))
  N=14 b 120 thr$r python3 $R/tmp_dev/calls.py $R 2 4 $((r==1))
done
gt 150 pytest_gpu tests/datasets/test_store.py tests/core/test_sweep.py
