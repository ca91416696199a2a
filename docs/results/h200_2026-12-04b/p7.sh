source tmp_dev/common.sh
N=12 b 230 p7_bench256 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 256 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
