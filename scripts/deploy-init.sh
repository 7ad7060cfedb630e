#!/usr/bin/env bash
# Prepares the compose deployment (docker-compose.yml) on a fresh host:
#  - deploy/certs: a CA of the deployment's own and the registries'
#    certificate (names hangzhou, frankfurt, virginia, localhost);
#  - deploy/htpasswd: the registries' user "dchain" (bcrypt);
#  - deploy/dchain.env and deploy/postgres.env from their .example files,
#    every secret replaced by a random value;
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
if [ ! -f certs/registry.pem ]; then
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=dchain registries" \
    -keyout certs/registry-key.pem -out certs/registry.csr 2>/dev/null
  printf 'subjectAltName=DNS:hangzhou,DNS:frankfurt,DNS:virginia,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > certs/registry.ext
  openssl x509 -req -in certs/registry.csr -CA certs/ca.pem -CAkey certs/ca-key.pem -CAcreateserial \
    -days 825 -extfile certs/registry.ext -out certs/registry.pem 2>/dev/null
  rm -f certs/registry.csr certs/registry.ext certs/ca.srl
fi
chmod 0644 certs/ca.pem certs/registry.pem certs/registry-key.pem  # read by the registry and dchain containers' users

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
if [ ! -f postgres.env ]; then
  password=$(rand)
  sed -e "s/=change-me$/=$password/" postgres.env.example > postgres.env
fi
echo "deploy/ is ready: certs/ (CA: deploy/certs/ca.pem), htpasswd, dchain.env, postgres.env, registry-notify.env"
echo "next: docker compose up -d --build"
