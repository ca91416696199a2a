source tmp_dev/common.sh
# base: 160b63f (known drops, the groups in the former order): its sweep.py and sweep_order.py
mkbaseK() { rm -rf /tmp/baseK && mkdir -p /tmp/baseK/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseK/v2x/ && cp $R/tmp_dev/base_kd/sweep.py $R/tmp_dev/base_kd/sweep_order.py /tmp/baseK/v2x/; }
mkbaseK
gt 150 pytest_gpu tests/core/test_sweep.py tests/core/test_sweep_reuse.py
N=75 b 200 new512a python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseK:/tmp/site b 65 base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseK:/tmp/site b 60 base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
