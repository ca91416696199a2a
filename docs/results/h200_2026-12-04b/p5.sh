source tmp_dev/common.sh
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 250 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_sweep.py -k "side_stream or lockstep or budget_leaves" ) > $OUT/p5_pytest_gpu_sweep.txt 2>&1; echo "== rc=$?"; tail -4 $OUT/p5_pytest_gpu_sweep.txt
( cd /tmp && timeout 150 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/perception/test_pillars.py /tmp/t/tests/perception/test_inference.py ) > $OUT/p5_pytest_gpu_perception.txt 2>&1; echo "== rc=$?"; tail -4 $OUT/p5_pytest_gpu_perception.txt
