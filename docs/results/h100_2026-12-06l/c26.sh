# after c25's killed first sweep left a process holding GPU memory: free it, then new vs base again
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
sleep 2; nvidia-smi --query-gpu=memory.used --format=csv
source tmp_dev/common.sh
i=0; for v in new base new base; do i=$((i+1)); if [ $v = base ]; then PP=/tmp/baseG:/tmp/site; else PP=$PYTHONPATH; fi
PYTHONPATH=$PP N=1 b 55 "ovb${i}_$v" python3 $R/benchmarks/sweep_overlap.py base --calls 2 --precision fp16 --codec-precision fp16; done
N=3 b 75 sweep_512_fp16b python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
