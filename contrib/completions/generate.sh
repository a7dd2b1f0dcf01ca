#!/usr/bin/env bash
# Regenerates nftnet's shell completion scripts (bash, zsh, fish) with click's own generator.
# The scripts ask nftnet itself for candidates at run time, so they only change with click.
# Usage: contrib/completions/generate.sh [NFTNET]   (default: nftnet on PATH)
# Install (as root): cp nftnet.bash /usr/share/bash-completion/completions/nftnet
#                    cp nftnet.zsh /usr/share/zsh/vendor-completions/_nftnet
#                    cp nftnet.fish /usr/share/fish/vendor_completions.d/nftnet.fish
set -euo pipefail
nftnet=${1:-nftnet}
cd "$(dirname "$0")"
for shell in bash zsh fish; do
  _NFTNET_COMPLETE="${shell}_source" "$nftnet" > "nftnet.$shell"
done
