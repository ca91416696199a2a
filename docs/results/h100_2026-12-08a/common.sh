# sourced on the device machine from the repository root
R=$PWD
source scripts/gpu_env.sh
# b LIMIT NAME cmd... : run with a time limit, output to $OUT/NAME.txt, print its tail
b() { local lim=$1 name=$2; shift 2; ( cd /tmp && timeout $lim "$@" ) > $OUT/$name.txt 2>&1; echo "== $name rc=$? $(date +%T)"; tail -n ${N:-6} $OUT/$name.txt; }
# gt LIMIT NAME pytest-paths... : GPU tests from a copy of the repo
gt() { local lim=$1 name=$2; shift 2; rm -rf /tmp/t && cp -r $R /tmp/t && ( cd /tmp && timeout $lim python3 -m pytest -q -m gpu -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml "${@/#//tmp/t/}" ) > $OUT/$name.txt 2>&1; echo "== $name rc=$? $(date +%T)"; tail -n 8 $OUT/$name.txt; }
