source tmp_dev/common.sh
mkbaseU() { rm -rf /tmp/baseU && mkdir -p /tmp/baseU/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseU/v2x/ && rm /tmp/baseU/v2x/datasets && cp -r $R/datasets /tmp/baseU/v2x/datasets && cp $R/tmp_dev/base_u/store.py /tmp/baseU/v2x/datasets/ && cp $R/tmp_dev/base_u/loading.py /tmp/baseU/v2x/; }
mkbaseU
N=5 b 170 s2_new512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseU:/tmp/site b 60 s2_base512a python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 50 s2_new512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseU:/tmp/site b 50 s2_base512b python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 50 s2_new512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseU:/tmp/site b 50 s2_base512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=3 b 50 s2_same_new python3 $R/tmp_dev/same_results.py run /tmp/same_new 512
N=3 PYTHONPATH=/tmp/baseU:/tmp/site b 50 s2_same_base python3 $R/tmp_dev/same_results.py run /tmp/same_base 512
N=12 b 30 s2_same_cmp python3 $R/tmp_dev/same_results.py compare /tmp/same_new /tmp/same_base
ls /dev/shm >> $OUT/gpu.txt
