source tmp_dev/common.sh
N=8 gt 280 g1_gpu_sweep tests/core/test_sweep.py tests/core/test_sweep_reuse.py
N=14 b 280 f1_bench_b32 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 4
