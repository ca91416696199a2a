# session 52, two GPUs: the issue-16 sweep on one GPU (warm) against both (device=all, workers kept), 512 then 2048 frames; then the digital chain at 1 Mbit per link on one and two GPUs
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P --skip-loop"
N=12 b 200 two_gpu_512 python3 $R/benchmarks/bench_sweep.py $A --frames 512 --devices all
left 330 && N=12 b 230 two_gpu_2048 python3 $R/benchmarks/bench_sweep.py $A --frames 2048 --devices all
S="python3 $R/benchmarks/bench_sweep.py --device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
left 480 && N=12 b 110 two_gpu_digital $S --devices all --codecs '{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
