source tmp_dev/common.sh
# base: d1d6d8d (the pillar fix, no prefetch)
mkbaseP() { rm -rf /tmp/baseP && mkdir -p /tmp/baseP/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseP/v2x/ && cp -r $R/tmp_dev/base_pf/. /tmp/baseP/v2x/; }
mkbaseP
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 220 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_sweep.py /tmp/t/tests/perception/test_pillars.py /tmp/t/tests/perception/test_inference.py /tmp/t/tests/core/test_sweep_reuse.py ) > $OUT/p4_pytest_gpu.txt 2>&1; echo "== gpu tests rc=$?"; tail -4 $OUT/p4_pytest_gpu.txt
N=75 b 200 new512p python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseP:/tmp/site b 70 pf_base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 pf_new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseP:/tmp/site b 60 pf_base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
