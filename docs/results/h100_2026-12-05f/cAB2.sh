source tmp_dev/common.sh
rm -rf /tmp/baseS && mkdir -p /tmp/baseS/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseS/v2x/ && cp $R/tmp_dev/base_sweep_s.py /tmp/baseS/v2x/sweep.py
BS=$(python3 -c "import torch;print(16 if torch.cuda.get_device_properties(0).total_memory<100e9 else 32)")
echo "batch $BS" >> $OUT/gpu.txt
N=14 b 240 s1_bench_new python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size $BS --codecs identity analog deepjscc --run-sweep-repeats 4
N=5 PYTHONPATH=/tmp/baseS:/tmp/site b 100 s2_base python3 $R/tmp_dev/calls3.py $R 3 0 512 $BS
N=5 b 100 s3_new python3 $R/tmp_dev/calls3.py $R 3 0 512 $BS
N=5 PYTHONPATH=/tmp/baseS:/tmp/site b 100 s4_base python3 $R/tmp_dev/calls3.py $R 3 0 512 $BS
N=5 b 100 s5_new python3 $R/tmp_dev/calls3.py $R 3 0 512 $BS
N=90 b 150 s6_busy python3 $R/benchmarks/sweep_busy.py --frames 512 --batch-size $BS
if [ "$BS" = 16 ]; then N=5 b 150 s7_new_b32 python3 $R/tmp_dev/calls3.py $R 2 0 512 32; fi
