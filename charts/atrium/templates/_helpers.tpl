{{/* Names, labels and the image, shared by every template. */}}
{{- define "atrium.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "atrium.labels" -}}
app.kubernetes.io/name: atrium
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "atrium.selector" -}}
app.kubernetes.io/name: atrium
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "atrium.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Restricted pod security: non-root, read-only root, nothing extra. */}}
{{- define "atrium.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "atrium.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* Namespaces whose Secrets the gateway reads. */}}
{{- define "atrium.secretNamespaces" -}}
{{- if .Values.gateway.secretNamespaces -}}{{ join "," .Values.gateway.secretNamespaces }}{{- else -}}{{ .Release.Namespace }}{{- end -}}
{{- end -}}

{{/* The OTEL_* variables of tracing.*, for the controller and the gateway. */}}
{{- define "atrium.tracingEnv" -}}
{{- if .Values.tracing.enabled -}}
{{- if not .Values.tracing.otlpEndpoint -}}
{{- fail "tracing.enabled needs tracing.otlpEndpoint (the collector's OTLP/HTTP endpoint, e.g. http://otel-collector:4318)" -}}
{{- end -}}
- {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: {{ .Values.tracing.otlpEndpoint | quote }}}
- {name: OTEL_TRACES_SAMPLER, value: {{ .Values.tracing.sampler | quote }}}
- {name: OTEL_TRACES_SAMPLER_ARG, value: {{ .Values.tracing.samplerRatio | quote }}}
{{- with .Values.tracing.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- end -}}
