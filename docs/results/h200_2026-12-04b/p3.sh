source tmp_dev/common.sh
# base: the session start 45615e8 (its pillars.py, sweep.py, sweep_reuse.py, sweep_batches.py)
mkbaseS() { rm -rf /tmp/baseS && mkdir -p /tmp/baseS/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseS/v2x/ && for d in perception; do rm /tmp/baseS/v2x/$d && cp -r $R/$d /tmp/baseS/v2x/$d; done && cp -r $R/tmp_dev/base_head/. /tmp/baseS/v2x/; }
mkbaseS
N=5 b 200 new512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseS:/tmp/site b 70 base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseS:/tmp/site b 60 base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=3 b 90 same_new python3 $R/tmp_dev/same_results.py run /tmp/same_new 512
N=3 PYTHONPATH=/tmp/baseS:/tmp/site b 90 same_base python3 $R/tmp_dev/same_results.py run /tmp/same_base 512
N=12 b 60 same_cmp python3 $R/tmp_dev/same_results.py compare /tmp/same_new /tmp/same_base
N=12 b 150 bench256 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 256 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 3
