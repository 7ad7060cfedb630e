// Package deploy holds the files of dchain's production deployment (the
// compose file's config, certificates made by scripts/deploy-init.sh, the
// Temporal schema job, the Helm chart under helm/) and the deployment
// test: the topology of README's Deploy section built for real on one
// machine, with network namespaces for hosts, from these same files.
package deploy
