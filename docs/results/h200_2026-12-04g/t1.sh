source tmp_dev/common.sh
N=14 b 330 t1_loop512b32 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 4
N=14 b 230 t1_loop512b16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
