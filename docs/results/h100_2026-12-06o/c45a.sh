# session 45 call 1: the issue-16 sweep fp16/fp16 and fp32 (512 frames, batches of 32); the digital chain at 1 Mbit per link (3 processes, minsum-fp16) with the undecodable-block bound on and off
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o; nvidia-smi -L > /tmp/o/gpu.txt; nproc >> /tmp/o/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
N=8 b 230 sweep_512_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
left 330 && N=8 b 110 sweep_512_fp32 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3
D="python3 $R/benchmarks/profile_digital_payload.py --device cuda --links 64 --channels 64 --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20 --processes 3 --passes 3 --source-workers 5 --ldpc-decoder minsum-fp16"
left 440 && N=6 b 75 digital_p3_fp16_skip $D --skip-undecodable on
left 515 && N=6 b 75 digital_p3_fp16_noskip $D --skip-undecodable off
tar czf $O/c45a.tgz -C /tmp/o .
