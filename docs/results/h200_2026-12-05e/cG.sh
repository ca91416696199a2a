source tmp_dev/common.sh
gt 300 g1_gpu_sweep tests/core/test_sweep.py tests/core/test_sweep_reuse.py
