{{/* The chart's name: nameOverride, else the chart's. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of the release's objects: fullnameOverride, else the release's name with the chart's. */}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "vigil.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object: the chart's, then commonLabels. */}}
{{- define "vigil.labels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the manager's pods. */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end -}}

{{- define "vigil.serviceAccountName" -}}{{ include "vigil.fullname" . }}{{- end -}}
{{- define "vigil.scannerServiceAccountName" -}}{{ include "vigil.fullname" . }}-scanner{{- end -}}
{{- define "vigil.webhookServiceName" -}}{{ include "vigil.fullname" . }}-webhook{{- end -}}
{{- define "vigil.webhookSecretName" -}}{{ include "vigil.fullname" . }}-webhook-tls{{- end -}}
{{- define "vigil.pullSecretReader" -}}{{ include "vigil.fullname" . }}-pull-secret-reader{{- end -}}
{{- define "vigil.metricsReader" -}}{{ include "vigil.fullname" . }}-metrics-reader{{- end -}}
{{- define "vigil.serviceMonitorNamespace" -}}{{ .Values.metrics.serviceMonitor.namespace | default .Release.Namespace }}{{- end -}}

{{/* The manager's image: registry/repository, then @digest, else :tag (the chart's appVersion by default). */}}
{{- define "vigil.image" -}}
{{- $repository := .Values.image.repository -}}
{{- with .Values.image.registry -}}
{{- $repository = printf "%s/%s" . $repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
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

{{/*
The environment of the manager and the scan Jobs for proxies and extra certificate authorities.
NO_PROXY always holds the API server's service address and the cluster's own names, so that
neither the API server nor the manager's report endpoint is reached through the proxy.
*/}}
{{- define "vigil.networkEnv" -}}
{{- with .Values.proxy }}
{{- if or .httpProxy .httpsProxy }}
- name: HTTP_PROXY
  value: {{ .httpProxy | quote }}
- name: HTTPS_PROXY
  value: {{ .httpsProxy | quote }}
- name: NO_PROXY
  value: {{ join "," (compact (list "$(KUBERNETES_SERVICE_HOST)" ".svc" ".cluster.local" "localhost" "127.0.0.1" .noProxy)) | quote }}
{{- end }}
{{- end }}
{{- if or .Values.caBundle.configMapName .Values.caBundle.secretName }}
- name: SSL_CERT_DIR
  value: /etc/ssl/certs:/etc/vigil/ca-bundle
{{- end }}
{{- end -}}

{{/* The volume of the extra certificate authorities, mounted at /etc/vigil/ca-bundle. */}}
{{/* The ConfigMap holding the CA of the API server's admission client certificate; empty when none. */}}
{{- define "vigil.admissionClientCA" -}}
{{- with .Values.webhook.clientCA }}
{{- if .caBundle }}{{ include "vigil.fullname" $ }}-admission-client-ca{{ else }}{{ .configMapName }}{{ end }}
{{- end }}
{{- end -}}

{{- define "vigil.caBundleVolume" -}}
{{- with .Values.caBundle }}
{{- if .configMapName }}
- name: ca-bundle
  configMap:
    name: {{ .configMapName }}
    items: [{key: {{ .key }}, path: ca-bundle.crt}]
{{- else if .secretName }}
- name: ca-bundle
  secret:
    secretName: {{ .secretName }}
    items: [{key: {{ .key }}, path: ca-bundle.crt}]
{{- end }}
{{- end }}
{{- end -}}

{{/* The pod template of the scan Jobs: the file that --scanner-pod-template reads. */}}
{{- define "vigil.scannerPodTemplate" -}}
{{- $scanner := .Values.vulnerabilityScanning.scanner -}}
{{- with $scanner.labels }}
labels: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $scanner.annotations }}
annotations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with concat (.Values.imagePullSecrets | default list) ($scanner.imagePullSecrets | default list) }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $scanner.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $scanner.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $scanner.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.resources.scanner }}
resources: {{- toYaml . | nindent 2 }}
{{- end }}
{{- $env := include "vigil.networkEnv" . | trim }}
{{- with $scanner.env }}
{{- $env = printf "%s\n%s" $env (toYaml .) | trim }}
{{- end }}
{{- with $env }}
env: {{- . | nindent 0 }}
{{- end }}
{{- with include "vigil.caBundleVolume" . | trim }}
volumes: {{- . | nindent 0 }}
volumeMounts:
- {name: ca-bundle, mountPath: /etc/vigil/ca-bundle}
{{- end }}
{{- end -}}

{{/*
vigil.persistence is "true" when the manager's replicas keep their SBOMs and database on claims
of their own: persistence.enabled true, or auto (the default) when persistence.storageClass
names a class or the cluster has a default StorageClass. `helm template` and client-side dry
runs see no cluster, so auto renders no claims there.
*/}}
{{- define "vigil.persistence" -}}
{{- $enabled := .Values.persistence.enabled }}
{{- if eq (toString $enabled) "true" }}true
{{- else if eq (toString $enabled) "auto" }}
{{- if .Values.persistence.storageClass }}true
{{- else }}
{{- $default := false }}
{{- range (lookup "storage.k8s.io/v1" "StorageClass" "" "").items }}
{{- $annotations := .metadata.annotations | default dict }}
{{- if or (eq (get $annotations "storageclass.kubernetes.io/is-default-class") "true") (eq (get $annotations "storageclass.beta.kubernetes.io/is-default-class") "true") }}
{{- $default = true }}
{{- end }}
{{- end }}
{{- if $default }}true{{ end }}
{{- end }}
{{- end }}
{{- end -}}
