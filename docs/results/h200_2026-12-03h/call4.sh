source tmp_dev/common.sh
N=40 b 200 mem512 python3 $R/tmp_dev/mem_probe.py $R 512 3
N=40 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True b 90 mem512x python3 $R/tmp_dev/mem_probe.py $R 512 3
N=40 CACHE_GB=40 b 90 mem512c40 python3 $R/tmp_dev/mem_probe.py $R 512 3
N=40 b 90 mem512b python3 $R/tmp_dev/mem_probe.py $R 512 3
