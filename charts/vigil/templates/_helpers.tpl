{{/* The name of the release's objects. */}}
{{- define "vigil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the manager's pods. */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end -}}

{{- define "vigil.serviceAccountName" -}}{{ include "vigil.fullname" . }}{{- end -}}
{{- define "vigil.scannerServiceAccountName" -}}{{ include "vigil.fullname" . }}-scanner{{- end -}}
{{- define "vigil.webhookServiceName" -}}{{ include "vigil.fullname" . }}-webhook{{- end -}}
{{- define "vigil.webhookSecretName" -}}{{ include "vigil.fullname" . }}-webhook-tls{{- end -}}
{{- define "vigil.pullSecretReader" -}}{{ include "vigil.fullname" . }}-pull-secret-reader{{- end -}}

{{/* The manager's image. */}}
{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The scanner's image: the manager's unless set. */}}
{{- define "vigil.scannerImage" -}}
{{- if .Values.vulnerabilityScanning.scanner.image -}}
{{- .Values.vulnerabilityScanning.scanner.image -}}
{{- else -}}
{{- include "vigil.image" . -}}
{{- end -}}
{{- end -}}

{{/* The Issuer that signs the webhook certificate. */}}
{{- define "vigil.issuerRef" -}}
{{- if .Values.webhook.certManager.issuerRef.name -}}
name: {{ .Values.webhook.certManager.issuerRef.name }}
kind: {{ .Values.webhook.certManager.issuerRef.kind }}
{{- if .Values.webhook.certManager.issuerRef.group }}
group: {{ .Values.webhook.certManager.issuerRef.group }}
{{- end }}
{{- else -}}
name: {{ include "vigil.fullname" . }}-ca
kind: Issuer
{{- end -}}
{{- end -}}
