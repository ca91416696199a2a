# Prepared in session 59 for the next device call (bash docs/results/pending_2026-12-09a/c60a.sh,
# carry [".gpu-wheels", "tmp_dev/base2"], timeout 600). First recreate the base (git-ignored):
#   mkdir -p tmp_dev/base2/semcom tmp_dev/base2/channels && for f in channels/packets.py \
#     semcom/base.py semcom/digital_blocks.py semcom/digital_receiver.py semcom/digital_stream.py \
#     semcom/fec.py semcom/harq.py semcom/undecodable.py; do git show c82ee73:$f > tmp_dev/base2/$f; done
# Order (session 60): the trace first after the tests, since its report now charges the device's
# time (kernels and each kind of copy) to the project function that queued it: the
# 2,672 us per frame-condition of pageable device-to-host copies in the fifty-ninth session's
# kernel table have no known source yet.
# What it measures: session 59's changes to the digital chain against its start (c82ee73), in
# alternated processes at 1 Mbit per link through run_sweep: the block code's cyclic repeats
# (MCS 0-2) added by slices instead of scatter_add_ (a sort with a host sync in CUDA's
# deterministic mode: 3,063 us of the chain's 9,898 us of kernels per frame-condition on an H100),
# and host syncs removed from each codec call (HARQ's tallies, the byte weights, the delivered
# cells, the MCS copied without waiting for the device's queue; the receiver's maps and a map's
# levels in one copy each). First the GPU tests of the changed code; then the chain's host time
# under cProfile and the device's idle time by host function (where the device waits on the
# host); its kernels ranked again (on an H100; on an H200 run c60b.sh, the issue-16 command,
# next). A fresh machine compiles the Triton kernels in its first process (about a minute): the
# warm-up takes that, so that no timed process pays it.
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
P=docs/results/pending_2026-12-09a
source $P/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
rm -rf /tmp/basepkg && cp -rL /tmp/pkg /tmp/basepkg && cp -r tmp_dev/base2/. /tmp/basepkg/v2x/
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
new() { N=5 b $1 dig_new$2 python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 2 --codecs "$DC"; }
base() { PYTHONPATH=/tmp/basepkg:/tmp/site N=5 b $1 dig_base$2 python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 2 --codecs "$DC"; }
N=2 b 150 warmup python3 $R/benchmarks/bench_sweep.py ${S/--frames 128/--frames 16} --run-sweep-repeats 0 --codecs "$DC"
gt 100 gpu_tests tests/semcom/test_undecodable.py tests/semcom/test_digital.py tests/semcom/test_nr_standard.py tests/semcom/test_qam_triton.py tests/core/test_accounting.py tests/core/test_condition_streams.py
N=60 b 90 digital_gaps python3 $R/benchmarks/bench_sweep.py ${S/--frames 128/--frames 32} --run-sweep-repeats 0 --trace /tmp/dtrace.json --idle-gaps --codecs "$DC"
new 80 1; base 80 1; left 420 && { new 80 2; base 80 2; }
left 420 && N=20 b 90 digital_profile python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 1 --profile 60 --codecs "$DC"
if grep -q H200 $OUT/gpu.txt; then
  echo "== the issue-16 command: run it in a call of its own (c60b.sh)"
else
  left 500 && N=40 b 90 digital_kernels python3 $R/benchmarks/bench_sweep.py ${S/--frames 128/--frames 32} --run-sweep-repeats 0 --group-kernels 30 --kernel-stacks 15 --codecs "$DC"
fi
echo "== done at ${SECONDS}s"
