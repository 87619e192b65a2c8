{{/* Names, labels and the pieces every Ray pod shares. */}}

{{- define "mnemos.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RayService name: KubeRay appends "-xxxxx" and "-serve-svc" to it, so keep it short. */}}
{{- define "mnemos.rayName" -}}
{{- include "mnemos.fullname" . | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "mnemos.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mnemos.labels" -}}
{{ include "mnemos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mnemos
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Pod labels leave out version labels: a chart upgrade must not roll the Ray cluster by itself. */}}
{{- define "mnemos.podLabels" -}}
{{ include "mnemos.selectorLabels" . }}
app.kubernetes.io/part-of: mnemos
{{- end -}}

{{- define "mnemos.image" -}}
{{- printf "%s:%s" .Values.global.registry (.Values.global.imageTag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "mnemos.serviceAccountName" -}}
{{- if .Values.kuberay.serviceAccount.create -}}
{{- .Values.kuberay.serviceAccount.name | default (include "mnemos.fullname" .) -}}
{{- else -}}
{{- .Values.kuberay.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "mnemos.engramUri" -}}
{{- .Values.engram.uri | default (printf "%s/engram" (trimSuffix "/" .Values.engram.objectStore.bucket)) -}}
{{- end -}}

{{/* `ray start --system-config`, shell-quoted: KubeRay pastes rayStartParams into the command. */}}
{{- define "mnemos.spillSystemConfig" -}}
{{- $uri := printf "%s/%s" (trimSuffix "/" .Values.engram.objectStore.bucket) .Values.engram.objectStore.spillPrefix -}}
{{- $spill := dict "type" "smart_open" "params" (dict "uri" $uri) | toJson -}}
{{- printf "'%s'" (dict "object_spilling_config" $spill | toJson) -}}
{{- end -}}

{{/* Restricted Pod Security Standard. */}}
{{- define "mnemos.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.global.podSecurity.runAsUser }}
runAsGroup: {{ .Values.global.podSecurity.runAsGroup }}
fsGroup: {{ .Values.global.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mnemos.containerSecurityContext" -}}
allowPrivilegeEscalation: false
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mnemos.env" -}}
- name: MNEMOS_ENGRAM__URI
  value: {{ include "mnemos.engramUri" . | quote }}
- name: MNEMOS_CONFIG
  value: /etc/mnemos/settings/mnemos.yaml
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
{{- with .Values.engram.objectStore.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.engram.objectStore.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.kuberay.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- with include "mnemos.masterKeySecret" . }}
- name: MNEMOS_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.soul.masterKey.secretKey }}
{{- end }}
{{- end -}}

{{/* The Secret holding SOUL's master key; empty when pods are to make their own. */}}
{{- define "mnemos.masterKeySecret" -}}
{{- $mk := .Values.soul.masterKey -}}
{{- if $mk.existingSecret -}}
{{- $mk.existingSecret -}}
{{- else if $mk.create -}}
{{- printf "%s-master-key" (include "mnemos.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "mnemos.envFrom" -}}
{{- with .Values.engram.objectStore.credentialsSecret -}}
envFrom:
  - secretRef:
      name: {{ . }}
      optional: true
{{- end -}}
{{- end -}}

{{- define "mnemos.configVolumes" -}}
- name: settings
  configMap:
    name: {{ include "mnemos.fullname" . }}-settings
- name: genome
  configMap:
    name: {{ include "mnemos.fullname" . }}-genome
{{- end -}}

{{- define "mnemos.configMounts" -}}
- name: settings
  mountPath: /etc/mnemos/settings
  readOnly: true
- name: genome
  mountPath: /etc/mnemos/genome
  readOnly: true
{{- end -}}

{{/* A generic ephemeral volume: a PVC created and deleted with the pod. */}}
{{- define "mnemos.ephemeralVolume" -}}
- name: {{ .name }}
  ephemeral:
    volumeClaimTemplate:
      spec:
        accessModes: [ReadWriteOnce]
        storageClassName: {{ .storageClass | quote }}
        resources:
          requests:
            storage: {{ .size | quote }}
{{- end -}}

{{/* The Serve config of RELAY (serveConfigV2): deployments/serve/mnemos.yaml with in-cluster http_options. */}}
{{- define "mnemos.serveConfig" -}}
proxy_location: EveryNode
http_options:
  host: 0.0.0.0
  port: {{ int .Values.relay.service.port }}
applications:
  - name: mnemos
    route_prefix: /
    import_path: mnemos.relay:build_app
    args:
      # ENGRAM root; empty: $MNEMOS_ENGRAM__URI, set on every Ray pod
      engram_uri: ""
{{- end -}}

{{/* GENOME resources as one multi-document YAML: genome.resources, and relay.adapters as Adapters. */}}
{{- define "mnemos.genomeResources" -}}
{{- $docs := list }}
{{- range .Values.genome.resources }}
{{- $docs = append $docs (toYaml .) }}
{{- end }}
{{- range .Values.relay.adapters }}
{{- $adapter := dict "apiVersion" "genome.mnemos.dev/v1" "kind" "Adapter" "metadata" (dict "name" .name) "spec" (omit . "name") }}
{{- $docs = append $docs (toYaml $adapter) }}
{{- end }}
{{- join "\n---\n" $docs -}}
{{- end -}}

{{/* Prometheus annotations on Ray pods (trace.metrics.prometheus.scrape). */}}
{{- define "mnemos.scrapeAnnotations" -}}
{{- if .Values.trace.metrics.prometheus.scrape -}}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .Values.kuberay.metricsPort | quote }}
  prometheus.io/path: /metrics
{{- end -}}
{{- end -}}
