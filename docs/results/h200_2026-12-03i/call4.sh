source tmp_dev/common.sh
# base: the session start (c010801): its ap_resample.py, average_precision.py, sweep.py, sweep_rows.py
rm -rf /tmp/base0 && mkdir -p /tmp/base0/v2x && cp -r /tmp/pkg/v2x/. /tmp/base0/v2x/ && rm /tmp/base0/v2x/perception && cp -r $R/perception /tmp/base0/v2x/perception && cp $R/tmp_dev/base0_ap_resample.py $R/tmp_dev/base0_average_precision.py /tmp/base0/v2x/perception/ && for f in ap_resample average_precision; do mv /tmp/base0/v2x/perception/base0_$f.py /tmp/base0/v2x/perception/$f.py; done && cp $R/tmp_dev/base0_sweep.py /tmp/base0/v2x/sweep.py && cp $R/tmp_dev/base0_sweep_rows.py /tmp/base0/v2x/sweep_rows.py
N=75 b 200 new512a python3 $R/tmp_dev/calls2.py $R 2 1 512
N=5 PYTHONPATH=/tmp/base0:/tmp/site b 65 base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 55 new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/base0:/tmp/site b 55 base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
