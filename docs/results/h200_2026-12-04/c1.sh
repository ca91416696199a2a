source tmp_dev/common.sh
# base: HEAD 03eda23 (the session start): its versions of the files this change touches, no known_drops.py
mkbaseH() { rm -rf /tmp/baseH && mkdir -p /tmp/baseH/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseH/v2x/ && for d in channels semcom perception; do rm /tmp/baseH/v2x/$d && cp -r $R/$d /tmp/baseH/v2x/$d; done && cp -r $R/tmp_dev/base_head/. /tmp/baseH/v2x/ && rm -f /tmp/baseH/v2x/known_drops.py; }
mkbaseH
gt 170 pytest_gpu tests/core/test_sweep.py tests/core/test_sweep_reuse.py tests/semcom/test_identity.py tests/core/test_condition_streams.py
N=75 b 210 new512a python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseH:/tmp/site b 70 base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseH:/tmp/site b 60 base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
