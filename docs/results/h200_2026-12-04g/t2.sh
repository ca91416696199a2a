source tmp_dev/common.sh
N=15 b 520 t2_pytest_gpu python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir $R -c $R/pyproject.toml $R/tests
