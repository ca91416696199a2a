# the main result's digital rows and the realistic-payload sweep on the fade-aware plan
# (restores HEAD's copy of files another change has in progress first)
[ -d tmp_dev/head_files ] && cp -r tmp_dev/head_files/. .
source tmp_dev/common.sh
mkdir -p /tmp/o
N=8 b 300 main_digital python3 -m v2x.apps.sweep --config-name sweep_main data.num_frames=20 data.frames_per_sequence=2 'grid.codecs=[digital]' 'grid.fusions=[max]' output_dir=/tmp/o/main quiet=true table=false hydra.run.dir=/tmp/hydra_main_digital
N=12 b 420 payload python3 -m v2x.apps.sweep --config-name sweep_main_payload output_dir=/tmp/o/payload quiet=true plots=false table=false hydra.run.dir=/tmp/hydra_payload
cp $OUT/*.txt /tmp/o/ 2>/dev/null; tar czf $OUT/o.tgz -C /tmp o
