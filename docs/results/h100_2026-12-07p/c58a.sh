# session 58: the digital chain's per-row host work in one gather/scatter and numpy tallies (A/B
# against the session's base, files in base/, alternated processes on this GPU); then where
# the chain's device time goes (--group-kernels, cProfile), the BLER-table decoder, and the
# issue-16 command where an H200 came
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
P=docs/results/pending_2026-12-08a
source $P/common.sh  # R, the CUDA env, the b and gt helpers
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
# the base: the same mapped package with the four files of the session's start
rm -rf /tmp/basepkg && cp -rL /tmp/pkg /tmp/basepkg && cp $P/base/*.py /tmp/basepkg/v2x/semcom/
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
for k in 1 2; do
  left 330 && N=7 b 100 dig_new$k python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 3 --codecs "$DC"
  left 330 && PYTHONPATH=/tmp/basepkg:/tmp/site N=7 b 100 dig_base$k python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 3 --codecs "$DC"
done
left 330 && N=40 b 200 digital_kernels python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 1 --group-kernels 30 --profile 45 --codecs "$DC"
FC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: chase, decoder: fast}'
left 480 && N=12 b 90 digital_fast python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 3 --codecs "$FC"
if grep -q H200 $OUT/gpu.txt; then left 400 && N=12 b 180 issue16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --precision fp16 --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3; fi
echo "== done at ${SECONDS}s"
