source tmp_dev/common.sh
# base H: the session start 03eda23 (its versions of every package file changed since, no known_drops.py)
mkbaseH() { rm -rf /tmp/baseH && mkdir -p /tmp/baseH/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseH/v2x/ && for d in channels semcom perception; do rm /tmp/baseH/v2x/$d && cp -r $R/$d /tmp/baseH/v2x/$d; done && cp -r $R/tmp_dev/base_head/. /tmp/baseH/v2x/ && rm -f /tmp/baseH/v2x/known_drops.py; }
# base O: cda7e0f (one store write per group): its sweep.py
mkbaseO() { rm -rf /tmp/baseO && mkdir -p /tmp/baseO/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseO/v2x/ && cp $R/tmp_dev/base_ord/sweep.py /tmp/baseO/v2x/; }
mkbaseH; mkbaseO
N=5 b 130 new512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=3 b 50 same_new python3 $R/tmp_dev/same_results.py run /tmp/same_new 512
N=3 PYTHONPATH=/tmp/baseH:/tmp/site b 50 same_base python3 $R/tmp_dev/same_results.py run /tmp/same_base 512
N=8 b 30 same_cmp python3 $R/tmp_dev/same_results.py compare /tmp/same_new /tmp/same_base
N=5 PYTHONPATH=/tmp/baseO:/tmp/site b 45 base512c python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 b 45 new512d python3 $R/tmp_dev/calls2.py $R 2 0 512
N=5 PYTHONPATH=/tmp/baseO:/tmp/site b 45 base512d python3 $R/tmp_dev/calls2.py $R 2 0 512
