source tmp_dev/common.sh
mkbase_nms
gt 150 pytest_gpu tests/perception/test_nms_triton.py tests/perception/test_nms.py tests/core/test_condition_streams.py
for r in 1 2; do
  N=5 b 100 new$r python3 $R/tmp_dev/calls.py $R 3 0 $((r==1))
  N=5 PYTHONPATH=/tmp/baseN:/tmp/site b 100 base$r python3 $R/tmp_dev/calls.py $R 3 0 $((r==1))
done
N=8 b 150 big512 python3 $R/tmp_dev/calls.py $R 1 0 1 512
SPY=$(ls /tmp/site/bin/py-spy 2>/dev/null || find /tmp/site -name py-spy -type f | head -1); chmod +x $SPY; echo "py-spy: $SPY"
( cd /tmp && timeout 100 $SPY record --threads --idle --nonblocking --rate 100 --format raw -o /tmp/spy_raw.txt -- python3 $R/tmp_dev/calls.py $R 3 0 0 ) > $OUT/spy_run.txt 2>&1; echo "spy rc=$?"
python3 $R/benchmarks/pyspy_summary.py /tmp/spy_raw.txt --thread MainThread --under run_sweep > $OUT/spy_main.txt 2>&1; tail -n 30 $OUT/spy_main.txt
( cd /tmp && timeout 100 $SPY record --threads --gil --nonblocking --rate 200 --format raw -o /tmp/gil_raw.txt -- python3 $R/tmp_dev/calls.py $R 3 0 0 ) > $OUT/gil_run.txt 2>&1; echo "gil rc=$?"
python3 $R/benchmarks/pyspy_summary.py /tmp/gil_raw.txt --by-thread > $OUT/gil_by_thread.txt 2>&1; tail -n 30 $OUT/gil_by_thread.txt
