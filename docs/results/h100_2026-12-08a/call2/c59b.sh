# Second call on the same warm H100 (session 59): the new code's warm calls (the first call
# paid the machine's Triton compilation in c58a), the kernel ranking and the GPU tests with
# longer limits.
P=docs/results/pending_2026-12-08a
source $P/common.sh
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
N=7 b 130 dig_new2 python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 3 --codecs "$DC"
N=40 b 170 digital_kernels python3 $R/benchmarks/bench_sweep.py ${S/--frames 128/--frames 32} --run-sweep-repeats 0 --group-kernels 30 --codecs "$DC"
gt 200 gpu_tests tests/semcom/test_ldpc_minsum.py tests/core/test_accounting.py
echo "== done at ${SECONDS}s"
