#!/usr/bin/env bash
# The README's first command (`make demo`): a real chain run on the embedded
# stack. Uses a running `dchain dev` if there is one, else starts one for the
# demo and stops it afterwards (its data stays in ./.dchain).
set -euo pipefail
cd "$(dirname "$0")/.."
DCHAIN=bin/dchain
DATA_DIR=${DATA_DIR:-./.dchain}
TAG=${DEMO_TAG:-v1.$(date +%s)}

# The dev stack's default secrets (dchain dev sets the same when unset).
export DCHAIN_DEMO_WEBHOOK_SECRET=${DCHAIN_DEMO_WEBHOOK_SECRET:-dchain-dev-webhook-secret}
export DCHAIN_API_TOKEN=${DCHAIN_API_TOKEN:-dchain-dev-token}
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

# Where the stack's parts listen (dchain dev writes them; ports may be other than the defaults).
ep() { sed -n "s/^ *\"$1\": \"\([^\"]*\)\".*/\1/p" "$DATA_DIR/endpoints.json" | head -1; }
TEMPORAL=$(ep temporal)
RECEIVER=$(ep receiver)
API=$(ep api)
UI=$(ep ui)
DCHAIN="$DCHAIN --address ${TEMPORAL:-127.0.0.1:7233}"

echo "== chains"
$DCHAIN chain list

echo "== a push to branch release-v1 of the sample app: build (linux/amd64 + linux/arm64) → replicate → trigger"
start=$(date +%s.%N)
run=$($DCHAIN run start --chain demo --ref refs/heads/release-v1 --as-push --rerun -o json | grep -o '"workflowId":"[^"]*"' | cut -d'"' -f4)
echo "started $run; following its build (dchain run logs -f), last lines of the log:"
$DCHAIN run logs -f "$run" | tail -6
$DCHAIN run watch "$run"
end=$(date +%s.%N)
echo "build run took $(awk "BEGIN{print $end-$start}") s (wall; watch follows the run's history, so its end is seen when it happens)"

echo "== the image in every region"
for r in hangzhou frankfurt virginia; do
  d=$(curl -sfI -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$(ep $r)/v2/demo/app/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  printf '  %-10s demo/app:v1  %s\n' "$r" "${d:-MISSING}"
  [ -n "$d" ] || exit 1
done

echo "== trigger deliveries the receiver got (last two)"
curl -sf "$RECEIVER/deliveries" | grep -o "\"path\":\"[^\"]*\",\"contentType\":\"[^\"]*\"[^}]*\"signatureValid\":[a-z]*" | sed 's/^/  /' | tail -2

echo "== a push to branch release-v2, which vendors lodash 4.17.11 (critical in the demo DB): built, scanned, BLOCKED"
set +e
$DCHAIN run start --chain demo --ref refs/heads/release-v2 --as-push --rerun --watch
code=$?
set -e
[ "$code" = 4 ] || { echo "expected the vulnerable image to be blocked (exit 4), got exit $code"; exit 1; }
for r in "hangzhou demo/app" "hangzhou quarantine/app" "frankfurt demo/app" "virginia demo/app"; do
  set -- $r
  c=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$(ep $1)/v2/$2/manifests/v2")
  printf '  %s/%s:v2 → HTTP %s\n' "$(ep $1)" "$2" "$c"
done
echo "== the scan report attached to the quarantined image (dchain scan report)"
$DCHAIN scan report quarantine/app:v2

echo "== a signed GitHub-style push webhook for branch main → dchain api (POST /webhooks/github-sample)"
repo=$(cd "$DATA_DIR/git/sample-app" && pwd)
cat > "$DATA_DIR/github-push.json" <<JSON
{"ref":"refs/heads/main","after":"$(git -C "$repo" rev-parse main)","deleted":false,
 "repository":{"full_name":"acme/sample-app","clone_url":"$repo"},"pusher":{"name":"demo"},
 "head_commit":{"timestamp":"$(date -u +%Y-%m-%dT%H:%M:%SZ)"}}
JSON
answer=$($DCHAIN webhook test --source github-sample --file "$DATA_DIR/github-push.json" ${API:+--url "$API"})
echo "$answer"
hook_run=$(echo "$answer" | grep -o '"workflowId":"[^"]*"' | cut -d'"' -f4)
$DCHAIN run watch "$hook_run" | tail -4
echo "== the run through the REST API (GET /api/v1/runs/<id>)"
curl -sf -H "Authorization: Bearer $DCHAIN_API_TOKEN" "${API:-http://127.0.0.1:8080}/api/v1/runs/$(printf %s "$hook_run" | sed 's|/|%2F|g')" | grep -o '"outcome":"[A-Za-z]*"' | head -1

echo "== an image pushed from elsewhere (no build): demo/app:$TAG"
$DCHAIN dev seed --data-dir "$DATA_DIR" --image "demo/app:$TAG"
$DCHAIN run start --chain demo --image "demo/app:$TAG" --watch | tail -8
echo
echo "Record of the runs: ${UI:-http://127.0.0.1:8233}/namespaces/default/workflows (while dchain dev runs)"
