source tmp_dev/common.sh
rm -rf /tmp/baseL && mkdir -p /tmp/baseL/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseL/v2x/ && for f in sweep sweep_reuse sweep_workers sweep_config; do cp $R/tmp_dev/base_$f.py /tmp/baseL/v2x/$f.py; done; rm /tmp/baseL/v2x/sweep_group.py
gt 120 pytest_gpu tests/core/test_sweep.py tests/core/test_sweep_reuse.py
N=9 b 200 new512 python3 $R/tmp_dev/enc_probe.py $R 512 3
N=9 PYTHONPATH=/tmp/baseL:/tmp/site b 100 base512 python3 $R/tmp_dev/enc_probe.py $R 512 3
N=9 b 80 new512c8 python3 $R/tmp_dev/enc_probe.py $R 512 2 8
N=9 PYTHONPATH=/tmp/baseL:/tmp/site b 90 base512c8 python3 $R/tmp_dev/enc_probe.py $R 512 2 8
