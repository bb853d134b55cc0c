#!/usr/bin/env bash
# Builds the llmbasedos live ISO with mkarchiso, on Arch Linux (as root,
# with the archiso package installed):
#
#   archiso/build.sh [--repo DIR] [--out DIR] [--work DIR]
#
#   --repo DIR  the [llmbasedos] repository made by repo/build
#               (default target/pacman-repo)
#   --out DIR   where the ISO goes (default target/iso)
#   --work DIR  mkarchiso's work directory (default target/archiso-work;
#               removed first)
#
# The profile is the installed releng profile with this directory laid over
# it: profiledef.sh, packages.x86_64 and pacman.conf replace releng's, and
# airootfs/ is added on top of releng's (our getty@tty1 autologin.conf
# replaces releng's root autologin).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
repo=$root/target/pacman-repo
out=$root/target/iso
work=$root/target/archiso-work
releng=/usr/share/archiso/configs/releng

die() { echo "archiso/build.sh: $*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --repo) repo=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) die "unknown argument: $1 (see the header of $0)" ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die "mkarchiso needs root: sudo $0"
command -v mkarchiso >/dev/null || die "mkarchiso is missing: pacman -S archiso (Arch Linux only)"
[[ -d $releng ]] || die "$releng is missing: pacman -S archiso"
repo=$(cd "$repo" && pwd) || die "no repository at $repo: run repo/build first"
[[ -f $repo/llmbasedos.db ]] || die "$repo has no llmbasedos.db: run repo/build first"

"$here/check" --repo "$repo"

rm -rf "$work"
profile=$work/profile
mkdir -p "$profile" "$out"
cp -a "$releng/." "$profile/"
cp -a --remove-destination "$here/airootfs/." "$profile/airootfs/"
cp "$here/profiledef.sh" "$here/packages.x86_64" "$profile/"
sed "s|^Server = file:///var/cache/llmbasedos/pacman-repo\$|Server = file://$repo|" \
  "$here/pacman.conf" >"$profile/pacman.conf"

mkarchiso -v -w "$work/mkarchiso" -o "$out" "$profile"
