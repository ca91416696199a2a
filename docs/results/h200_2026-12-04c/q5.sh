source tmp_dev/common.sh
mkbaseG() { rm -rf /tmp/baseG && mkdir -p /tmp/baseG/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseG/v2x/ && rm /tmp/baseG/v2x/semcom && cp -r $R/semcom /tmp/baseG/v2x/semcom && cp $R/tmp_dev/base_g/semcom/*.py /tmp/baseG/v2x/semcom/ && cp $R/tmp_dev/base_g/pipeline.py $R/tmp_dev/base_g/sweep_group.py /tmp/baseG/v2x/; }
mkbaseG
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 200 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_condition_streams.py /tmp/t/tests/semcom/test_deepjscc.py /tmp/t/tests/core/test_sweep.py -k "not lockstep" ) > $OUT/q5_pytest_gpu.txt 2>&1; echo "== gpu tests rc=$?"; tail -4 $OUT/q5_pytest_gpu.txt
N=40 b 110 q5_new512p python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseG:/tmp/site b 60 q5_base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 50 q5_new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseG:/tmp/site b 50 q5_base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=3 b 70 q5_same_new python3 $R/tmp_dev/same_results.py run /tmp/same_new 512
N=3 PYTHONPATH=/tmp/baseG:/tmp/site b 70 q5_same_base python3 $R/tmp_dev/same_results.py run /tmp/same_base 512
N=12 b 40 q5_same_cmp python3 $R/tmp_dev/same_results.py compare /tmp/same_new /tmp/same_base
