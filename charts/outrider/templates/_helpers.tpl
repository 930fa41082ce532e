{{/*
Names, labels and small shared pieces. Object names are truncated to 63 characters (DNS label limit).
*/}}

{{- define "outrider.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outrider.fullname" -}}
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

{{/* A component's object name: <fullname>-<component>, truncated so the whole stays within 63 characters. */}}
{{- define "outrider.componentName" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- printf "%s-%s" (include "outrider.fullname" $root | trunc (int (sub 62 (len $component)))) $component | trimSuffix "-" }}
{{- end }}

{{- define "outrider.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outrider.labels" -}}
helm.sh/chart: {{ include "outrider.chart" . }}
{{ include "outrider.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: outrider
{{- end }}

{{- define "outrider.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outrider.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component (operator, control-plane): the common labels plus app.kubernetes.io/component. */}}
{{- define "outrider.componentLabels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- include "outrider.labels" $root }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{- define "outrider.componentSelectorLabels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- include "outrider.selectorLabels" $root }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{- define "outrider.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret that holds the API token, and its key. */}}
{{- define "outrider.tokenSecretName" -}}
{{- default (include "outrider.componentName" (list . "api-token")) .Values.apiToken.existingSecret }}
{{- end }}

{{/* The Secret with the operator's own token (role operator), and the one with the run signing key. */}}
{{- define "outrider.operatorTokenSecretName" -}}
{{- default (include "outrider.componentName" (list . "operator-token")) .Values.operatorToken.existingSecret }}
{{- end }}
{{- define "outrider.runSigningSecretName" -}}
{{- default (include "outrider.componentName" (list . "run-signing-key")) .Values.runCredentials.existingSecret }}
{{- end }}

{{/* Whether the control plane uses PostgreSQL (a URL given inline or in an existing Secret) rather than SQLite. */}}
{{- define "outrider.externalDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{- end }}
{{- end }}

{{- define "outrider.databaseSecretName" -}}
{{- default (include "outrider.componentName" (list . "database")) .Values.database.existingSecret }}
{{- end }}

{{- define "outrider.autonomyConfigMapName" -}}
{{- include "outrider.componentName" (list . "autonomy") }}
{{- end }}

{{- define "outrider.controlPlaneUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "outrider.componentName" (list . "control-plane")) .Release.Namespace (int .Values.controlPlane.port) }}
{{- end }}

{{/* The kopf peering object the operator replicas share (replicas > 1 only). */}}
{{- define "outrider.peeringName" -}}
{{- include "outrider.fullname" . }}
{{- end }}

{{/*
A checksum of the configuration the pods read at start (values that end up in env, args and Secrets), so a
`helm upgrade` that changes it rolls the pods. The generated token is not part of it: it is kept across upgrades.
*/}}
{{- define "outrider.configChecksum" -}}
{{- $config := dict "apiToken" .Values.apiToken "database" .Values.database "controlPlane" .Values.controlPlane "operator" .Values.operator "autonomyConfigMap" (include "outrider.autonomyConfigMapName" .) }}
{{- toJson $config | sha256sum }}
{{- end }}

{{/* The restricted pod and container security contexts every Outrider pod uses. */}}
{{- define "outrider.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "outrider.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Refuse combinations that would silently lose data or break safety, with a message that says what to do. */}}
{{- define "outrider.validate" -}}
{{- if and (gt (int .Values.controlPlane.replicas) 1) (not (include "outrider.externalDatabase" .)) }}
{{- fail "controlPlane.replicas > 1 needs PostgreSQL (database.url or database.existingSecret): SQLite is one file on one ReadWriteOnce volume" }}
{{- end }}
{{- if and .Values.database.url .Values.database.existingSecret }}
{{- fail "set only one of database.url and database.existingSecret" }}
{{- end }}
{{- end }}

{{/*
The autonomy ConfigMap's data. Input: dict "autonomy" (.Values.autonomy) and "live" (the ConfigMap found in the
cluster, or an empty dict). A live pause (enabled other than "true") is kept when the values would enable
autonomy: an upgrade never resumes agents by itself. Otherwise the values apply (including a pause from values).
*/}}
{{- define "outrider.autonomyData" -}}
{{- $values := dict "enabled" (ternary "true" "false" .autonomy.enabled) "mode" .autonomy.mode "reason" .autonomy.reason }}
{{- $liveData := (get .live "data") | default dict }}
{{- if and .autonomy.enabled .live (ne (get $liveData "enabled" | toString) "true") }}
{{- toYaml $liveData }}
{{- else }}
{{- toYaml $values }}
{{- end }}
{{- end }}
