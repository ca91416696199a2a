# session 56 call 2: the digital chain at 1 Mbit per link, one process and two workers on the GPU (each worker's step seconds)
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
P=docs/results/pending_2026-12-07n
source $P/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
vmstat -t 1 > $OUT/vmstat.txt 2>&1 & VM=$!
nvidia-smi dmon -s u -d 1 -o T > $OUT/dmon.txt 2>&1 & DM=$!
N=16 b 240 dworkers python3 $R/$P/dworkers.py $R $S --run-sweep-repeats 2 --devices cuda:0,cuda:0 --codecs "$DC"
kill $VM $DM 2>/dev/null
left 300 && N=12 b 200 issue16_again python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3
echo "== done at ${SECONDS}s"
