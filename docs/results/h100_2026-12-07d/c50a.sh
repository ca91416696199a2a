# session 50 (first): the relaxed CUDA test of the noisy receiver; a same-host A/B of the issue-16 sweep (old code e7581c5 vs HEAD) at 256 frames; where run_sweep's time goes
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
O=$R/tmp_dev/old
# the old tree: HEAD's files with e7581c5's versions of the ten that changed since (bench_analog_receive is new)
rm -rf /tmp/oldtree && mkdir /tmp/oldtree && for d in v2x datasets perception semcom channels conf benchmarks; do cp -r $R/$d /tmp/oldtree/; done
cp -r $O/. /tmp/oldtree/ && rm -f /tmp/oldtree/benchmarks/bench_analog_receive.py && O=/tmp/oldtree
rm -rf /tmp/pkgold && mkdir -p /tmp/pkgold/v2x && cp -r $O/v2x/. /tmp/pkgold/v2x/
for d in datasets perception semcom channels conf; do ln -s "$O/$d" "/tmp/pkgold/v2x/$d"; done
P="--bandwidth-hz 1e11 --precision fp16 --codec-precision fp16"
A="--device cuda --checkpoint shipped --batch-size 32 --codecs identity analog deepjscc $P"
gt 120 gpu_tests tests/semcom/test_analog_noisy_receive.py
N=30 b 130 new_256_cells python3 $R/benchmarks/bench_sweep.py $A --frames 256 --run-sweep-repeats 3
left 300 && N=12 b 80 old_256 env PYTHONPATH=/tmp/pkgold:/tmp/site python3 $O/benchmarks/bench_sweep.py $A --frames 256 --run-sweep-repeats 4 --skip-loop
left 380 && N=40 b 80 new_256_phases python3 $R/benchmarks/bench_sweep.py $A --frames 256 --run-sweep-repeats 4 --skip-loop --phases
left 460 && N=12 b 80 old_256b env PYTHONPATH=/tmp/pkgold:/tmp/site python3 $O/benchmarks/bench_sweep.py $A --frames 256 --run-sweep-repeats 4 --skip-loop
