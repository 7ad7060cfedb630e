{{/* Names and labels. */}}
{{- define "dchain.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name. Components append up to 38 characters
("-worker-" and a region of at most 30), so it is kept to 24: a Service
name is at most 63. */}}
{{- define "dchain.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 24 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 24 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 24 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dchain.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dchain.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dchain.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dchain.labels" -}}
helm.sh/chart: {{ include "dchain.chart" . }}
{{ include "dchain.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dchain
{{- end }}

{{/* A component's selector labels: (dict "root" $ "component" C ["region" R]). */}}
{{- define "dchain.componentSelector" -}}
{{ include "dchain.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .region }}
dchain.dev/region: {{ . }}
{{- end }}
{{- end }}

{{- define "dchain.componentLabels" -}}
{{ include "dchain.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .region }}
dchain.dev/region: {{ . }}
{{- end }}
{{- end }}

{{/* The dchain image, pinned: the tag defaults to the chart's appVersion. */}}
{{- define "dchain.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: name a version, not latest" }}
{{- end }}
{{- .Values.image.repository }}:{{ $tag }}{{ with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{- define "dchain.buildkitdAddr" -}}
tcp://{{ include "dchain.fullname" . }}-buildkitd:{{ .Values.buildkitd.port }}
{{- end }}

{{- define "dchain.trivyServer" -}}
{{- if .Values.trivy.enabled }}
{{- printf "http://%s-trivy:%v" (include "dchain.fullname" .) .Values.trivy.port }}
{{- else }}
{{- required "trivy.serverURL: with trivy.enabled false, name the Trivy server the chain worker scans through" .Values.trivy.serverURL }}
{{- end }}
{{- end }}

{{/*
Checks values the templates cannot render sensibly without; called once,
from the ConfigMap.
*/}}
{{- define "dchain.validate" -}}
{{- $registries := dict }}
{{- range $i, $r := .Values.config.registries }}
{{- $_ := set $registries $r.name $r }}
{{- end }}
{{- $seen := dict }}
{{- $regionSecrets := list }}
{{- range $i, $r := .Values.regions }}
{{- if not $r.name }}{{ fail (printf "regions[%d]: a name (a registry of config.registries)" $i) }}{{ end }}
{{- if not (hasKey $registries $r.name) }}
{{- fail (printf "regions[%d].name %q is not a registry of config.registries" $i $r.name) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$" $r.name) }}
{{- fail (printf "regions[%d].name %q: a region worker is named after it; use lower-case letters, digits and '-' (at most 30)" $i $r.name) }}
{{- end }}
{{- if hasKey $seen $r.name }}{{ fail (printf "regions: %q twice (one Deployment per region; raise its replicas instead)" $r.name) }}{{ end }}
{{- $_ := set $seen $r.name true }}
{{- with $r.secretName }}{{ $regionSecrets = append $regionSecrets . }}{{ end }}
{{- end }}
{{- $sourceSecrets := list }}
{{- range $i, $s := .Values.sourceRegistries }}
{{- if not (hasKey $registries $s.name) }}
{{- fail (printf "sourceRegistries[%d].name %q is not a registry of config.registries" $i $s.name) }}
{{- end }}
{{- with $s.secretName }}{{ $sourceSecrets = append $sourceSecrets . }}{{ end }}
{{- end }}
{{- /* Every chain's source is a source registry, and every registry a chain replicates into has its worker. */}}
{{- range $file, $doc := .Values.chains }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $file) }}
{{- fail (printf "chains: file name %q: letters, digits, '-', '_' and '.' only" $file) }}
{{- end }}
{{- if kindIs "map" $doc }}
{{- $src := dig "scope" "registry" "" $doc }}
{{- $ok := false }}
{{- range $.Values.sourceRegistries }}{{ if eq .name $src }}{{ $ok = true }}{{ end }}{{ end }}
{{- if not $ok }}
{{- fail (printf "chains[%s]: scope.registry %q is not in sourceRegistries: no worker would have its credentials" $file $src) }}
{{- end }}
{{- range $doc.replication }}
{{- if not (hasKey $seen .destination) }}
{{- fail (printf "chains[%s]: replicates into %q, which no regions entry serves" $file .destination) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- /* No role reads another role's Secret. */}}
{{- $api := .Values.api.secretName }}
{{- $chain := .Values.chainWorker.secretName }}
{{- if and $api (or (eq $api $chain) (has $api $regionSecrets) (has $api $sourceSecrets)) }}
{{- fail (printf "api.secretName %q is a worker's Secret too: give the API a Secret of its own" $api) }}
{{- end }}
{{- if and $chain (or (has $chain $regionSecrets) (has $chain $sourceSecrets)) }}
{{- fail (printf "chainWorker.secretName %q is a registry's Secret too: give the chain worker a Secret of its own" $chain) }}
{{- end }}
{{- range $i, $r := .Values.regions }}
{{- range $j, $o := $.Values.regions }}
{{- if and (ne $i $j) $r.secretName (eq $r.secretName $o.secretName) (not (has $r.secretName $sourceSecrets)) }}
{{- fail (printf "regions %s and %s share Secret %q: each region worker reads only its own registry's credentials" $r.name $o.name $r.secretName) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.temporal.tls.enabled (not .Values.temporal.tls.secretName) }}
{{- fail "temporal.tls.secretName: with temporal.tls.enabled, the Secret holding tls.crt, tls.key (and ca.crt)" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.tls.secretName) }}
{{- fail "ingress.tls.secretName: the API speaks plain HTTP, so the Ingress must terminate TLS" }}
{{- end }}
{{- end }}

{{/*
A dchain pod template. Arguments (a dict):
  root       the chart's context ($)
  component  api, chain-worker, region-worker or setup
  region     the region of a region worker
  name       the component's name (also its OTEL_SERVICE_NAME)
  args       the dchain command line (after "dchain")
  secrets    the role's Secrets (envFrom); Temporal's are mounted (TLS) or
             read by key (API key)
  values     the component's values (resources, nodeSelector, …)
  port       the port the command serves HTTP on (0: none)
  probe      "worker" or "api" (none for setup)
  work       the work dir's size limit ("": no limit)
*/}}
{{- define "dchain.pod" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $c := .values }}
metadata:
  labels:
    {{- include "dchain.componentSelector" . | nindent 4 }}
  annotations:
    # Pods roll when the config or the chains change.
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if .port }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ .port | quote }}
    prometheus.io/path: /metrics
    {{- end }}
spec:
  # dchain starts git and ssh children: with a shared process namespace the
  # pod's pause container is PID 1 and reaps them (compose: init: true),
  # and the image needs no init of its own. One container per pod, so
  # nothing else becomes visible to it.
  shareProcessNamespace: true
  # dchain never calls the Kubernetes API.
  automountServiceAccountToken: false
  # Service links would add variables named after the release's Services
  # (DCHAIN_API_PORT, …) to an environment dchain reads DCHAIN_* from.
  enableServiceLinks: false
  {{- with $c.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  {{- with $c.terminationGracePeriodSeconds }}
  terminationGracePeriodSeconds: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: dchain
      image: {{ include "dchain.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: [dchain]
      args:
        {{- toYaml .args | nindent 8 }}
      env:
        - name: DCHAIN_CONFIG
          value: /etc/dchain/dchain.yaml
        - name: DCHAIN_WORK_DIR
          value: /var/lib/dchain/work
        - name: HOME
          value: /var/lib/dchain
        - name: TEMPORAL_ADDRESS
          value: {{ required "temporal.address: the Temporal frontend, host:port" $v.temporal.address | quote }}
        - name: TEMPORAL_NAMESPACE
          value: {{ $v.temporal.namespace | quote }}
        {{- if $v.temporal.tls.enabled }}
        - name: TEMPORAL_TLS_CERT
          value: /etc/temporal-tls/tls.crt
        - name: TEMPORAL_TLS_KEY
          value: /etc/temporal-tls/tls.key
        {{- if $v.temporal.tls.caKey }}
        - name: TEMPORAL_TLS_CA
          value: /etc/temporal-tls/ca.crt
        {{- end }}
        {{- with $v.temporal.tls.serverName }}
        - name: TEMPORAL_TLS_SERVER_NAME
          value: {{ . | quote }}
        {{- end }}
        {{- end }}
        {{- with $v.temporal.apiKey.secretName }}
        - name: TEMPORAL_API_KEY
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $v.temporal.apiKey.key }}
        {{- end }}
        {{- if $v.tracing.otlpEndpoint }}
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ $v.tracing.otlpEndpoint | quote }}
        - name: OTEL_EXPORTER_OTLP_PROTOCOL
          value: {{ $v.tracing.protocol | quote }}
        - name: OTEL_SERVICE_NAME
          value: {{ .name }}
        - name: OTEL_RESOURCE_ATTRIBUTES
          value: {{ printf "service.version=%s,service.namespace=%s,k8s.namespace.name=%s" $root.Chart.AppVersion $root.Release.Name $root.Release.Namespace | quote }}
        {{- end }}
      {{- with .secrets }}
      envFrom:
        {{- range . }}
        - secretRef:
            name: {{ . }}
        {{- end }}
      {{- end }}
      {{- if .port }}
      ports:
        - name: {{ ternary "http" "metrics" (eq .probe "api") }}
          containerPort: {{ .port }}
          protocol: TCP
      {{- end }}
      {{- if eq .probe "worker" }}
      # Ready when Temporal and the registries this worker copies into
      # answer (/healthz: 200, else 503 naming what does not). Alive while
      # it serves HTTP at all: a restart would not bring a registry back.
      readinessProbe:
        httpGet: {path: /healthz, port: metrics}
        periodSeconds: 15
        timeoutSeconds: 10
        failureThreshold: 4
      livenessProbe:
        httpGet: {path: /metrics, port: metrics}
        initialDelaySeconds: 30
        periodSeconds: 20
        timeoutSeconds: 10
        failureThreshold: 6
      {{- else if eq .probe "api" }}
      # Alive: /healthz; ready to take webhooks when Temporal answers: /readyz.
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 6
      {{- end }}
      resources:
        {{- toYaml $c.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/dchain
          readOnly: true
        {{- if $v.temporal.tls.enabled }}
        - name: temporal-tls
          mountPath: /etc/temporal-tls
          readOnly: true
        {{- end }}
        # HOME (git, ssh) and the work dir: the root filesystem is read-only.
        - name: home
          mountPath: /var/lib/dchain
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      projected:
        sources:
          - configMap:
              name: {{ .configMap | default (printf "%s-config" (include "dchain.fullname" $root)) }}
              items:
                - key: dchain.yaml
                  path: dchain.yaml
                {{- range $file, $_ := $v.chains }}
                - key: {{ printf "chain.%s" $file }}
                  path: {{ printf "chains/%s" $file }}
                {{- end }}
          {{- with $v.registryCA.configMapName }}
          - configMap:
              name: {{ . }}
              items:
                - key: {{ $v.registryCA.key }}
                  path: certs/ca.pem
          {{- end }}
    {{- if $v.temporal.tls.enabled }}
    - name: temporal-tls
      secret:
        secretName: {{ $v.temporal.tls.secretName }}
        defaultMode: 0440
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
          {{- with $v.temporal.tls.caKey }}
          - key: {{ . }}
            path: ca.crt
          {{- end }}
    {{- end }}
    - name: home
      emptyDir: {{ if .work }}{sizeLimit: {{ .work }}}{{ else }}{}{{ end }}
    - name: tmp
      emptyDir: {sizeLimit: 1Gi}
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
