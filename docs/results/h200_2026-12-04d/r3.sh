source tmp_dev/common.sh
N=14 b 170 r3_bench256_b16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 256 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
N=14 b 110 r3_bench256_b32 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 256 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3
N=6 b 150 r3_b32_512a python3 $R/tmp_dev/calls_bs.py $R 2 512 32
N=6 b 70 r3_b16_512a python3 $R/tmp_dev/calls_bs.py $R 2 512 16
N=6 b 70 r3_b64_512a python3 $R/tmp_dev/calls_bs.py $R 2 512 64
N=6 b 70 r3_b32_512b python3 $R/tmp_dev/calls_bs.py $R 2 512 32
rm -rf /tmp/t && cp -r $R /tmp/t
( cd /tmp && timeout 90 python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/semcom/test_deepjscc.py /tmp/t/tests/core/test_condition_streams.py ) > $OUT/r3_pytest_gpu.txt 2>&1; echo "== gpu tests rc=$?"; tail -4 $OUT/r3_pytest_gpu.txt
