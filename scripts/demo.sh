#!/usr/bin/env bash
# The README's first command (`make demo`): a real chain run on the embedded
# stack. Uses a running `dchain dev` if there is one, else starts one for the
# demo and stops it afterwards (its data stays in ./.dchain).
set -euo pipefail
cd "$(dirname "$0")/.."
DCHAIN=bin/dchain
DATA_DIR=${DATA_DIR:-./.dchain}
TAG=${DEMO_TAG:-v1.$(date +%s)}

started=""
if ! (exec 3<>/dev/tcp/127.0.0.1/7233) 2>/dev/null; then
  echo "== starting the dev stack (data in $DATA_DIR, log in $DATA_DIR/dev.log)"
  mkdir -p "$DATA_DIR"
  $DCHAIN dev --data-dir "$DATA_DIR" >"$DATA_DIR/dev.log" 2>&1 &
  started=$!
  trap 'kill -INT $started 2>/dev/null; wait $started 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    [ -f "$DATA_DIR/endpoints.json" ] && break
    kill -0 $started 2>/dev/null || { cat "$DATA_DIR/dev.log"; exit 1; }
    sleep 0.2
  done
  [ -f "$DATA_DIR/endpoints.json" ] || { cat "$DATA_DIR/dev.log"; echo "dev stack did not come up"; exit 1; }
  sed -n '1,12p' "$DATA_DIR/dev.log"
fi

echo "== pushing the sample image demo/app:$TAG (linux/amd64 + linux/arm64) to hangzhou"
$DCHAIN dev seed --data-dir "$DATA_DIR" --image "demo/app:$TAG"

echo "== chains"
$DCHAIN chain list

echo "== running chain demo"
start=$(date +%s.%N)
$DCHAIN run start --chain demo --image "demo/app:$TAG" --watch
end=$(date +%s.%N)
echo "demo run took $(echo "$end - $start" | bc 2>/dev/null || awk "BEGIN{print $end-$start}") s"

echo "== the image in every region"
for r in hangzhou:5001 frankfurt:5002 virginia:5003; do
  d=$(curl -sfI -H 'Accept: application/vnd.oci.image.index.v1+json' "http://127.0.0.1:${r#*:}/v2/demo/app/manifests/$TAG" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  printf '  %-10s demo/app:%s  %s\n' "${r%%:*}" "$TAG" "${d:-MISSING}"
  [ -n "$d" ] || exit 1
done

echo "== trigger deliveries the receiver got for this tag"
curl -sf http://127.0.0.1:8089/deliveries | grep -o "\"path\":\"[^\"]*\",\"contentType\":\"[^\"]*\"[^}]*\"signatureValid\":[a-z]*" | sed 's/^/  /' | tail -2
echo
echo "Record of the run: http://127.0.0.1:8233/namespaces/default/workflows (while dchain dev runs)"
