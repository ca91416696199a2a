source tmp_dev/common.sh
mkbaseR() { rm -rf /tmp/baseR && mkdir -p /tmp/baseR/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseR/v2x/ && cp $R/tmp_dev/base_r/results.py /tmp/baseR/v2x/results.py; }
mkbaseR
N=20 b 200 q4_busy512 python3 $R/tmp_dev/busy512.py $R 512
N=40 b 120 q4_new512p python3 $R/tmp_dev/calls2.py $R 2 1 512
N=40 PYTHONPATH=/tmp/baseR:/tmp/site b 120 q4_base512a python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 b 60 q4_new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseR:/tmp/site b 60 q4_base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
