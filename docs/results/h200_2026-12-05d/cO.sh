source tmp_dev/common.sh
rm -rf /tmp/baseR && mkdir -p /tmp/baseR/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseR/v2x/ && cp $R/tmp_dev/base_sweep_reuse.py /tmp/baseR/v2x/sweep_reuse.py && cp $R/tmp_dev/base_sweep_batches.py /tmp/baseR/v2x/sweep_batches.py
N=12 b 270 o1_new python3 $R/tmp_dev/oom.py $R 256
N=12 PYTHONPATH=/tmp/baseR:/tmp/site b 270 o2_base python3 $R/tmp_dev/oom.py $R 256
