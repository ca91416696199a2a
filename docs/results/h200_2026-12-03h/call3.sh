source tmp_dev/common.sh
gt 150 pytest_gpu tests/core/test_sweep.py tests/core/test_sweep_reuse.py
N=32 b 200 ph512 python3 $R/tmp_dev/calls.py $R 2 0 1 512
N=32 CACHE_GB=8 b 110 ph512c8 python3 $R/tmp_dev/calls.py $R 2 0 1 512
FW=2 N=5 b 70 fw2 python3 $R/tmp_dev/calls.py $R 3 0 0 512
FW=1 N=5 b 70 fw1 python3 $R/tmp_dev/calls.py $R 3 0 0 512
FW=3 N=5 b 70 fw3 python3 $R/tmp_dev/calls.py $R 3 0 0 512
