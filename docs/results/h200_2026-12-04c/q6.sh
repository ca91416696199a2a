source tmp_dev/common.sh
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 100 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_sweep.py -k "lockstep" ) > $OUT/q6_pytest_gpu_lockstep.txt 2>&1; echo "== gpu tests rc=$?"; tail -3 $OUT/q6_pytest_gpu_lockstep.txt
N=14 b 170 q6_bench256 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 256 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
