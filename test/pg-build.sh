#!/usr/bin/env bash
# test/pg-build.sh: a PostgreSQL major of Debian's, ready for `make test
# PG=<major>`, in a cache directory outside the repository.
#
#   bash test/pg-build.sh 18            set up 18 (unless cached); last line: its pg_config
#   bash test/pg-build.sh 17 18 19      several, in that order
#   bash test/pg-build.sh --versions    the versions each Debian suite offers; nothing set up
#
# Where each major comes from: 15 bookworm (normally its installed binary
# packages, see test/lib.sh), 17 trixie, 18 sid, 19 experimental, all on the
# mirror that serves this machine's bookworm (the URI in /etc/apt, or
# RG_PG_MIRROR).
#
# Two methods (RG_PG_METHOD=auto|source|deb; auto: source when the mirror
# has the source package's files, deb otherwise):
#
# source  `apt-get source --download-only` of postgresql-<major> (checked
#         against the signed Sources index), the upstream tarball in it
#         unpacked as is (Debian's patches are not applied), built with
#         bookworm's tools (installed when missing): configure --prefix into
#         the cache with the TAP tests, make, make install, plus what PGXS
#         needs to test an extension (pg_regress, pg_isolation_regress and
#         isolationtester, the PostgreSQL::Test Perl modules) and contrib.
# deb     Debian's own binary packages of the suite (postgresql-<major>,
#         -client-, -server-dev-, libpq5), unpacked into the cache (never
#         installed: dpkg does not know them). They are built against the
#         suite's newer C library, so that C library and every shared
#         library whose bookworm version is missing or too old are unpacked
#         beside them, and the programs are pointed at them (patchelf: their
#         ELF interpreter and RPATH); bookworm's libraries serve the rest. The
#         PGXS makefile is adjusted for bookworm's gcc (no LLVM bitcode,
#         without the warning flags gcc 12 lacks). JIT is not available
#         (llvmjit is removed: it needs the suite's LLVM).
#
# Both add pgTAP's SQL (postgresql-<major>-pgtap, or the newest of the other
# majors' when the suite has none: 19); deb adds pg_cron
# (postgresql-<major>-cron) where the suite has it (17), which a source
# build cannot load (built for the suite's C library).
#
# The result: $RG_PG_CACHE/<major>/bin/pg_config (RG_PG_CACHE defaults to
# /work/.cache/pg). A stamp file there names what was set up; when present
# nothing is redone (remove the directory to start over). Compiles run
# under `nice -n 19` (RG_PG_JOBS jobs, default 2). One major is set up by
# one process at a time (a lock file); apt runs on lists of its own in a
# temporary directory: the system's apt configuration and state are not
# touched, only bookworm packages the build needs get installed.
set -euo pipefail

RG_PG_CACHE=${RG_PG_CACHE:-/work/.cache/pg}
RG_PG_JOBS=${RG_PG_JOBS:-2}
RG_PG_METHOD=${RG_PG_METHOD:-auto}
STAMP=.rungate-pg-build
SUITES=(bookworm trixie sid experimental)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'pg-build: %s\n' "$*" >&2; exit 1; }

# the suite that carries each major
suite_of() {
  case $1 in
    15) echo bookworm ;;
    17) echo trixie ;;
    18) echo sid ;;
    19) echo experimental ;;
    *) die "no Debian suite known for PostgreSQL $1 (known: 15 17 18 19)" ;;
  esac
}

# The mirror: RG_PG_MIRROR, else the URI that serves bookworm (not -security,
# not -updates) in /etc/apt/sources.list or sources.list.d/*.{list,sources}.
mirror() {
  if [ -n "${RG_PG_MIRROR:-}" ]; then echo "${RG_PG_MIRROR%/}"; return; fi
  local f uri=
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                             if ($(i + 1) == "bookworm") { print $i; exit } }' "$f")
    [ -z "$uri" ] || break
  done
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -r "$f" ] || continue
      # deb822: stanzas separated by blank lines
      uri=$(awk 'function flush() { if (suites ~ / bookworm / && uris != "" && found == "") found = uris
                                    uris = ""; suites = "" }
                 /^[[:space:]]*$/ { flush(); next }
                 /^URIs:/   { uris = $2 }
                 /^Suites:/ { $1 = ""; suites = $0 " " }
                 END { flush(); print found }' "$f")
      [ -z "$uri" ] || break
    done
  fi
  [ -n "$uri" ] || die "no bookworm mirror found in /etc/apt; set RG_PG_MIRROR"
  echo "${uri%/}"
}

# Private apt state in APT_DIR: sources.list (deb and deb-src lines of every
# suite above), lists/ and cache/. Sets APT_OPTS for apt-get and apt-cache.
APT_DIR=
APT_OPTS=()
apt_setup() {
  [ -z "$APT_DIR" ] || return 0
  APT_DIR=$(mktemp -d /tmp/rungate-pg-apt.XXXXXX)
  trap 'rm -rf "$APT_DIR"' EXIT
  local m s
  m=$(mirror)
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/sources.list.d"
  for s in "${SUITES[@]}"; do
    echo "deb [signed-by=$KEYRING] $m $s main"
    echo "deb-src [signed-by=$KEYRING] $m $s main"
  done >"$APT_DIR/sources.list"
  APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list"
            -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
            -o "Dir::State::Lists=$APT_DIR/lists"
            -o "Dir::Cache=$APT_DIR/cache"
            -o "APT::Sandbox::User=root")
  log "private apt lists: ${SUITES[*]} from $m"
  apt-get "${APT_OPTS[@]}" -qq update </dev/null >&2 || die "apt-get update (private lists) failed"
}

# madison PACKAGE [Sources|Packages]: "package version suite" per version
madison() {
  apt-cache "${APT_OPTS[@]}" madison "$1" 2>/dev/null \
    | awk -F'|' -v kind="${2:-Sources}" '$3 ~ kind { gsub(/ /, "", $1); gsub(/ /, "", $2);
                 split($3, a, " "); sub(/\/.*/, "", a[2]); print $1, $2, a[2] }' || true
}

# newest VERSION... (dpkg's order)
newest() {
  local best='' v
  for v in "$@"; do
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
  done
  echo "$best"
}

# version_in PACKAGE SUITE [Sources|Packages]: its newest version there
version_in() {
  # shellcheck disable=SC2046 # a list of versions
  newest $(madison "$1" "${3:-Sources}" | awk -v s="$2" '$3 == s { print $2 }')
}

# every version of postgresql-15..19, pgtap and pg_cron on offer
show_versions() {
  local p
  for p in postgresql-15 postgresql-16 postgresql-17 postgresql-18 postgresql-19 pgtap pg-cron; do
    madison "$p" Sources | sed 's/$/ (source)/'
  done
  for p in postgresql-17 postgresql-18 postgresql-19; do
    madison "$p" Packages | sed 's/$/ (binary)/'
  done
}

# need_pkgs PACKAGE...: apt-get install (from bookworm) those not installed.
need_pkgs() {
  local pkg missing=()
  for pkg in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = 'install ok installed' ] \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages (need root to install): ${missing[*]}"
  log "installing from bookworm: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null 2>&1 \
    || { apt-get update -qq </dev/null >/dev/null \
         && apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
}

# fetch_debs DIR SUITE PACKAGE...: download the suite's binary packages into DIR
fetch_debs() {
  local dir=$1 suite=$2 p args=()
  shift 2
  for p in "$@"; do args+=("$p/$suite"); done
  (cd "$dir" && apt-get "${APT_OPTS[@]}" -qq download "${args[@]}" </dev/null >&2) \
    || die "apt-get download ${args[*]} failed"
}

# check_tree MAJOR: what PGXS testing and the TAP tests need is there
check_tree() {
  local dest="$RG_PG_CACHE/$1" need pgxs
  pgxs=$(dirname "$("$dest/bin/pg_config" --pgxs)")/.. \
    || die "$dest/bin/pg_config does not run"
  for need in "$dest"/bin/{pg_config,initdb,postgres,pg_ctl,psql,pg_dump,pg_upgrade} \
              "$pgxs"/makefiles/pgxs.mk "$pgxs"/test/regress/pg_regress \
              "$pgxs"/test/isolation/{pg_isolation_regress,isolationtester} \
              "$pgxs"/test/perl/PostgreSQL/Test/Cluster.pm \
              "$("$dest/bin/pg_config" --sharedir)/extension/pgtap.control"; do
    [ -e "$need" ] || die "the tree of PostgreSQL $1 lacks $need"
  done
  "$dest/bin/postgres" --version >/dev/null || die "$dest/bin/postgres does not run"
}

# pgtap_into MAJOR SHAREDIR WORK: pgTAP's SQL (the extension has no C) from
# postgresql-MAJOR-pgtap of the major's suite, else from the newest other
# major's package (a major newer than Debian's pgTAP packages)
pgtap_into() {
  local major=$1 share=$2 work=$3 suite m s p=
  suite=$(suite_of "$major")
  for m in "$major" 18 17; do
    for s in "$suite" sid trixie; do
      if [ -n "$(madison "postgresql-$m-pgtap" Packages | awk -v s="$s" '$3 == s')" ]; then
        p="postgresql-$m-pgtap"; suite=$s; break 2
      fi
    done
  done
  [ -n "$p" ] || die "no pgTAP package found"
  rm -rf "$work/pgtap"; mkdir -p "$work/pgtap"
  fetch_debs "$work/pgtap" "$suite" "$p"
  dpkg-deb -x "$work"/pgtap/*.deb "$work/pgtap/x"
  cp "$work"/pgtap/x/usr/share/postgresql/*/extension/pgtap* "$share/extension/"
  log "PostgreSQL $major: pgTAP from $p ($suite)"
}

# cron_into MAJOR ROOT WORK: pg_cron (postgresql-MAJOR-cron) unpacked into a
# deb tree, when the suite has it
cron_into() {
  local major=$1 root=$2 work=$3 suite
  suite=$(suite_of "$major")
  if [ -z "$(madison "postgresql-$major-cron" Packages | awk -v s="$suite" '$3 == s')" ]; then
    log "PostgreSQL $major: no postgresql-$major-cron in $suite (the pg_cron test will skip)"
    return 0
  fi
  rm -rf "$work/cron"; mkdir -p "$work/cron"
  fetch_debs "$work/cron" "$suite" "postgresql-$major-cron"
  dpkg-deb -x "$work"/cron/*.deb "$root"
  log "PostgreSQL $major: pg_cron from postgresql-$major-cron ($suite)"
}

# ---- method source ----------------------------------------------------------

BUILD_DEPS=(gcc make dpkg-dev bison flex libreadline-dev zlib1g-dev libicu-dev pkg-config
            perl libipc-run-perl xz-utils bzip2)

# fetch_source MAJOR VERSION WORK: the source package's files into WORK
fetch_source() {
  (cd "$3" && apt-get "${APT_OPTS[@]}" -qq --download-only source "postgresql-$1=$2" \
     </dev/null >"$3/fetch.log" 2>&1)
}

build_source() {
  local major=$1 ver=$2 work=$3 dest="$RG_PG_CACHE/$1" src
  need_pkgs "${BUILD_DEPS[@]}"
  (cd "$work" && tar xf ./*.orig.tar.*) || die "unpacking the upstream tarball failed"
  src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'postgresql-*' | head -n1)
  if [ -z "$src" ] || [ ! -x "$src/configure" ]; then die "no configure in the unpacked source ($work)"; fi
  log "PostgreSQL $major: configure (prefix $dest)"
  # shellcheck disable=SC2086 # extra options, split on purpose
  (cd "$src" && ./configure --prefix="$dest" --enable-tap-tests --with-icu --with-readline \
     --without-gssapi --without-ldap --without-openssl ${RG_PG_CONFIGURE_EXTRA:-} \
     >"$work/configure.log" 2>&1) \
    || { tail -30 "$work/configure.log" >&2; die "configure failed (log: $work/configure.log)"; }
  # Called from `make test PG=<major>`, the environment says we are a
  # sub-make (MAKELEVEL, MAKEFLAGS): PostgreSQL's makefiles then skip the
  # generated headers (utils/errcodes.h) that a top-level build makes first.
  unset MAKELEVEL MAKEFLAGS MFLAGS
  log "PostgreSQL $major: make -j$RG_PG_JOBS (nice 19)"
  (cd "$src" && nice -n 19 make -j"$RG_PG_JOBS" -s >"$work/make.log" 2>&1 \
     && nice -n 19 make -C contrib -j"$RG_PG_JOBS" -s >>"$work/make.log" 2>&1 \
     && nice -n 19 make -C src/test/isolation -j"$RG_PG_JOBS" -s >>"$work/make.log" 2>&1) \
    || { tail -30 "$work/make.log" >&2; die "make failed (log: $work/make.log)"; }
  log "PostgreSQL $major: make install"
  (cd "$src" && make -s install >"$work/install.log" 2>&1 \
     && make -C contrib -s install >>"$work/install.log" 2>&1 \
     && make -C src/test/isolation -s install >>"$work/install.log" 2>&1 \
     && make -C src/test/perl -s install >>"$work/install.log" 2>&1) \
    || { tail -30 "$work/install.log" >&2; die "make install failed (log: $work/install.log)"; }
  pgtap_into "$major" "$("$dest/bin/pg_config" --sharedir)" "$work"
}

# ---- method deb ---------------------------------------------------------------

# soname_pkgs SONAME: candidate package names for a shared library
soname_pkgs() {
  local so=$1 base num
  case $so in
    libicu*.so.*) echo "libicu${so##*.so.}"; return ;;
    libssl.so.3|libcrypto.so.3) echo libssl3t64 libssl3; return ;;
    liblber.so.2|libldap.so.2) echo libldap2; return ;;
    libz.so.1) echo zlib1g; return ;;
    libgcc_s.so.1) echo libgcc-s1; return ;;
    libxslt.so.1|libexslt.so.0) echo libxslt1.1; return ;;
    libpam.so.0) echo libpam0g; return ;;
    libxml2.so.*) echo "libxml2-${so##*.so.}" libxml2; return ;;
  esac
  base=${so%%.so.*}; num=${so##*.so.}; num=${num%%.*}
  base=${base//_/-}
  case $base in
    *[0-9]) echo "$base-$num" "$base-${num}t64" ;;
    *) echo "$base$num" "$base${num}t64" "$base-$num" ;;
  esac
}

# deb_missing ROOT LD LIBPATH DIR...: sonames the ELF files under DIR... need
# and cannot have (missing, or too old a version), one per line
deb_missing() {
  local root=$1 ld=$2 lp=$3 f
  shift 3
  find "$@" -type f 2>/dev/null | while read -r f; do
    [ "$(head -c4 "$f" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    "$ld" --library-path "$lp" --list "$f" 2>&1 \
      | sed -n -e 's/.*error while loading shared libraries: \([^:]*\): cannot open.*/\1/p' \
               -e "s/^.*: \/.*\/\([^/:]*\): version .* not found.*/\1/p" \
               -e 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' || true
  done | sort -u
}

build_deb() {
  local major=$1 ver=$2 work=$3 dest="$RG_PG_CACHE/$1" suite root ld lp pgdir so p got
  local f s tried=" "
  suite=$(suite_of "$major")
  need_pkgs patchelf gcc make perl libipc-run-perl
  root="$dest/root"
  mkdir -p "$root" "$work/debs"
  log "PostgreSQL $major: Debian's binary packages $ver ($suite), unpacked into $root"
  fetch_debs "$work/debs" "$suite" "postgresql-$major" "postgresql-client-$major" \
    "postgresql-server-dev-$major" libpq5 libc6
  for f in "$work"/debs/*.deb; do dpkg-deb -x "$f" "$root"; done
  cron_into "$major" "$root" "$work"
  pgdir="$root/usr/lib/postgresql/$major"
  [ -x "$pgdir/bin/postgres" ] || die "no $pgdir/bin/postgres in postgresql-$major"
  # JIT needs the suite's LLVM: without llvmjit.so the server runs without JIT
  rm -rf "$pgdir"/lib/llvmjit* "$pgdir/lib/bitcode"
  ld="$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
  lp="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
  [ -x "$ld" ] || die "no dynamic loader in the suite's libc6 ($ld)"
  # the suite's libraries wherever bookworm's are missing or too old
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do   # rounds: new libraries need others
    got=0
    for so in $(deb_missing "$root" "$ld" "$lp" "$pgdir/bin" "$pgdir/lib" "$root/usr/lib/x86_64-linux-gnu"); do
      for p in $(soname_pkgs "$so"); do
        case $tried in *" $p "*) continue ;; esac
        tried="$tried$p "
        # experimental holds only what differs from sid
        for s in "$suite" sid; do
          if [ -n "$(madison "$p" Packages | awk -v s="$s" '$3 == s')" ]; then
            log "  $so: $p ($s)"
            rm -f "$work"/debs/*.deb
            fetch_debs "$work/debs" "$s" "$p"
            dpkg-deb -x "$work"/debs/*.deb "$root"
            got=1
            break 2
          fi
        done
      done
    done
    [ "$got" = 1 ] || break
  done
  so=$(deb_missing "$root" "$ld" "$lp" "$pgdir/bin" "$pgdir/lib" | tr '\n' ' ')
  [ -z "$so" ] || die "PostgreSQL $major: no package found for: $so"
  # the programs use the suite's loader and libraries first
  while read -r f; do
    patchelf --print-interpreter "$f" >/dev/null 2>&1 || continue
    patchelf --set-interpreter "$ld" --force-rpath --set-rpath "$lp" "$f"
  done < <(find "$pgdir/bin" "$pgdir/lib/pgxs/src/test" -type f)
  # PGXS with bookworm's gcc: no LLVM bitcode, no flag gcc 12 lacks
  local mk="$pgdir/lib/pgxs/src/Makefile.global" flag bad=()
  sed -i 's/^with_llvm[[:space:]]*=.*/with_llvm = no/' "$mk"
  # shellcheck disable=SC2013 # the words of one line
  for flag in $(sed -n 's/^CFLAGS[[:space:]]*=//p' "$mk"); do
    case $flag in -W*|-f*|-m*) ;; *) continue ;; esac
    gcc -Wall -Werror "$flag" -x c -c -o /dev/null /dev/null 2>/dev/null || bad+=("$flag")
  done
  for flag in "${bad[@]}"; do
    sed -i "/^CFLAGS[[:space:]]*=/s/[[:space:]]$flag\\b//" "$mk"
    log "  PGXS: dropped $flag (gcc $(gcc -dumpversion) lacks it)"
  done
  # pg_config.h says what the suite's C library declares; where bookworm's
  # lacks it (strlcpy, strlcat: glibc 2.38), port.h must declare it (the
  # server's C library, the suite's, has it)
  local h fn
  h="$root/usr/include/postgresql/$major/server/pg_config.h"
  for fn in strlcpy strlcat; do
    printf '#define _GNU_SOURCE\n#include <string.h>\nvoid *rg_fn(void);\nvoid *rg_fn(void) { return (void *) %s; }\n' "$fn" \
      | gcc -Werror -x c -c -o /dev/null - 2>/dev/null && continue
    sed -i "s/^#define HAVE_DECL_${fn^^} 1$/#define HAVE_DECL_${fn^^} 0/" "$h"
    log "  pg_config.h: HAVE_DECL_${fn^^} 0 (bookworm's C library lacks $fn)"
  done
  ln -sfn "root/usr/lib/postgresql/$major/bin" "$dest/bin"
  pgtap_into "$major" "$root/usr/share/postgresql/$major" "$work"
}

# ---- one major ------------------------------------------------------------------

build() {
  local major=$1 dest="$RG_PG_CACHE/$1" suite ver method work t0 lockfd share
  mkdir -p "$RG_PG_CACHE"
  exec {lockfd}>"$RG_PG_CACHE/.$major.lock"
  flock "$lockfd"
  if [ -f "$dest/$STAMP" ]; then
    log "PostgreSQL $major: cached in $dest ($(head -n1 "$dest/$STAMP"))"
    share=$("$dest/bin/pg_config" --sharedir)
    if [ ! -f "$share/extension/pgtap.control" ]; then   # a tree set up before pgTAP was
      apt_setup
      work=$(mktemp -d "$RG_PG_CACHE/.work-$major.XXXXXX")
      pgtap_into "$major" "$share" "$work"
      rm -rf "$work"
    fi
    echo "$dest/bin/pg_config"
    exec {lockfd}>&-
    return 0
  fi
  t0=$(date +%s)
  suite=$(suite_of "$major")
  apt_setup
  method=$RG_PG_METHOD
  if [ "$method" != deb ]; then
    ver=$(version_in "postgresql-$major" "$suite" Sources)
    [ -n "$ver" ] || die "postgresql-$major: no source package in $suite"
  fi
  # a failed attempt leaves its work directory (logs) until the next one
  rm -rf "$dest" "$RG_PG_CACHE/.work-$major."*
  work=$(mktemp -d "$RG_PG_CACHE/.work-$major.XXXXXX")
  if [ "$method" != deb ]; then
    if fetch_source "$major" "$ver" "$work"; then
      method=source
    elif [ "$method" = auto ]; then
      log "PostgreSQL $major: the mirror lacks the files of source package $ver ($(grep -m1 -o '[0-9]\{3\} *Not Found' "$work/fetch.log" || echo 'download failed')); using the binary packages"
      method=deb
    else
      cat "$work/fetch.log" >&2
      die "apt-get source postgresql-$major=$ver failed"
    fi
  fi
  if [ "$method" = deb ]; then
    ver=$(version_in "postgresql-$major" "$suite" Packages)
    [ -n "$ver" ] || die "postgresql-$major: no binary package in $suite"
  fi
  log "PostgreSQL $major: postgresql-$major $ver ($suite), method $method"
  "build_$method" "$major" "$ver" "$work"
  check_tree "$major"
  printf '%s\n' "postgresql-$major $ver ($suite, $method)" \
    "set up $(date -u +%FT%TZ) in $(( $(date +%s) - t0 )) s" >"$dest/$STAMP"
  rm -rf "$work"
  log "PostgreSQL $major: ready in $(( $(date +%s) - t0 )) s"
  echo "$dest/bin/pg_config"
  exec {lockfd}>&-
}

[ $# -gt 0 ] || die "usage: $0 [--versions] MAJOR..."
for arg in "$@"; do
  case $arg in
    --versions) apt_setup; show_versions ;;
    [0-9][0-9]) suite_of "$arg" >/dev/null; build "$arg" ;;
    *) die "unknown argument $arg (usage: $0 [--versions] MAJOR...)" ;;
  esac
done
