source tmp_dev/common.sh
mkbaseS() { rm -rf /tmp/baseS && mkdir -p /tmp/baseS/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseS/v2x/ && cp $R/tmp_dev/base_s/*.py /tmp/baseS/v2x/ && rm -f /tmp/baseS/v2x/global_rng.py /tmp/baseS/v2x/sweep_lanes.py; }
mkbaseS
N=40 b 110 r1_new512p python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseS:/tmp/site b 60 r1_base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 50 r1_new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseS:/tmp/site b 50 r1_base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=3 b 70 r1_same_new python3 $R/tmp_dev/same_results.py run /tmp/same_new 512
N=3 PYTHONPATH=/tmp/baseS:/tmp/site b 70 r1_same_base python3 $R/tmp_dev/same_results.py run /tmp/same_base 512
N=12 b 40 r1_same_cmp python3 $R/tmp_dev/same_results.py compare /tmp/same_new /tmp/same_base
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 120 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_sweep_lanes.py /tmp/t/tests/core/test_condition_streams.py /tmp/t/tests/core/test_sweep.py -k "not lockstep" ) > $OUT/r1_pytest_gpu.txt 2>&1; echo "== gpu tests rc=$?"; tail -4 $OUT/r1_pytest_gpu.txt
