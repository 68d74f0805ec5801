#!/usr/bin/env bash
# bench/run.sh: "registry -> populated rootfs directory", this project
# against its peers and the machine's floors, on one machine (issue #6).
# docs/performance.md explains what it measures and how to read the table;
# run "bench/run.sh --help" for the options.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: bench/run.sh [--help]

Times "registry -> populated rootfs directory" for this project's unpack,
crane export | tar -x, skopeo copy + umoci raw unpack, containerd's
ctr image pull (native snapshotter), and the floors (download of the
blobs to /dev/null, pigz -dc | tar -x of the blobs from local disk); also
a warm unpack against tar -x of the uncompressed layers, and
rebuild --all --check (when the CLI has it) against decompression alone.
Every run starts from an empty cache and an empty target; tools alternate
within each round. Prints one Markdown table (medians of wall time, CPU
time and peak RSS, and the ratios of this project to each peer), then the disk
used after unpack (rootfs, state directory, store; round 1) with and
without the layer blobs, and saves it with the raw numbers to
bench/results/DATE[-small].{md,tsv,disk.tsv}.

It installs what is missing (Debian packages docker-registry, skopeo,
umoci, containerd, pigz, zstd, time, curl; crane with go install), starts
its own registry and containerd on loopback / in temporary directories,
and stops them on exit. Needs root for apt-get, containerd and mounting
the tmpfs.

Environment:
  BENCH_RUNS=N       rounds per image (default 5)
  BENCH_SMALL=1      reduced images for a smoke test (a subtree of GOROOT
                     instead of all of it, 64 MiB instead of 1 GiB)
  BENCH_ON_DISK=1    write targets, stores and layouts under
                     $BENCH_WORK/out on disk instead of a tmpfs (shows
                     write and fsync costs; the disk drifts run to run)
  BENCH_IMAGES="a c" subset of the images, in this order (default "a b c d"):
                       a  many files: GOROOT as one gzip layer + 2 layers with
                          modified files, whiteouts and opaque directories
                       b  big file: 1 GiB of random data + 512 MiB of text
                       c  many layers: GOROOT cut into 40 gzip layers
                       d  image a with zstd layers
                       e  image a with uncompressed (plain tar) layers
                       f  Debian-like: the root filesystem BENCH_DEBIAN_TREE
                          as one gzip layer + a layer deleting
                          /usr/share/{man,locale} and adding the 5
                          largest libraries again (not in the default)
  BENCH_TOOLS="..."  subset of: ocifetch ocifetch-noblobs crane skopeo-umoci
                     containerd download pigz-tar tar-x decompress
                     (default all; ocifetch includes the warm unpack,
                     rebuild --check and, in round 1, gc --unpacked;
                     ocifetch-noblobs is unpack --keep-blobs=false)
  BENCH_DEBIAN_TREE=DIR  the root filesystem of image f, e.g. made by
                     debootstrap --variant=minbase bookworm DIR, then
                     rm -rf DIR/var/cache/apt/archives/*.deb
                     DIR/var/lib/apt/lists/* (as Debian's images do)
  BENCH_WORK=DIR     work directory: cached images, logs, on-disk outputs
                     (default /var/tmp/ocifetch-bench)
  BENCH_BIN=FILE     the oci-image-docker-registry-fetch binary to time
                     (default: built from this checkout)
  BENCH_TIMEOUT=S    give up on one measurement after S seconds (default 1800)
  BENCH_GC_UNPACKED=0  skip gc --unpacked (round 1 of ocifetch; it
                     recompresses every layer whole, about 19 MB/s of tar
                     at gzip's default level)
EOF
}

case "${1:-}" in
-h | --help | help)
	usage
	exit 0
	;;
"") ;;
*)
	usage >&2
	exit 2
	;;
esac

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-5}
SMALL=${BENCH_SMALL:-0}
ON_DISK=${BENCH_ON_DISK:-0}
IMAGES=${BENCH_IMAGES:-a b c d}
ALL_TOOLS="ocifetch ocifetch-noblobs crane skopeo-umoci containerd download pigz-tar tar-x decompress"
TOOLS=${BENCH_TOOLS:-$ALL_TOOLS}
WORK=${BENCH_WORK:-/var/tmp/ocifetch-bench}
BIN=${BENCH_BIN:-}
TIMEOUT=${BENCH_TIMEOUT:-1800}
GC_UNPACKED=${BENCH_GC_UNPACKED:-1}

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$RUNS'"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer, not '$TIMEOUT'"
for i in $IMAGES; do
	[[ $i =~ ^[abcdef]$ ]] || die "BENCH_IMAGES: unknown image '$i' (a b c d e f)"
done
DEBIAN_TREE=${BENCH_DEBIAN_TREE:-}
if [[ " $IMAGES " == *" f "* ]]; then
	[ -d "$DEBIAN_TREE/usr/lib" ] || die "image f needs BENCH_DEBIAN_TREE, a root filesystem (see --help)"
	DEBIAN_TREE=$(cd "$DEBIAN_TREE" && pwd)
fi
for t in $TOOLS; do
	[[ " $ALL_TOOLS " == *" $t "* ]] || die "BENCH_TOOLS: unknown tool '$t' ($ALL_TOOLS)"
done
[ -n "$IMAGES" ] || die "BENCH_IMAGES is empty"
[ -n "$TOOLS" ] || die "BENCH_TOOLS is empty"

selected() { [[ " $TOOLS " == *" $1 "* ]]; }
image_selected() { [[ " $IMAGES " == *" $1 "* ]]; }

START_SECONDS=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$WORK"/{bin,images,logs}
WORK=$(cd "$WORK" && pwd)
LOGDIR=$WORK/logs/$STAMP
mkdir -p "$LOGDIR"

# Everything started or made for this run is undone on exit.
REGISTRY_PID=""
CTD_PID=""
MOUNTED=""
TMP_DIRS=()
stop_containerd() {
	if [ -n "$CTD_PID" ]; then
		kill "$CTD_PID" 2>/dev/null || true
		wait "$CTD_PID" 2>/dev/null || true
		CTD_PID=""
	fi
}
cleanup() {
	set +e
	stop_containerd
	if [ -n "$REGISTRY_PID" ]; then
		kill "$REGISTRY_PID" 2>/dev/null
		wait "$REGISTRY_PID" 2>/dev/null
	fi
	if ((${#TMP_DIRS[@]})); then
		rm -rf "${TMP_DIRS[@]}"
	fi
	if [ -n "$MOUNTED" ]; then
		umount "$MOUNTED" && rmdir "$MOUNTED"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. peers -------------------------------------------------------------

have() { command -v "$1" >/dev/null 2>&1; }
PKGS=()
want() { have "$1" || PKGS+=("$2"); }
want docker-registry docker-registry
want curl curl
/usr/bin/time --version 2>&1 | grep -q GNU || PKGS+=(time)
if selected skopeo-umoci; then
	want skopeo skopeo
	want umoci umoci
fi
if selected containerd; then
	want containerd containerd
	want ctr containerd
fi
if selected pigz-tar || selected decompress; then
	want pigz pigz
	image_selected d && want zstd zstd
fi
if ((${#PKGS[@]})); then
	mapfile -t PKGS < <(printf '%s\n' "${PKGS[@]}" | sort -u)
	[ "$(id -u)" = 0 ] || die "missing packages (${PKGS[*]}): install them, or run as root"
	log "installing ${PKGS[*]} (apt-get)"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >&2
fi
have go || die "go is needed to build the benchmark helper"

CRANE=""
if selected crane; then
	GOBIN_DIR=$(go env GOBIN)
	[ -n "$GOBIN_DIR" ] || GOBIN_DIR=$(go env GOPATH)/bin
	if have crane; then
		CRANE=$(command -v crane)
	elif [ -x "$GOBIN_DIR/crane" ]; then
		CRANE=$GOBIN_DIR/crane
	else
		log "installing crane v0.22.1 (go install)"
		(cd /tmp && GOFLAGS='' go install github.com/google/go-containerregistry/cmd/crane@v0.22.1)
		CRANE=$GOBIN_DIR/crane
	fi
	[ "$("$CRANE" version)" = v0.22.1 ] || log "note: $CRANE is $("$CRANE" version), the issue names v0.22.1"
fi

log "building the benchmark helper and the CLI"
BT=$WORK/bin/benchtool
(cd "$REPO_DIR" && go build -o "$BT" ./bench/benchtool)
if [ -z "$BIN" ]; then
	BIN=$WORK/bin/oci-image-docker-registry-fetch
	(cd "$REPO_DIR" && go build -o "$BIN" ./cmd/oci-image-docker-registry-fetch) ||
		die "building the CLI failed; set BENCH_BIN to a built binary"
fi
REBUILD=0
REBUILD_CMD=()
if selected ocifetch; then
	if rhelp=$("$BIN" help rebuild 2>&1); then
		REBUILD=1
		REBUILD_CMD=("$BIN" rebuild --all --check)
		if [[ $rhelp == *-store* ]]; then
			REBUILD_CMD+=(--store)
		fi
	else
		log "rebuild --all --check: not available yet"
	fi
fi

# --- 2. images ------------------------------------------------------------

GOROOT_DIR=$(go env GOROOT)
TREE=$GOROOT_DIR
PREFIX=usr/local/go
SUFFIX=""
if [ "$SMALL" = 1 ]; then
	TREE=$GOROOT_DIR/src/crypto
	PREFIX=usr/local/go/src/crypto
	SUFFIX=-small
fi
IMG_STAMP="images.go=$(sha256sum "$REPO_DIR/bench/benchtool/images.go" | cut -c1-16) $(go env GOVERSION) tree=$TREE"
declare -A LAYOUT
for img in $IMAGES; do
	dir=$WORK/images/$img$SUFFIX
	LAYOUT[$img]=$dir
	tree=$TREE prefix=$PREFIX stamp=$IMG_STAMP
	if [ "$img" = f ]; then
		tree=$DEBIAN_TREE prefix=""
		stamp="images.go=$(sha256sum "$REPO_DIR/bench/benchtool/images.go" | cut -c1-16) tree=$DEBIAN_TREE $(du -s -B1 "$DEBIAN_TREE" | cut -f1)"
	fi
	if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp" ]; then
		log "image $img: cached in $dir"
		continue
	fi
	log "image $img: building into $dir (once; reruns reuse it)"
	rm -rf "$dir" "$dir.tmp"
	small=()
	[ "$SMALL" = 1 ] && small=(-small)
	"$BT" images -image "$img" "${small[@]}" -tree "$tree" -prefix "$prefix" -out "$dir"
	echo "$stamp" >"$dir/stamp"
done

# layers_of IMG FIELD: one line per layer; fields of layers.tsv are
# mediaType digest size diffID tarSize blobPath tarPath.
layers_of() { cut -f"$2" "${LAYOUT[$1]}/layers.tsv"; }

# --- where outputs go -------------------------------------------------------

# The most one measurement holds at once, per image: the compressed blobs
# plus, for containerd's native snapshotter, a full copy of the tree for
# every layer (each snapshot copies its parent); else one tree.
NEED=0
for img in $IMAGES; do
	n=$(awk -F'\t' -v ct="$(selected containerd && echo 1 || echo 0)" '
		{ c += $3; u += $5; cum += $5; snaps += cum }
		END { m = u; if (ct && snaps > m) m = snaps; printf "%.0f", c + m + 512 * 1048576 }' "${LAYOUT[$img]}/layers.tsv")
	((n > NEED)) && NEED=$n
done
NEED_MIB=$((NEED / 1048576))
avail_mib() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }
if [ "$ON_DISK" = 1 ]; then
	OUT=$WORK/out
	rm -rf "$OUT"
	mkdir -p "$OUT"
	OUTFS="disk ($OUT, $(df -PT "$OUT" | awk 'NR == 2 { print $2 }'))"
	(($(avail_mib "$OUT") >= NEED_MIB)) || die "$OUT has $(avail_mib "$OUT") MiB free, the run needs $NEED_MIB MiB"
else
	mem_mib=$(awk '/^MemAvailable:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
	((mem_mib >= NEED_MIB + 2048)) ||
		die "a tmpfs of $NEED_MIB MiB needs more free memory than the $mem_mib MiB available; use BENCH_ON_DISK=1 or fewer images/tools"
	MNT=$WORK/tmpfs.$$
	mkdir -p "$MNT"
	if mount -t tmpfs -o "size=$((NEED_MIB + 1024))m,mode=0755" ocifetch-bench "$MNT" 2>/dev/null; then
		MOUNTED=$MNT
		OUT=$MNT
		OUTFS="tmpfs mounted at $MNT ($((NEED_MIB + 1024)) MiB)"
	else
		rmdir "$MNT"
		OUT=/dev/shm/ocifetch-bench.$$
		mkdir -p "$OUT"
		TMP_DIRS+=("$OUT")
		OUTFS="tmpfs /dev/shm ($OUT)"
		(($(avail_mib /dev/shm) >= NEED_MIB)) || die "/dev/shm has $(avail_mib /dev/shm) MiB free, the run needs $NEED_MIB MiB"
	fi
fi
mkdir -p "$OUT/tmp"
export TMPDIR=$OUT/tmp
log "outputs on $OUTFS; one measurement needs up to $NEED_MIB MiB"

# --- the registry -------------------------------------------------------------

REG_DIR=$(mktemp -d "$WORK/registry.XXXXXX")
TMP_DIRS+=("$REG_DIR")
PORT=""
for _ in 1 2 3 4 5; do
	port=$("$BT" freeport)
	cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DIR/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
health:
  storagedriver:
    enabled: false
EOF
	docker-registry serve "$REG_DIR/config.yml" >>"$LOGDIR/registry.log" 2>&1 &
	REGISTRY_PID=$!
	for _ in $(seq 100); do
		if curl -sf -o /dev/null "http://127.0.0.1:$port/v2/"; then
			PORT=$port
			break
		fi
		kill -0 "$REGISTRY_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$PORT" ] && break
	kill "$REGISTRY_PID" 2>/dev/null || true
	wait "$REGISTRY_PID" 2>/dev/null || true
	REGISTRY_PID=""
done
[ -n "$PORT" ] || die "the registry did not start; see $LOGDIR/registry.log"
REGISTRY=127.0.0.1:$PORT
log "registry (docker-registry $(docker-registry --version | awk '{ print $3 }')) on $REGISTRY"
for img in $IMAGES; do
	"$BT" push -layout "${LAYOUT[$img]}" -ref "$REGISTRY/bench/$img:latest"
done
# Warm the page cache: the registry's storage and the floors' inputs are
# read from memory in every round, the first one included.
cat "$REG_DIR"/storage/docker/registry/v2/blobs/sha256/*/*/data >/dev/null
for img in $IMAGES; do
	cat "${LAYOUT[$img]}"/blobs/sha256/* "${LAYOUT[$img]}"/tars/* >/dev/null
done

# --- containerd -----------------------------------------------------------------

# Its socket path must be short; its root (where the native snapshots, the
# rootfs, go) is on the output filesystem.
CTD_DIR=""
if selected containerd; then
	CTD_DIR=$(mktemp -d /tmp/ocb-ctd.XXXXXX)
	TMP_DIRS+=("$CTD_DIR")
	cat >"$CTD_DIR/config.toml" <<EOF
version = 2
root = "$OUT/containerd-root"
state = "$CTD_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "$CTD_DIR/containerd.sock"

[ttrpc]
  address = "$CTD_DIR/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTD_DIR/opt"
EOF
fi
start_containerd() {
	rm -rf "$OUT/containerd-root" "$CTD_DIR/state"
	containerd --config "$CTD_DIR/config.toml" >>"$LOGDIR/containerd.log" 2>&1 &
	CTD_PID=$!
	for _ in $(seq 200); do
		if ctr --address "$CTD_DIR/containerd.sock" version >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$CTD_PID" 2>/dev/null || break
		sleep 0.1
	done
	die "containerd did not start; see $LOGDIR/containerd.log"
}
# cpu_ticks PID: user and system clock ticks of a running process.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
CLK_TCK=$(getconf CLK_TCK)

# --- 3. measurements ------------------------------------------------------------

RAW=$LOGDIR/raw.tsv
: >"$RAW"
DISK=$LOGDIR/disk.tsv
: >"$DISK"
FAILURES=$LOGDIR/failures.txt
: >"$FAILURES"

settle() {
	warm_inputs
	if [ "$ON_DISK" = 1 ]; then
		sync
	fi
}

# warm_inputs reads the current image's blobs in the registry's storage
# and its blobs and tars in the cached layout back into the page cache.
# The machine may evict them between rounds (the tmpfs and containerd's
# snapshots take gigabytes), and whichever tool ran first would then pay
# for reading them from disk: that made our cold unpack of the 1 GiB image
# 1.3 s slower when it happened to go first, and would flatter the floors.
warm_inputs() {
	local hex
	while read -r hex; do
		cat "$REG_DIR/storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
	done < <(layers_of "$IMG" 2 | sed 's/^sha256://') >/dev/null
	local p
	while read -r p; do
		cat "${LAYOUT[$IMG]}/$p"
	done < <(layers_of "$IMG" 6 && layers_of "$IMG" 7) >/dev/null
}

# tree_sig DIR: the entry count and a short hash of path, type, size of
# regular files, mode, owner and link target of every entry, so that trees
# made by different tools can be compared in the table.
tree_sig() {
	local list
	list=$(cd "$1" && find . -mindepth 1 \( -type f -printf '%P f %s %m %U:%G\n' \) -o \( ! -type f -printf '%P %y %m %U:%G %l\n' \) | LC_ALL=C sort)
	printf '%s\t%s' "$(printf '%s\n' "$list" | grep -c .)" "$(printf '%s\n' "$list" | sha256sum | cut -c1-8)"
}

# measure TOOL TREE CMD...: runs CMD under GNU time, appends one line to
# the raw file (wall time from the shell's clock in ns; user, sys and max
# RSS from GNU time, which counts every process CMD waited for); in round
# 1 also the signature of TREE (a directory, or "-").
# TREE "@FUNC" means the directory FUNC prints afterwards. MEASURE_HOOK,
# if set, is called right after CMD to set EXTRA_USER, EXTRA_SYS (seconds)
# and EXTRA_RSS (KiB): what a daemon did for CMD.
EXTRA_USER=0 EXTRA_SYS=0 EXTRA_RSS=0
MEASURE_HOOK=""
measure() {
	local tool=$1 tree=$2
	shift 2
	local out=$LOGDIR/$IMG-$tool-r$ROUND.log tf=$LOGDIR/time.tmp rc=0 t0 t1
	t0=$(date +%s%N)
	/usr/bin/time -f '%e %U %S %M' -o "$tf" timeout "$TIMEOUT" "$@" >"$out" 2>&1 || rc=$?
	t1=$(date +%s%N)
	[ -z "$MEASURE_HOOK" ] || "$MEASURE_HOOK"
	local status=ok wall user sys rss entries=- sig=-
	read -r _ user sys rss < <(tail -n1 "$tf")
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	user=$(awk -v a="$user" -v b="$EXTRA_USER" 'BEGIN { printf "%.2f", a + b }')
	sys=$(awk -v a="$sys" -v b="$EXTRA_SYS" 'BEGIN { printf "%.2f", a + b }')
	((EXTRA_RSS > rss)) && rss=$EXTRA_RSS
	if ((rc != 0)); then
		status=fail
		printf 'image %s, round %d, %s: exit status %d: %s\n' "$IMG" "$ROUND" "$tool" "$rc" \
			"$(tail -n3 "$out" | tr '\n' ' ')" >>"$FAILURES"
		log "  $tool FAILED (exit $rc), see $out"
	elif [ "$ROUND" = 1 ] && [ "$tree" != - ]; then
		[[ $tree == @* ]] && tree=$("${tree#@}")
		IFS=$'\t' read -r entries sig < <(tree_sig "$tree")
	fi
	printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$IMG" "$tool" "$ROUND" "$status" \
		"$wall" "$user" "$sys" "$rss" "$entries" "$sig" >>"$RAW"
	[ "$status" = ok ] && log "  $tool: ${wall}s wall, $(awk -v a="$user" -v b="$sys" 'BEGIN { print a + b }')s CPU, $((rss / 1024)) MiB"
	EXTRA_USER=0 EXTRA_SYS=0 EXTRA_RSS=0 MEASURE_HOOK=""
	return "$rc"
}

# state_dir DIR: the state directory an unpack into DIR keeps beside it.
state_dir() { echo "$(dirname "$1")/.$(basename "$1").ocifetch"; }

# disk_usage HOW TREE STORE: in round 1, appends to the disk file the
# space (du -s -B1: allocated blocks) the tree, its state directory (and
# the shadow store in it) and the store take: image how rootfs state
# shadow store, in bytes.
disk_usage() {
	[ "$ROUND" = 1 ] || return 0
	local how=$1 tree=$2 store=$3 state sizes=() d
	state=$(state_dir "$tree")
	for d in "$tree" "$state" "$state/shadow" "$store"; do
		if [ -e "$d" ]; then
			sizes+=("$(du -s -B1 "$d" | cut -f1)")
		else
			sizes+=(0)
		fi
	done
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$IMG" "$how" "${sizes[@]}" >>"$DISK"
}

bench_ocifetch() {
	local store=$OUT/ocifetch-store cold=$OUT/ocifetch-cold warm=$OUT/ocifetch-warm
	rm -rf "$store" "$cold" "$warm" "$(state_dir "$cold")" "$(state_dir "$warm")"
	settle
	if measure ocifetch "$cold" "$BIN" unpack --quiet --store "$store" "$REF" "$cold"; then
		disk_usage keep "$cold" "$store"
		rm -rf "$cold" "$(state_dir "$cold")"
		settle
		if measure ocifetch-warm "$warm" "$BIN" unpack --quiet --store "$store" "$REF" "$warm"; then
			if ((REBUILD)); then
				settle
				local args=("${REBUILD_CMD[@]}")
				[ "${args[-1]}" = --store ] && args+=("$store")
				measure ocifetch-rebuild - "${args[@]}" "$warm" || true
			fi
			# Once per image (it recompresses every layer whole to
			# confirm its recipe): drop the blobs the warm tree makes
			# again, then put them back.
			if [ "$ROUND" = 1 ] && [ "$GC_UNPACKED" = 1 ]; then
				settle
				if measure ocifetch-gc - "$BIN" gc --unpacked --store "$store"; then
					disk_usage gc "$warm" "$store"
				fi
			fi
		fi
	fi
	rm -rf "$store" "$cold" "$warm" "$(state_dir "$cold")" "$(state_dir "$warm")"
}

# unpack --keep-blobs=false: the layers stream from the registry into
# the tree, the store keeps only the image's documents.
bench_ocifetch_noblobs() {
	local store=$OUT/ocifetch-noblobs-store dir=$OUT/ocifetch-noblobs
	rm -rf "$store" "$dir" "$(state_dir "$dir")"
	settle
	if measure ocifetch-noblobs "$dir" "$BIN" unpack --quiet --keep-blobs=false --store "$store" "$REF" "$dir"; then
		disk_usage noblobs "$dir" "$store"
	fi
	rm -rf "$store" "$dir" "$(state_dir "$dir")"
}

bench_crane() {
	local dir=$OUT/crane
	rm -rf "$dir" && mkdir -p "$dir"
	settle
	# shellcheck disable=SC2016 # expanded by the inner shell
	if measure crane "$dir" bash -c 'set -o pipefail; "$1" export --insecure "$2" - | tar -xf - -C "$3"' \
		_ "$CRANE" "$REF" "$dir"; then
		disk_usage tar-only "$dir" -
	fi
	rm -rf "$dir"
}

bench_skopeo_umoci() {
	local layout=$OUT/skopeo-layout dir=$OUT/umoci-rootfs recompress=()
	# umoci 0.4.7 refuses zstd layers ("blob is not correct mediatype:
	# application/vnd.oci.image.layer.v1.tar+zstd"): on a zstd image skopeo
	# recompresses them to gzip, which the table marks as not comparable.
	if [ "$(decompressor)" = "zstd -dcq" ]; then
		recompress=(--dest-compress-format gzip)
	fi
	rm -rf "$layout" "$dir"
	settle
	# shellcheck disable=SC2016 # expanded by the inner shell
	measure skopeo-umoci "$dir" bash -c \
		'skopeo --insecure-policy copy -q --src-tls-verify=false "${@:4}" "docker://$1" "oci:$2:bench" && umoci raw unpack --image "$2:bench" "$3"' \
		_ "$REF" "$layout" "$dir" "${recompress[@]}" || true
	rm -rf "$layout" "$dir"
}

# containerd_usage: what the daemon did while ctr ran (its CPU since
# start_containerd's reading; its peak RSS, the daemon being new).
containerd_usage() {
	local after
	after=$(cpu_ticks "$CTD_PID")
	read -r EXTRA_USER EXTRA_SYS < <(awk -v b="$CTD_BEFORE" -v a="$after" -v hz="$CLK_TCK" \
		'BEGIN { split(b, x, " "); split(a, y, " "); printf "%.2f %.2f", (y[1] - x[1]) / hz, (y[2] - x[2]) / hz }')
	EXTRA_RSS=$(awk '/^VmHWM:/ { print $2 }' "/proc/$CTD_PID/status")
}

# containerd_rootfs: the newest native snapshot, the image's rootfs.
containerd_rootfs() {
	local snaps=$OUT/containerd-root/io.containerd.snapshotter.v1.native/snapshots
	echo "$snaps/$(find "$snaps" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n1)"
}

bench_containerd() {
	start_containerd
	settle
	CTD_BEFORE=$(cpu_ticks "$CTD_PID")
	MEASURE_HOOK=containerd_usage
	measure containerd @containerd_rootfs \
		ctr --address "$CTD_DIR/containerd.sock" -n bench image pull --plain-http --snapshotter native "$REF" || true
	stop_containerd
	rm -rf "$OUT/containerd-root"
}

bench_download() {
	local args=() d
	for d in $(layers_of "$IMG" 2); do
		args+=(-o /dev/null "http://$REGISTRY/v2/bench/$IMG/blobs/$d")
	done
	settle
	measure download - curl -sS --fail "${args[@]}" || true
}

# The decompressor of the image's layers: pigz for gzip, zstd for zstd,
# cat for plain tar layers (a command line the inner shells split).
decompressor() {
	case "$(layers_of "$IMG" 1 | head -n1)" in
	*zstd) echo zstd -dcq ;;
	*gzip) echo pigz -dcq ;;
	*) echo cat ;;
	esac
}

bench_pigz_tar() {
	local dir=$OUT/pigz-tar blobs=() p
	for p in $(layers_of "$IMG" 6); do blobs+=("${LAYOUT[$IMG]}/$p"); done
	rm -rf "$dir" && mkdir -p "$dir"
	settle
	# shellcheck disable=SC2016 # expanded by the inner shell
	measure pigz-tar "$dir" bash -c \
		'set -o pipefail; dec=$1 dir=$2; shift 2; for b; do $dec -- "$b" | tar -xf - -C "$dir" || exit 1; done' \
		_ "$(decompressor)" "$dir" "${blobs[@]}" || true
	rm -rf "$dir"
}

bench_tar_x() {
	local dir=$OUT/tar-x tars=() p
	for p in $(layers_of "$IMG" 7); do tars+=("${LAYOUT[$IMG]}/$p"); done
	rm -rf "$dir" && mkdir -p "$dir"
	settle
	# shellcheck disable=SC2016 # expanded by the inner shell
	measure tar-x "$dir" bash -c 'dir=$1; shift; for t; do tar -xf "$t" -C "$dir" || exit 1; done' \
		_ "$dir" "${tars[@]}" || true
	rm -rf "$dir"
}

bench_decompress() {
	local blobs=() p
	for p in $(layers_of "$IMG" 6); do blobs+=("${LAYOUT[$IMG]}/$p"); done
	settle
	# shellcheck disable=SC2016 # expanded by the inner shell
	measure decompress - bash -c 'dec=$1; shift; for b; do $dec -- "$b" >/dev/null || exit 1; done' \
		_ "$(decompressor)" "${blobs[@]}" || true
}

read -r -a TOOL_LIST <<<"$TOOLS"
NT=${#TOOL_LIST[@]}
for IMG in $IMAGES; do
	REF=$REGISTRY/bench/$IMG:latest
	for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
		log "image $IMG, round $ROUND of $RUNS"
		# Alternate: each round starts one tool further along the list.
		for ((k = 0; k < NT; k++)); do
			tool=${TOOL_LIST[$(((k + ROUND - 1) % NT))]}
			"bench_${tool//-/_}"
		done
	done
done

# --- 4. the report ------------------------------------------------------------------

version_of() { "$@" 2>&1 | head -n1 || true; }
REPORT=$LOGDIR/report.md
{
	echo "# Benchmark: registry → populated rootfs"
	echo
	echo "Made by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - START_SECONDS)) s in all."
	echo
	if [ "$SMALL" = 1 ]; then
		echo "**BENCH_SMALL=1: reduced images, a smoke test of the script, not a measurement against the targets.**"
		echo
	fi
	echo "- settings: BENCH_RUNS=$RUNS BENCH_SMALL=$SMALL BENCH_ON_DISK=$ON_DISK BENCH_IMAGES=\"$IMAGES\" BENCH_TOOLS=\"$TOOLS\" BENCH_GC_UNPACKED=$GC_UNPACKED$([ -n "$DEBIAN_TREE" ] && echo " BENCH_DEBIAN_TREE=$DEBIAN_TREE")"
	echo "- outputs: $OUTFS; registry: docker-registry on $REGISTRY, storage on $(df -PT "$REG_DIR" | awk 'NR == 2 { print $2 }')"
	echo "- machine: $(nproc) CPUs ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(free -h | awk '/^Mem:/ { print $2 }') memory, kernel $(uname -r), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "- this project: $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO_DIR" status --porcelain 2>/dev/null | grep -q . && echo ' (work tree with uncommitted changes)'), $(go env GOVERSION); binary $BIN"
	echo "- peers: crane $(if [ -n "$CRANE" ]; then "$CRANE" version; else echo "(not run)"; fi), $(version_of skopeo --version), $(version_of umoci --version), $(version_of containerd --version | awk '{ print $1, $3 }'), $(version_of pigz --version), $(version_of zstd --version | sed 's/^\*\*\* //; s/, by.*//'), $(version_of tar --version), $(version_of curl --version | awk '{ print $1, $2 }')"
	echo
	args=()
	for img in $IMAGES; do args+=(-image "$img=${LAYOUT[$img]}"); done
	((REBUILD)) && args+=(-rebuild)
	[ -s "$DISK" ] && args+=(-disk "$DISK")
	"$BT" report -raw "$RAW" "${args[@]}"
	echo
	cat <<'EOF'
Wall, CPU and RSS are medians over the rounds. "ours ÷ this" is the median
over rounds of (our wall time ÷ this row's wall time) in the same round:
cold unpack for the peers and the first two floors, warm unpack for the
`tar -x` floor, `rebuild --all --check` for the decompression floor. Below
1 means ours is faster. CPU is user+sys of every process the command
waited for (for containerd, plus the daemon's); peak RSS is that of the
largest single process (for containerd, the larger of ctr and the daemon).
The registry's own CPU is counted for nobody. "entries · tree" (round 1)
counts the entries of the resulting tree and hashes their paths, types,
sizes, modes, owners and link targets: the same hash means the same tree.
The `tar -x` floors leave the `.wh.` whiteout files in place, so their
trees differ by design.
EOF
	if [ -s "$FAILURES" ]; then
		echo
		echo "Failed runs:"
		echo
		sed 's/^/- /' "$FAILURES"
	fi
} >"$REPORT"

RESULTS=$REPO_DIR/bench/results
mkdir -p "$RESULTS"
base=$RESULTS/$(date +%Y-%m-%d)$SUFFIX
name=$base
n=2
while [ -e "$name.md" ]; do
	name=$base-$n
	n=$((n + 1))
done
cp "$REPORT" "$name.md"
cp "$RAW" "$name.tsv"
[ -s "$DISK" ] && cp "$DISK" "$name.disk.tsv"
cat "$REPORT"
log "saved $name.md and $name.tsv (logs in $LOGDIR); $((SECONDS - START_SECONDS)) s in all"
