source tmp_dev/common.sh
N=40 b 150 gk_fp32 python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 35 --skip-run-sweep
N=40 b 150 gk_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 35 --skip-run-sweep --autocast fp16
N=60 b 200 busy python3 $R/benchmarks/sweep_busy.py --frames 512 --batch-size 32
