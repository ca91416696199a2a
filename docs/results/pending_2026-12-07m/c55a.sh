# session 55 call 1: the issue-16 command on this GPU (frame batches posted over the scoring processes' channels); that change A/B in one process; the sweep's GPU tests
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source docs/results/pending_2026-12-07m/common.sh  # R, the CUDA env, the b and gt helpers
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=12 b 220 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3
left 330 && N=10 b 140 channel_ab python3 $R/docs/results/pending_2026-12-07m/channel_ab.py $R 3 512 32
left 370 && gt 110 gpu_tests tests/core/test_sweep.py tests/core/test_sweep_scoring.py
S="python3 $R/benchmarks/bench_sweep.py --device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
left 470 && N=14 b 110 dsweep $S --run-sweep-repeats 2 --codecs "$DC"
echo "== done at ${SECONDS}s"
