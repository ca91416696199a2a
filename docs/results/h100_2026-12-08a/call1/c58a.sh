# Prepared in session 58 for the next device call (bash docs/results/pending_2026-12-08a/c58a.sh,
# carry [".gpu-wheels", "tmp_dev/base"]). First recreate the base (git-ignored) here:
#   mkdir -p tmp_dev/base/semcom tmp_dev/base/channels && for f in semcom/digital.py \
#     semcom/digital_blocks.py semcom/digital_receiver.py semcom/harq.py semcom/ldpc_minsum.py \
#     semcom/ldpc_minsum_graph.py semcom/ldpc_minsum_torch.py channels/packets.py; do
#     git show 301f622:$f > tmp_dev/base/$f; done
# What it measures: the session's changes to the digital chain (per-row host work in one
# gather/scatter; HARQ's versions combined by gathers, not a sort-based index_add_; packets_hit
# from each packet's first use, no per-use index or atomics) A/B against the session's start
# (301f622) in alternated processes on this GPU, at 1 Mbit per link through run_sweep; the
# chain's kernels ranked again (the two that took 55 % of its device time should be gone); the
# GPU tests of the two replacements (deterministic mode on); the issue-16 command on an H200.
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
P=docs/results/pending_2026-12-08a
source $P/common.sh  # R, the CUDA env, the b and gt helpers
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
# the base: the same mapped package with the session start's files (301f622) of what changed
rm -rf /tmp/basepkg && cp -rL /tmp/pkg /tmp/basepkg && cp -r tmp_dev/base/. /tmp/basepkg/v2x/  # carried (git-ignored)
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
new() { N=7 b $1 dig_new$2 python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 3 --codecs "$DC"; }
base() { PYTHONPATH=/tmp/basepkg:/tmp/site N=7 b $1 dig_base$2 python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 3 --codecs "$DC"; }
new 110 1; base 95 1
left 215 && N=40 b 100 digital_kernels python3 $R/benchmarks/bench_sweep.py ${S/--frames 128/--frames 32} --run-sweep-repeats 0 --group-kernels 30 --codecs "$DC"
left 300 && N=45 b 90 digital_syncs python3 $R/benchmarks/sweep_syncs.py --small-model --frames 32 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --lines 40 --codecs "$DC"
left 400 && gt 90 gpu_tests tests/semcom/test_ldpc_minsum.py tests/core/test_accounting.py
if grep -q H200 $OUT/gpu.txt; then left 420 && N=12 b 175 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3; fi
echo "== done at ${SECONDS}s"
