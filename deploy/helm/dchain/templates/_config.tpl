{{/* The data of dchain's ConfigMaps (configmap.yaml, setup-configmap.yaml):
dchain.yaml and the chain files. */}}
{{- define "dchain.configData" -}}
data:
  dchain.yaml: |
    # Rendered by the dchain Helm chart from its values (config).
    {{- toYaml .Values.config | nindent 4 }}
  {{- range $file, $doc := .Values.chains }}
  {{ printf "chain.%s" $file }}: |
    {{- if kindIs "string" $doc }}
    {{- $doc | trimSuffix "\n" | nindent 4 }}
    {{- else }}
    {{- toYaml $doc | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
