# DeepJSCC's decoded maps in the codec's dtype (fp16 / bf16 in CUDA inference): GPU tests, the
# DeepJSCC group's kernels and the sweep end to end, new (this tree) against base (the same tree
# with the files of the commit before the change: tmp_dev/base_fp16maps/ (the changed files of semcom/ and v2x/ at 9526e53, not kept here), taken from 9526e53).
# On the device machine, from the repository root (tmp_dev and the wheels carried):
#   run(command="bash tmp_dev/fp16maps.sh", carry=["tmp_dev", ".gpu-wheels"], timeout_s=600)
# Outputs: $OUT/fp16maps.tgz (every file of /tmp/o) and the tails printed.
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o
cp $O/gpu.txt /tmp/o/ 2>/dev/null
# base: the v2x mapping with a real semcom folder and the pre-change files over this tree's
B=$R/tmp_dev/base_fp16maps
rm -rf /tmp/baseF && mkdir -p /tmp/baseF/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseF/v2x/ \
  && rm /tmp/baseF/v2x/semcom && cp -r $R/semcom /tmp/baseF/v2x/semcom \
  && cp $B/semcom/*.py /tmp/baseF/v2x/semcom/ && cp $B/v2x/*.py /tmp/baseF/v2x/ \
  && echo "base ready" || echo "base copy FAILED"
# start a step only while the script has run less than $1 seconds (the call's limit is 600 s)
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
# 1. the GPU tests of the precision option and of DeepJSCC (the new ones included)
gt 150 gpu_prec tests/semcom/test_deepjscc_precision.py tests/semcom/test_deepjscc.py
# 2. the DeepJSCC group's kernels with the codec at fp16: destandardize_kernel writes half, the
#    fusion kernel (_fuse_at_ego_kernel) reads half; base on the same host
left 300 && N=24 b 90 gk_new_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 18 --skip-run-sweep --codec-precision fp16
left 380 && PYTHONPATH=/tmp/baseF:/tmp/site N=24 b 90 gk_base_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 18 --skip-run-sweep --codec-precision fp16
# 3. the sweep end to end (512 frames, batches of 32), processes alternated: fp32 / fp32 once,
#    then fp16 / fp16 (detector and codec) new against base
i=0; for v in "new fp32 fp32" "new fp16 fp16" "base fp16 fp16" "new fp16 fp16" "base fp16 fp16"; do
  set -- $v; i=$((i+1)); left 470 || break
  if [ $1 = base ]; then PP=/tmp/baseF:/tmp/site; else PP=$PYTHONPATH; fi
  PYTHONPATH=$PP N=3 b 80 "ov${i}_$1_$2_$3" python3 $R/benchmarks/sweep_overlap.py base --calls 2 --precision $2 --codec-precision $3
done
echo "== done at ${SECONDS}s"
tar czf $O/fp16maps.tgz -C /tmp/o .
