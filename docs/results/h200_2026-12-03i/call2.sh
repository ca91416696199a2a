source tmp_dev/common.sh
# base: the session's bootstrap (1b633cf's perception) without the results writer (614115b's sweep.py / results.py)
rm -rf /tmp/baseW && mkdir -p /tmp/baseW/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseW/v2x/ && cp $R/tmp_dev/base_sweep_w.py /tmp/baseW/v2x/sweep.py && cp $R/tmp_dev/base_results_w.py /tmp/baseW/v2x/results.py && rm /tmp/baseW/v2x/results_writer.py
N=70 b 220 new512a python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/baseW:/tmp/site b 70 base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseW:/tmp/site b 60 base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 60 new512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=30 b 150 gaps64 python3 $R/tmp_dev/gaps.py $R 64
