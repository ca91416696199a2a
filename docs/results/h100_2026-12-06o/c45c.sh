# session 45 call 2 (warm H100): GPU tests of the bound; the fp16 issue-16 sweep again; digital on/off again
source tmp_dev/common.sh
mkdir -p /tmp/o2; O=$OUT; OUT=/tmp/o2; nvidia-smi -L > /tmp/o2/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
gt 80 gpu_tests tests/semcom/test_undecodable.py tests/semcom/test_harq.py
left 150 && N=5 b 90 sweep_512_fp16_b python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
D="python3 $R/benchmarks/profile_digital_payload.py --device cuda --links 64 --channels 64 --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20 --processes 3 --passes 3 --source-workers 5 --ldpc-decoder minsum-fp16"
left 260 && N=5 b 40 d_noskip2 $D --skip-undecodable off
left 300 && N=5 b 40 d_skip2 $D --skip-undecodable on
left 340 && N=5 b 40 d_noskip3 $D --skip-undecodable off
left 380 && N=5 b 40 d_skip3 $D --skip-undecodable on
tar czf $O/c45c.tgz -C /tmp/o2 .
