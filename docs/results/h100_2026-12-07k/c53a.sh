# session 53 call 1: the issue-16 command (with its loop) on the current code; the frames hash behind the hand-over A/B; the digital chain at 1 Mbit per link through run_sweep x3, then under cProfile and the idle-gap view
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=12 b 240 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3
left 250 && N=14 b 100 hash_ab python3 $R/tmp_dev/hash_ab.py $R 3 512 32
left 340 && N=8 b 90 defer_ab python3 $R/tmp_dev/defer_ab.py $R 2 512 32
S="python3 $R/benchmarks/bench_sweep.py --device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
left 420 && N=14 b 170 dsweep $S --run-sweep-repeats 2 --devices cuda:0,cuda:0 cuda:0,cuda:0,cuda:0 --codecs "$DC"
