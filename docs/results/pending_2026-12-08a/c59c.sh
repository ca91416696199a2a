# Third call on the same warm H100 (session 59): the cyclic repeats of MCS 0-2 added by slices
# instead of scatter_add_ (a sort in CUDA's deterministic mode) A/B against the code before
# (tmp_dev/base2: HEAD's semcom/fec.py, carried), alternated processes; the host's time under cProfile; the kernels ranked again.
P=docs/results/pending_2026-12-08a
source $P/common.sh
rm -rf /tmp/basepkg && cp -rL /tmp/pkg /tmp/basepkg && cp -r tmp_dev/base2/. /tmp/basepkg/v2x/
DC='{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir, ldpc_decoder: minsum-fp16}'
S="--device cuda --model pillars_center --small-model --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max --bandwidth-hz 1e9 --skip-loop"
new() { N=5 b $1 dig_new$2 python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 2 --codecs "$DC"; }
base() { PYTHONPATH=/tmp/basepkg:/tmp/site N=5 b $1 dig_base$2 python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 2 --codecs "$DC"; }
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
# a fresh machine compiles the Triton kernels in its first process: warm the cache first
N=2 b 150 warmup python3 $R/benchmarks/bench_sweep.py ${S/--frames 128/--frames 16} --run-sweep-repeats 0 --codecs "$DC"
N=20 b 100 digital_profile python3 $R/benchmarks/bench_sweep.py $S --run-sweep-repeats 1 --profile 60 --codecs "$DC"
left 200 && new 75 1; left 215 && base 75 1
echo "== done at ${SECONDS}s"
