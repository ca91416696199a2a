# sourced on the device machine from the repository root
R=$PWD
source scripts/gpu_env.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt
# b LIMIT NAME cmd... : run with a time limit, output to $OUT/NAME.txt, print its tail
b() { local lim=$1 name=$2; shift 2; ( cd /tmp && timeout $lim "$@" ) > $OUT/$name.txt 2>&1; echo "== $name rc=$? $(date +%T)"; tail -n ${N:-6} $OUT/$name.txt; }
# gt LIMIT NAME pytest-paths... : GPU tests from a copy of the repo
gt() { local lim=$1 name=$2; shift 2; rm -rf /tmp/t && cp -r $R /tmp/t && ( cd /tmp && timeout $lim python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml "${@/#//tmp/t/}" ) > $OUT/$name.txt 2>&1; echo "== $name rc=$? $(date +%T)"; tail -n 8 $OUT/$name.txt; }
# base copy: /tmp/baseX with package v2x whose datasets/frame.py is tmp_dev/base_frame.py
mkbase() { rm -rf /tmp/baseX && mkdir -p /tmp/baseX/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseX/v2x/ && rm /tmp/baseX/v2x/datasets && cp -r $R/datasets /tmp/baseX/v2x/datasets && cp $R/tmp_dev/base_frame.py /tmp/baseX/v2x/datasets/frame.py; }
# base copy with a real perception folder whose nms.py is tmp_dev/base_nms.py
mkbase_nms() { rm -rf /tmp/baseN && mkdir -p /tmp/baseN/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseN/v2x/ && rm /tmp/baseN/v2x/perception && cp -r $R/perception /tmp/baseN/v2x/perception && cp $R/tmp_dev/base_nms.py /tmp/baseN/v2x/perception/nms.py; }
