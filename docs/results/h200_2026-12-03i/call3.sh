source tmp_dev/common.sh
# base: this session's code before the results memo (7817d9b's sweep_rows.py / sweep.py)
rm -rf /tmp/baseM && mkdir -p /tmp/baseM/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseM/v2x/ && cp $R/tmp_dev/base_sweep_rows_m.py /tmp/baseM/v2x/sweep_rows.py && cp $R/tmp_dev/base_sweep_m.py /tmp/baseM/v2x/sweep.py
N=75 b 200 new512a python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseM:/tmp/site b 70 base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 55 new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseM:/tmp/site b 55 base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 55 new512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=12 b 130 bench128 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 128 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
