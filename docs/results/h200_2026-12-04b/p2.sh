source tmp_dev/common.sh
N=120 b 400 p2_idle64 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 64 --batch-size 16 --codecs deepjscc --fusions max --idle-gaps --group-kernels 15 --run-sweep-repeats 2
