source tmp_dev/common.sh
N=12 b 200 probe512 python3 $R/tmp_dev/enc_probe.py $R 512 3
N=12 b 200 probe1024 python3 $R/tmp_dev/enc_probe.py $R 1024 1
