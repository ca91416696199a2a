source tmp_dev/common.sh
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 200 python3 -m pytest -q -p no:randomly -p no:cacheprovider -m "gpu or not gpu" --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_common.py /tmp/t/tests/datasets/test_raycast.py /tmp/t/tests/core/test_determinism.py -k "device or cuda or gpu or two_processes" ) > $OUT/s6_pytest_device_check.txt 2>&1; echo "== tests rc=$?"; tail -4 $OUT/s6_pytest_device_check.txt
