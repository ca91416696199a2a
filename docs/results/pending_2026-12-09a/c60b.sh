# The issue-16 command on an H200 (a call of its own, timeout 600; carry [".gpu-wheels"]):
# 512 frames, fp16 / fp16, every payload on time; the loop over the sweep's cells, the batched
# pipeline and three run_sweep calls. Last measured on an H200 in session 46 (mean 4,665 at the
# default budget); like for like best 4,557-4,618 on an H100 (session 54).
P=docs/results/pending_2026-12-09a
source $P/common.sh
nvidia-smi -L > $OUT/gpu.txt
N=12 b 560 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3
