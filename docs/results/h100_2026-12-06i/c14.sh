source tmp_dev/common.sh
rm -rf /tmp/baseS && mkdir -p /tmp/baseS/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseS/v2x/ && rm /tmp/baseS/v2x/semcom && cp -r $R/tmp_dev/base_semcom/semcom /tmp/baseS/v2x/semcom && ln -s $R/semcom/assets /tmp/baseS/v2x/semcom/assets
gt 120 gpu_prec tests/semcom/test_deepjscc_precision.py tests/semcom/test_deepjscc.py
N=24 b 100 gk_new_fp32 python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 18 --skip-run-sweep
N=24 b 100 gk_new_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 18 --skip-run-sweep --codec-precision fp16
i=0; for v in "new fp32" "base fp32" "new fp16" "base fp16" "new fp32" "base fp32" "new fp16" "base fp16"; do set -- $v; i=$((i+1))
  if [ $1 = base ]; then PP=/tmp/baseS:/tmp/site; else PP=$PYTHONPATH; fi
  PYTHONPATH=$PP N=3 b 100 "ov${i}_$1_$2" python3 $R/benchmarks/sweep_overlap.py base --calls 2 --precision $2 --codec-precision $2; done
