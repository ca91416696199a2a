# prepared in session 56 for the next device call (session 57: issue16 only on an H200; the digital chain also under cProfile and with the BLER-table decoder, device work against host work): the issue-16 command on this GPU (an H200 is what the goal names); which kernels keep the GPU busy in the digital chain at 1 Mbit per link (two workers on one GPU found it running a kernel in 98-100 % of their seconds, one process 59-66 %)
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
P=docs/results/pending_2026-12-08a
source $P/common.sh  # R, the CUDA env, the b and gt helpers
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
if grep -q H200 $OUT/gpu.txt; then N=12 b 220 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3; fi
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
left 300 && N=40 b 260 digital_kernels python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 1 --group-kernels 30 --profile 45 --codecs "$DC"
FC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: chase, decoder: fast}'
left 450 && N=12 b 100 digital_fast python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 3 --codecs "$FC"
echo "== done at ${SECONDS}s"
