# the fused map written in the head's dtype (fp16 detector): GPU tests, kernels, sweep end to end
# new (this tree) against base (perception/ego_fusion.py, warp_fusion_triton.py of f75c960)
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o
cp $O/gpu.txt /tmp/o/ 2>/dev/null
rm -rf /tmp/baseG && mkdir -p /tmp/baseG/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseG/v2x/ \
  && rm /tmp/baseG/v2x/perception && cp -r $R/perception /tmp/baseG/v2x/perception \
  && cp $R/tmp_dev/base_fuse16/perception (the two files at f75c960, not kept here)/*.py /tmp/baseG/v2x/perception/ && echo "base ready"
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
gt 150 gpu_fuse tests/perception/test_warp_fusion_triton.py tests/core/test_pipeline.py
left 250 && N=24 b 90 gk_new python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 24 --skip-run-sweep --precision fp16 --codec-precision fp16
left 300 && PYTHONPATH=/tmp/baseG:/tmp/site N=24 b 90 gk_base python3 $R/benchmarks/bench_sweep.py --device cuda --frames 64 --batch-size 32 --codecs deepjscc --group-kernels 24 --skip-run-sweep --precision fp16 --codec-precision fp16
i=0; for v in new base new base; do
  i=$((i+1)); left 420 || break
  if [ $v = base ]; then PP=/tmp/baseG:/tmp/site; else PP=$PYTHONPATH; fi
  PYTHONPATH=$PP N=3 b 80 "ov${i}_$v" python3 $R/benchmarks/sweep_overlap.py base --calls 2 --precision fp16 --codec-precision fp16
done
left 470 && N=6 b 110 sweep_512_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
for p in "fp16 fp16"; do set -- $p; left 540 || break; ( cd /tmp && timeout 60 python3 -m v2x.apps.sweep --config-name sweep_main data.num_frames=120 "grid.channels=[awgn]" "grid.codecs=[deepjscc]" "grid.fusions=[max]" "grid.snr_db=[-5,10]" eval.precision=$1 "++codec_options.deepjscc.precision=$2" output_dir=/tmp/o/ap_$1_$2 quiet=true table=false plots=false hydra.run.dir=/tmp/hydra_$1_$2 ) > /tmp/o/ap_$1_$2.txt 2>&1; echo "== ap rc=$?"; done
echo "== done at ${SECONDS}s"
tar czf $O/fuse16.tgz -C /tmp/o .
