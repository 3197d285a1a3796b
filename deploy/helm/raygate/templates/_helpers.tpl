{{/* The chart name, or nameOverride. */}}
{{- define "raygate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the release's objects: fullnameOverride, else the release name when it
already contains the chart name (so `helm install raygate` gives "raygate",
deploy/base's names), else <release>-<chart>.
*/}}
{{- define "raygate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "raygate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: the Deployment's, the Service's and the PDB's. */}}
{{- define "raygate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raygate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "raygate.labels" -}}
helm.sh/chart: {{ include "raygate.chart" . }}
{{ include "raygate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: raygate
{{- end }}

{{- define "raygate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "raygate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "raygate.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "raygate.fullname" .)) .Values.certificates.secretName }}
{{- end }}

{{- define "raygate.policyConfigMapName" -}}
{{- if .Values.policy.existingConfigMap }}
{{- .Values.policy.existingConfigMap }}
{{- else if .Values.policy.inline }}
{{- printf "%s-policy" (include "raygate.fullname" .) }}
{{- end }}
{{- end }}

{{- define "raygate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "raygate.audit" -}}
{{- if eq .Values.mode "audit" }}true{{ end }}
{{- end }}

{{/*
The namespaces no webhook ever sees: the control plane's, the release's own (an
unreachable raygate must not block its own repair), the inline policy's
spec.scope.exemptNamespaces and webhook.exemptNamespaces. Rendered as a YAML flow list.
*/}}
{{- define "raygate.exemptNamespaces" -}}
{{- $all := list "kube-system" "kube-public" "kube-node-lease" }}
{{- if .Values.policy.inline }}
{{- $policy := fromYaml .Values.policy.inline }}
{{- if hasKey $policy "Error" }}
{{- fail (printf "policy.inline is not YAML: %s" $policy.Error) }}
{{- end }}
{{- $spec := default dict $policy.spec }}
{{- $scope := default dict $spec.scope }}
{{- $all = concat $all (default list $scope.exemptNamespaces) }}
{{- end }}
{{- $all = concat $all .Values.webhook.exemptNamespaces (list .Release.Namespace) }}
{{- toJson (uniq $all) }}
{{- end }}

{{/* failurePolicy of webhook KEY (ray, pods, networkPolicies, mutate): Ignore in audit mode. */}}
{{- define "raygate.failurePolicy" -}}
{{- if include "raygate.audit" .root }}Ignore{{ else }}{{ index .root.Values.webhook.failurePolicy .key }}{{ end }}
{{- end }}

{{/* clientConfig of a webhook calling PATH. */}}
{{- define "raygate.clientConfig" -}}
{{- $v := .root.Values }}
{{- if $v.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" $v.webhook.url) .path | quote }}
{{- else }}
service:
  name: {{ include "raygate.fullname" .root }}
  namespace: {{ .root.Release.Namespace }}
  port: {{ $v.service.port }}
  path: {{ .path }}
{{- end }}
{{- if eq $v.certificates.mode "existingSecret" }}
caBundle: {{ required "certificates.caBundle is required with certificates.mode=existingSecret" $v.certificates.caBundle | quote }}
{{- end }}
{{- end }}

{{/* Annotations of both webhook configurations. */}}
{{- define "raygate.webhookAnnotations" -}}
{{- if eq .Values.certificates.mode "certManager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "raygate.tlsSecretName" .) }}
{{- end }}
{{- end }}
