# session 46 call 3: on an H200 first the fp16 issue-16 sweep x3; then the digital chain through run_sweep (fp32 min-sum, fixed header parsing) x2 and under cProfile
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o; nvidia-smi -L > /tmp/o/gpu.txt; nproc >> /tmp/o/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
if nvidia-smi -L | grep -q H200; then
  N=9 b 170 sweep_512_fp16_x3 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
else
S="python3 $R/benchmarks/bench_sweep.py --device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
N=70 b 200 dsweep_fp32_profile $S --run-sweep-repeats 2 --profile 40 --codecs '{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir}'
fi
tar czf $O/c46c.tgz -C /tmp/o .
