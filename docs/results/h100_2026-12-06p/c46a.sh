# session 46 call 1 (any card): digital 1 Mbit one process under cProfile + device-idle trace; 3 processes fp16; the fp16 issue-16 sweep x3
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o; nvidia-smi -L > /tmp/o/gpu.txt; nproc >> /tmp/o/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
D="python3 $R/benchmarks/profile_digital_payload.py --device cuda --links 64 --channels 64 --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20"
N=4 b 90 digital_p1_profile $D --source-workers 8 --profile 60
left 100 && N=4 b 90 digital_p1_trace $D --source-workers 8 --profile 10 --trace /tmp/o/digital_trace.json
left 200 && (cd /tmp && timeout 60 python3 $R/benchmarks/trace_idle.py /tmp/o/digital_trace.json > /tmp/o/digital_idle.txt 2>&1; rm -f /tmp/o/digital_trace.json; tail -5 /tmp/o/digital_idle.txt)
left 270 && N=6 b 70 digital_p3 $D --processes 3 --passes 3 --source-workers 5 --ldpc-decoder minsum-fp16
left 350 && N=9 b 200 sweep_512_fp16_x3 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
tar czf $O/c46a.tgz -C /tmp/o .
