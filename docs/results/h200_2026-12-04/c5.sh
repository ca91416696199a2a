source tmp_dev/common.sh
N=14 b 170 bench256 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 256 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
N=4 b 60 pytest_gpu python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir $R -c $R/pyproject.toml $R/tests/core/test_sweep.py -k budget_leaves
