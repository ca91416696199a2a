source tmp_dev/common.sh
mkbaseS() { rm -rf /tmp/baseS && mkdir -p /tmp/baseS/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseS/v2x/ && for d in perception; do rm /tmp/baseS/v2x/$d && cp -r $R/$d /tmp/baseS/v2x/$d; done && cp -r $R/tmp_dev/base_head/. /tmp/baseS/v2x/; }
mkbaseS
N=14 b 100 det_new python3 $R/benchmarks/bench_detector.py --device cuda --modes eager triton --budget-s 70
N=14 PYTHONPATH=/tmp/baseS:/tmp/site b 100 det_base python3 $R/benchmarks/bench_detector.py --device cuda --modes eager triton --budget-s 70
