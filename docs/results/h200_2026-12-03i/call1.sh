source tmp_dev/common.sh
mkbase_ap() { rm -rf /tmp/baseA && mkdir -p /tmp/baseA/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseA/v2x/ && rm /tmp/baseA/v2x/perception && cp -r $R/perception /tmp/baseA/v2x/perception && cp $R/tmp_dev/base_ap_resample.py /tmp/baseA/v2x/perception/ap_resample.py; }
mkbase_ap
gt 130 pytest_gpu tests/core/test_sweep.py tests/core/test_sweep_reuse.py
N=40 b 200 new512a python3 $R/tmp_dev/calls.py $R 2 0 1 512
N=40 PYTHONPATH=/tmp/baseA:/tmp/site b 80 base512a python3 $R/tmp_dev/calls.py $R 2 0 1 512
N=5 b 60 new512b python3 $R/tmp_dev/calls.py $R 2 0 0 512
N=5 PYTHONPATH=/tmp/baseA:/tmp/site b 60 base512b python3 $R/tmp_dev/calls.py $R 2 0 0 512
