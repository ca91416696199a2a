source tmp_dev/common.sh
# base: 5de743d (HEAD before the priority stream)
mkbaseQ() { rm -rf /tmp/baseQ && mkdir -p /tmp/baseQ/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseQ/v2x/ && cp -r $R/tmp_dev/base_q/. /tmp/baseQ/v2x/; }
mkbaseQ
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 240 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_device_streams.py /tmp/t/tests/core/test_sweep.py ) > $OUT/q2_pytest_gpu.txt 2>&1; echo "== gpu tests rc=$?"; tail -4 $OUT/q2_pytest_gpu.txt
N=75 b 200 q2_new512p python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseQ:/tmp/site b 70 q2_base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 q2_new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseQ:/tmp/site b 60 q2_base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 q2_new512c python3 $R/tmp_dev/calls2.py $R 2 0 512
