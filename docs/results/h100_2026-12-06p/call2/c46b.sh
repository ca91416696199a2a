# session 46 call 2: the digital chain at ~1 Mbit per link through run_sweep (bench_sweep, small detector on the ±25.6 m grid, 1 GHz, max fusion), fp32 min-sum with the loop, then minsum-fp16; the fp16 issue-16 sweep x3
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o; nvidia-smi -L > /tmp/o/gpu.txt; nproc >> /tmp/o/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
S="python3 $R/benchmarks/bench_sweep.py --device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9"
N=12 b 200 dsweep_fp32_loop $S --run-sweep-repeats 3 --codecs '{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir}'
left 230 && N=8 b 110 dsweep_fp16 $S --skip-loop --run-sweep-repeats 3 --codecs '{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
left 350 && N=9 b 200 sweep_512_fp16_x3 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
tar czf $O/c46b.tgz -C /tmp/o .
