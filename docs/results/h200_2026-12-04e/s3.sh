source tmp_dev/common.sh
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 520 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider -rfEs --durations=12 --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests ) > $OUT/s3_pytest_gpu_all.txt 2>&1; echo "== gpu tests rc=$?"; tail -40 $OUT/s3_pytest_gpu_all.txt
