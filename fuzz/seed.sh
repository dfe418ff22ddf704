#!/usr/bin/env bash
# Seeds fuzz/corpus/TARGET from the toml-test corpus beside the checkout,
# the repository's configs/ and a few request targets. Corpora are not
# committed: run this once before fuzzing (it is idempotent).
set -euo pipefail
cd "$(dirname "$0")"
toml_test=${TOML_TEST:-../../shared/corpus/toml-test}
[ -d "$toml_test" ] || toml_test=/work/shared/corpus/toml-test
mkdir -p corpus/toml_convert corpus/depth_prescan corpus/validate corpus/request
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  cp "$f" "corpus/toml_convert/tt$n"
  cp "$f" "corpus/depth_prescan/tt$n"
  # validate: the first byte picks the schema (app, features, the fuzz one).
  for s in 0 1 2; do
    { printf "\\x0$s"; cat "$f"; } > "corpus/validate/tt$n-$s"
  done
done < <(find "$toml_test" ../configs -name '*.toml' -print0)
i=0
for t in '/v1/config?index=7&wait=5m' '/v1/config/app?index=0&wait=250ms' \
         '/v1/config/app/server/listen' '/v1/config/app/server/a~1b' \
         '/v1/config/app/server/m~0n/2/x?wait=1m30s' '/v1/status?wait=90' \
         '/v1/config?index=%31&wait=%35s' '/v1/config//x'; do
  i=$((i + 1))
  printf '%s\0%s' "$t" "$((i * 9000))" > "corpus/request/seed$i"
done
echo "seeded: $n TOML files; $i request targets"
