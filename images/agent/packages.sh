#!/bin/sh
# Prints the packages of packages.txt for one architecture (default: dpkg's),
# space-separated: `apt-get install $(sh packages.sh amd64)`.
set -eu
arch="${1:-$(dpkg --print-architecture)}"
sed -e 's/#.*//' "$(dirname "$0")/packages.txt" | awk -v a="$arch" 'NF == 1 || $2 == a { print $1 }' | tr '\n' ' '
echo
