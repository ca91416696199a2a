source tmp_dev/common.sh
gt 150 gpu_prec tests/semcom/test_deepjscc_precision.py tests/semcom/test_deepjscc.py
for p in fp16 bf16; do N=30 b 120 gk_codec_$p python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 25 --skip-run-sweep --codec-precision $p; done
i=0; for v in "fp32 fp32" "fp32 fp16" "fp16 fp16" "fp32 fp32" "fp32 fp16"; do set -- $v; i=$((i+1)); N=3 b 110 "ov${i}_$1_$2" python3 $R/benchmarks/sweep_overlap.py base --calls 2 --precision $1 --codec-precision $2; done
