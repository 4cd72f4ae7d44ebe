#!/usr/bin/env bash
# mmp-decode --interp / --crop-pct / --crop-round and mmp-augment --interp from
# the shell (the pixels themselves are checked against Pillow, torchvision,
# transformers, open_clip and timm by test_image_interp and
# tests/py/test_clip_preprocess.py): the defaults write what they wrote before
# the options existed, each option reaches the pixels and the header, the
# two programs agree (decode --size S --crop-pct P == decode at native size,
# then augment --resize floor(S/P) --center-crop S), bad values give one line.
set -u
command -v mmp-decode >/dev/null || { echo "no mmp-decode on PATH"; exit 77; }
command -v mmp-cat >/dev/null || { echo "no mmp-cat on PATH"; exit 77; }
fx="$MMP_ROOT/tests/fixtures/image"
[ -f "$fx/clip/224x227.jpg" ] || { echo "no fixtures"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
recs() { mmp-cat --full "$1" | tail -n +2; }
hdr() { mmp-cat --header "$1"; }
mkdir -p ds/x
cp "$fx"/clip/*.jpg "$fx"/src_a.png "$fx"/src_b.png ds/x/

# defaults: same records and header keys as an explicit --interp bilinear --crop-round torchvision
mmp-decode ds --size 24 -o def.mmp || fail "decode"
mmp-decode ds --size 24 --interp bilinear --crop-round torchvision -o exp.mmp || fail "decode explicit"
diff <(recs def.mmp) <(recs exp.mmp) > /dev/null || fail "explicit defaults change the pixels"
for k in image.interp image.crop_pct image.crop_round; do
  hdr def.mmp | grep -q "\"$k\"" && fail "default header has $k"
done
hdr def.mmp | grep -q '"image.preprocess":"torchvision Resize(size) + CenterCrop(size) on PIL (Pillow bilinear, antialiased)"' ||
  fail "default image.preprocess changed: $(hdr def.mmp)"

# bicubic reaches the pixels and the header, for --size and --resize
mmp-decode ds --size 24 --interp bicubic -o bic.mmp || fail "decode bicubic"
diff <(recs def.mmp) <(recs bic.mmp) > /dev/null && fail "--interp bicubic changed nothing"
hdr bic.mmp | grep -q '"image.interp":"bicubic"' || fail "no image.interp: $(hdr bic.mmp)"
mmp-decode ds --resize 13x9 -o r1.mmp && mmp-decode ds --resize 13x9 --interp lanczos -o r2.mmp || fail "--resize"
diff <(recs r1.mmp) <(recs r2.mmp) > /dev/null && fail "--interp lanczos did not reach --resize"
hdr r2.mmp | grep -q '"image.preprocess":"Pillow resize((W,H), LANCZOS)"' || fail "--resize header: $(hdr r2.mmp)"

# --crop-round hf: 224x227.jpg at 224 crops rows 1.. instead of 2.. (227 - 224 = 3);
# 500x375.jpg resizes to 298x224: 74 / 2 = 37 either way
mmp-decode ds --size 224 --interp bicubic -o tv.mmp || fail "decode 224"
mmp-decode ds --size 224 --interp bicubic --crop-round hf -o hf.mmp || fail "decode hf"
one() { recs "$1" | grep "/$2\"" || fail "no record $2 in $1"; }
[ "$(one tv.mmp 224x227.jpg)" != "$(one hf.mmp 224x227.jpg)" ] || fail "--crop-round hf did not move the 224x227 crop"
[ "$(one tv.mmp 500x375.jpg)" = "$(one hf.mmp 500x375.jpg)" ] || fail "--crop-round hf moved the 500x375 crop"
hdr hf.mmp | grep -q '"image.crop_round":"hf"' || fail "no image.crop_round"

# --crop-pct 0.875 at 24: Resize(27) + CenterCrop(24) == mmp-augment --resize 27 --center-crop 24
mmp-decode ds --size 24 --interp bicubic --crop-pct 0.875 -o pct.mmp || fail "decode --crop-pct"
hdr pct.mmp | grep -q '"image.crop_pct":"0.875"' || fail "no image.crop_pct: $(hdr pct.mmp)"
hdr pct.mmp | grep -q 'Resize(27 = floor(size / crop_pct))' || fail "crop_pct preprocess: $(hdr pct.mmp)"
mmp-decode ds -o native.mmp || fail "decode native"
mmp-augment native.mmp --resize 27 --center-crop 24 --interp bicubic -o aug1.mmp || fail "augment --interp"
mmp-augment native.mmp --resize 27,interp=bicubic --center-crop 24 -o aug2.mmp || fail "augment interp="
diff <(recs pct.mmp) <(recs aug1.mmp) > /dev/null || fail "decode --crop-pct != augment --interp bicubic --resize 27 --center-crop 24"
diff <(recs aug1.mmp) <(recs aug2.mmp) > /dev/null || fail "augment --interp != interp="
mmp-cat --header aug1.mmp | grep -q 'resize(27,interp=bicubic) center_crop(24)' || fail "augment description: $(hdr aug1.mmp)"
mmp-augment native.mmp --resize 27 --center-crop 24 -o aug3.mmp || fail "augment bilinear"
diff <(recs aug1.mmp) <(recs aug3.mmp) > /dev/null && fail "augment --interp bicubic changed nothing"
# --rrc takes it too (same seed: same boxes, other filter)
mmp-augment native.mmp --rrc 16 --seed 3 -o rrc1.mmp && mmp-augment native.mmp --rrc 16,interp=bicubic --seed 3 -o rrc2.mmp ||
  fail "augment --rrc"
diff <(recs rrc1.mmp) <(recs rrc2.mmp) > /dev/null && fail "--rrc interp=bicubic changed nothing"

# bad values: one line, non-zero exit
expect() { # expected-message command...
  local want=$1; shift
  local err; err=$("$@" 2>&1 > /dev/null) && fail "accepted: $*"
  [ "$(echo "$err" | wc -l)" = 1 ] || fail "not one line: $err"
  echo "$err" | grep -qF -- "$want" || fail "message of $*: $err (want $want)"
}
expect "value for --crop-pct out of range: 1.5" mmp-decode ds --size 24 --crop-pct 1.5
expect "value for --crop-pct out of range: 0" mmp-decode ds --size 24 --crop-pct 0
expect "--crop-pct needs --size" mmp-decode ds --resize 4x4 --crop-pct 0.9
expect "--crop-round needs --size" mmp-decode ds --crop-round hf
expect "bad value for --interp: cubic" mmp-decode ds --size 24 --interp cubic
expect "bad value for --interp: nearest" mmp-augment native.mmp --interp nearest --resize 4
expect "bad value for --resize: interp=bi" mmp-augment native.mmp --resize 4,interp=bi
expect "--center-crop: unknown option 'interp'" mmp-augment native.mmp --center-crop 4,interp=bicubic
echo ok
