source tmp_dev/common.sh
mkbaseT() { rm -rf /tmp/baseT && mkdir -p /tmp/baseT/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseT/v2x/ && cp $R/tmp_dev/base_t/*.py /tmp/baseT/v2x/; }
mkbaseT
N=5 b 150 r2_new512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseT:/tmp/site b 60 r2_base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 50 r2_new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseT:/tmp/site b 50 r2_base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 50 r2_new512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseT:/tmp/site b 50 r2_base512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=3 b 60 r2_same_new python3 $R/tmp_dev/same_results.py run /tmp/same_new 512
N=3 PYTHONPATH=/tmp/baseT:/tmp/site b 60 r2_same_base python3 $R/tmp_dev/same_results.py run /tmp/same_base 512
N=12 b 30 r2_same_cmp python3 $R/tmp_dev/same_results.py compare /tmp/same_new /tmp/same_base
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 100 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_sweep.py /tmp/t/tests/core/test_pipeline.py -k "not lockstep" ) > $OUT/r2_pytest_gpu.txt 2>&1; echo "== gpu tests rc=$?"; tail -4 $OUT/r2_pytest_gpu.txt
