source tmp_dev/common.sh
# base: cda7e0f (known drops and the order, one store write per group): its sweep.py
mkbaseO() { rm -rf /tmp/baseO && mkdir -p /tmp/baseO/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseO/v2x/ && cp $R/tmp_dev/base_ord/sweep.py /tmp/baseO/v2x/; }
mkbaseO
N=14 b 210 bench256 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 256 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
N=75 b 170 new512a python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseO:/tmp/site b 60 base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 55 new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseO:/tmp/site b 55 base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
