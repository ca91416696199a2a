# session 56 call 1: last session's channel A/B (its warm calls: the issue-16 figure on this GPU), the sweep's GPU tests, two digital workers on one GPU (each worker's step seconds, CPU and GPU use beside them)
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
P=docs/results/h100_2026-12-07o  # (run as pending_2026-12-07n, with channel_ab.py then in pending_2026-12-07m)
source $P/common.sh  # R, the CUDA env, the b and gt helpers
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=10 b 140 channel_ab python3 $R/$P/channel_ab.py $R 3 512 32
left 250 && gt 110 gpu_tests tests/core/test_sweep.py tests/core/test_sweep_scoring.py tests/core/test_worker_channel.py
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
vmstat -t 1 > $OUT/vmstat.txt 2>&1 & VM=$!
nvidia-smi dmon -s u -d 1 -o T > $OUT/dmon.txt 2>&1 & DM=$!
left 360 && N=16 b $((575 - SECONDS)) dworkers python3 $R/$P/dworkers.py $R $S --run-sweep-repeats 2 --devices cuda:0,cuda:0 --codecs "$DC"
kill $VM $DM 2>/dev/null
echo "== done at ${SECONDS}s"
