source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o
N=8 b 260 sweep_512_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
i=0; for v in "fp32 fp32" "fp16 fp16" "fp32 fp32" "fp16 fp16"; do set -- $v; i=$((i+1)); N=1 b 100 "ov${i}_$1_$2" python3 $R/benchmarks/sweep_overlap.py base --calls 2 --precision $1 --codec-precision $2; done
tar czf $O/c15.tgz -C /tmp/o .
