#!/usr/bin/env bash
# Prepares the compose deployment (docker-compose.yml) on a fresh host:
#  - deploy/certs: a CA of the deployment's own; the registries'
#    certificate (names hangzhou, frankfurt, virginia, localhost); Temporal's
#    (name temporal: its frontend serves it and requires client certificates
#    of this CA, mTLS); the client certificates of dchain's processes and of
#    the Temporal Web UI;
#  - deploy/htpasswd: the registries' user "dchain" (bcrypt);
#  - deploy/dchain.env and deploy/postgres.env from their .example files,
#    every secret replaced by a random value; dchain.env holds them all and
#    no container reads it: each dchain role gets an env file of the secrets
#    it uses and no other (deploy/roles/*.env, below);
#  - deploy/registry-notify.env: the source registry's notifications to
#    dchain's API, with the webhook secret of dchain.env.
# Keeps what exists (delete a file to make it again). Needs openssl, and
# htpasswd (apache2-utils) or docker for the bcrypt line.
set -euo pipefail
cd "$(dirname "$0")/../deploy"
umask 077
rand() { openssl rand -hex 24; }

mkdir -p certs
if [ ! -f certs/ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=dchain deployment CA" -keyout certs/ca-key.pem -out certs/ca.pem 2>/dev/null
fi
# cert NAME CN EXTENSIONS: certs/NAME.pem and certs/NAME-key.pem, signed by
# the CA (again when the CA is newer than the certificate).
cert() {
  [ -f "certs/$1.pem" ] && [ ! "certs/ca.pem" -nt "certs/$1.pem" ] && return
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "certs/$1-key.pem" -out "certs/$1.csr" 2>/dev/null
  printf '%b' "$3" > "certs/$1.ext"
  openssl x509 -req -in "certs/$1.csr" -CA certs/ca.pem -CAkey certs/ca-key.pem -CAcreateserial \
    -days 825 -extfile "certs/$1.ext" -out "certs/$1.pem" 2>/dev/null
  rm -f "certs/$1.csr" "certs/$1.ext" certs/ca.srl
}
cert registry "dchain registries" 'subjectAltName=DNS:hangzhou,DNS:frankfurt,DNS:virginia,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
# Temporal's frontend and its nodes (which also dial each other with it).
cert temporal "temporal" 'subjectAltName=DNS:temporal,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'
cert dchain-client "dchain" 'extendedKeyUsage=clientAuth\n'
cert temporal-ui-client "temporal-ui" 'extendedKeyUsage=clientAuth\n'
# Read by the containers' users (registry, temporal, dchain: not root); the
# CA's key stays on this host, in no container.
chmod 0644 certs/*.pem
chmod 0600 certs/ca-key.pem

if [ ! -f dchain.env ]; then
  password=$(rand)
  sed -e "s/^\(DCHAIN_[A-Z]*_CREDENTIALS\)=.*/\1=dchain:$password/" \
      -e "s/^\(DCHAIN_[A-Z_]*\(TOKEN\|SECRET\)\)=.*/echo \"\1=\$(openssl rand -hex 24)\"/e" \
      dchain.env.example > dchain.env
fi
if [ ! -f htpasswd ]; then
  password=$(sed -n 's/^DCHAIN_HANGZHOU_CREDENTIALS=dchain://p' dchain.env)
  if command -v htpasswd >/dev/null; then
    htpasswd -Bbn dchain "$password" > htpasswd
  else
    docker run --rm --entrypoint htpasswd httpd:2.4.62 -Bbn dchain "$password" > htpasswd
  fi
  chmod 0644 htpasswd
fi
if [ ! -f registry-notify.env ]; then
  # The source registry (hangzhou) tells dchain's API about every push (not
  # pulls), signed with the webhook secret of dchain.yaml's source
  # hangzhou-registry; only that registry's container gets this file.
  secret=$(sed -n 's/^DCHAIN_REGISTRY_WEBHOOK_SECRET=//p' dchain.env)
  printf 'REGISTRY_NOTIFICATIONS_ENDPOINTS=[{name: dchain, url: "http://dchain-api:8080/webhooks/hangzhou-registry", headers: {Authorization: ["Bearer %s"]}, timeout: 5s, threshold: 5, backoff: 10s, ignore: {actions: [pull]}}]\n' "$secret" > registry-notify.env
fi
# Each dchain role reads only the secrets it uses (docker-compose.yml):
#  - api: its bearer token, the webhook secrets it verifies, and the
#    registries' credentials: it resolves the image a run starts from and
#    checks a replication's destinations before it starts one;
#  - worker (the chain worker): the source registry it builds into, scans
#    and deletes from (hangzhou);
#  - worker-REGION: the source registry it copies from and its own;
#  - setup: none.
# They are cut from dchain.env again on every run (change a secret there,
# run this, and restart the services).
mkdir -p roles
role() {
  f="roles/$1.env"; shift
  { echo "# written by scripts/deploy-init.sh from deploy/dchain.env: edit that file, then run it again"
    for k in "$@"; do
      grep "^$k=" dchain.env || { echo "deploy/dchain.env lacks $k (see dchain.env.example)" >&2; return 1; }
    done; } > "$f.new"
  mv "$f.new" "$f"
}
role api DCHAIN_API_TOKEN DCHAIN_REGISTRY_WEBHOOK_SECRET DCHAIN_GITHUB_WEBHOOK_SECRET \
  DCHAIN_HANGZHOU_CREDENTIALS DCHAIN_FRANKFURT_CREDENTIALS DCHAIN_VIRGINIA_CREDENTIALS
role worker DCHAIN_HANGZHOU_CREDENTIALS
role worker-hangzhou DCHAIN_HANGZHOU_CREDENTIALS
role worker-frankfurt DCHAIN_HANGZHOU_CREDENTIALS DCHAIN_FRANKFURT_CREDENTIALS
role worker-virginia DCHAIN_HANGZHOU_CREDENTIALS DCHAIN_VIRGINIA_CREDENTIALS
if [ ! -f postgres.env ]; then
  password=$(rand)
  sed -e "s/=change-me$/=$password/" postgres.env.example > postgres.env
fi
echo "deploy/ is ready: certs/ (CA: deploy/certs/ca.pem), htpasswd, dchain.env, roles/*.env, postgres.env, registry-notify.env"
echo "next: docker compose up -d --build"
