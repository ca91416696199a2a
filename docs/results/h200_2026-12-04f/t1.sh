source tmp_dev/common.sh
gt 200 t1_pytest_gpu tests/core/test_sweep_fill.py tests/core/test_sweep.py -k "fill or side_stream or lockstep"
for x in a b c; do
N=4 FILL=1 b 75 t1_fill512$x python3 $R/tmp_dev/fill_calls.py $R 2 512
N=4 FILL=0 b 75 t1_base512$x python3 $R/tmp_dev/fill_calls.py $R 2 512
done
N=3 FILL=1 b 60 t1_same_fill python3 $R/tmp_dev/fill_same.py run /tmp/same_fill 512
N=3 FILL=0 b 60 t1_same_base python3 $R/tmp_dev/fill_same.py run /tmp/same_base 512
N=12 b 30 t1_same_cmp python3 $R/tmp_dev/same_results.py compare /tmp/same_fill /tmp/same_base
