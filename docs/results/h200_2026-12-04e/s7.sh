source tmp_dev/common.sh
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 150 python3 -m pytest -q -p no:randomly -p no:cacheprovider -m gpu --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/perception/test_train.py /tmp/t/tests/core/test_sweep.py -k "not lockstep and not two_workers" ) > $OUT/s7_pytest_gpu_final.txt 2>&1; echo "== tests rc=$?"; tail -4 $OUT/s7_pytest_gpu_final.txt
