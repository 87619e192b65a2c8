{{/* Names, labels and the pieces every Ray pod shares. */}}

{{- define "mnemos.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RayService name: KubeRay appends "-xxxxx" and "-serve-svc" to it, so keep it short. */}}
{{- define "mnemos.rayName" -}}
{{- include "mnemos.fullname" . | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* A name of at most `max` characters: the name itself when it fits, else its head and 8 hex digits
  of its sha256 (distinct names stay distinct). Call with (dict "name" <name> "max" <n>). */}}
{{- define "mnemos.shortName" -}}
{{- if le (len .name) (int .max) -}}
{{- .name -}}
{{- else -}}
{{- printf "%s-%s" (trunc (sub (int .max) 9 | int) .name | trimSuffix "-") (sha256sum .name | trunc 8) -}}
{{- end -}}
{{- end -}}

{{/* RELAY's Service (the RayService's serveService): a Service name is a DNS label, at most 63 characters. */}}
{{- define "mnemos.relayService" -}}
{{- include "mnemos.shortName" (dict "name" (printf "%s-relay" (include "mnemos.fullname" .)) "max" 63) -}}
{{- end -}}

{{/* The Deployment and ScaledObject of a KEDA-scaled pool: KEDA names the HPA keda-hpa-<name> and labels
  it with the name, so the name is at most 54 characters (KEDA's webhook refuses longer ones).
  Call with (dict "root" $ "pool" $pool). */}}
{{- define "mnemos.kedaName" -}}
{{- include "mnemos.shortName" (dict "name" (printf "%s-neuron-%s" (include "mnemos.fullname" .root) .pool.name) "max" 54) -}}
{{- end -}}

{{/* Whether a pool is a GPU pool: its own resources ask for a GPU (a *gpu resource above 0), or its
  settings give its workers GPUs (numGpus). Call with (dict "root" $ "pool" $pool). */}}
{{- define "mnemos.gpuPool" -}}
{{- $res := .pool.resources | default dict -}}
{{- $gpu := gt ((.pool.settings | default dict).numGpus | default 0 | float64) 0.0 -}}
{{- range $part := list ($res.limits | default dict) ($res.requests | default dict) -}}
{{- range $key, $value := $part -}}
{{- if and (hasSuffix "gpu" $key) (gt ($value | float64) 0.0) }}{{ $gpu = true }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if $gpu }}true{{ end -}}
{{- end -}}

{{/* A pool's container resources (YAML): its own, and on a GPU pool neuron.resources over them (the seed's
  "NEURON GPU Optimization": limits {nvidia.com/gpu: 2} gives every GPU pool's pods two GPUs; a CPU pool is
  left as it is). Call with (dict "root" $ "pool" $pool). */}}
{{- define "mnemos.poolResources" -}}
{{- $res := deepCopy (.pool.resources | default dict) -}}
{{- if and .root.Values.neuron.resources (include "mnemos.gpuPool" .) -}}
{{- $res = mergeOverwrite $res (deepCopy .root.Values.neuron.resources) -}}
{{- end -}}
{{- toYaml $res -}}
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
{{- if .Values.relay.highThroughput }}
# Serve's high-throughput mode (HAProxy ingress, gRPC between replicas); read when Serve starts.
- name: RAY_SERVE_ENABLE_HA_PROXY
  value: "1"
- name: RAY_SERVE_THROUGHPUT_OPTIMIZED
  value: "1"
# Replicas answer each other over gRPC in this mode: 128 MiB per answer, not gRPC's 4 MiB.
- name: RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH
  value: "134217728"
# Serve's per-request HTTP metrics from the replica, not parsed from HAProxy's per-request log by a Python actor.
- name: RAY_SERVE_HAPROXY_METRICS_ENABLED
  value: "0"
{{- end }}
{{- with .Values.engram.objectStore.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.engram.objectStore.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.kuberay.env }}
{{- /* with the wrapper, the binary it runs: the haproxy init container's (_haproxy.tpl) */}}
{{- if not (and $.Values.relay.highThroughput (eq $name "RAY_SERVE_HAPROXY_BINARY_PATH")) }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- with include "mnemos.masterKeySecret" . }}
- name: MNEMOS_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.soul.masterKey.secretKey }}
{{- end }}
{{- end -}}

{{/* Where SOUL's master key comes from (soul.masterKey.source), checked against the valid choices. */}}
{{- define "mnemos.masterKeySource" -}}
{{- if hasKey .Values.soul.masterKey "create" -}}
{{- fail "soul.masterKey.create was replaced by soul.masterKey.source: existingSecret (default), externalSecret, generate (the old create=true: helm install only) or none (the old create=false)" -}}
{{- end -}}
{{- $source := .Values.soul.masterKey.source | default "existingSecret" -}}
{{- if not (has $source (list "existingSecret" "externalSecret" "generate" "none")) -}}
{{- fail (printf "soul.masterKey.source=%q: valid choices are existingSecret, externalSecret, generate, none" $source) -}}
{{- end -}}
{{- $source -}}
{{- end -}}

{{/* The Secret holding SOUL's master key; empty when pods are to make their own (source: none). */}}
{{- define "mnemos.masterKeySecret" -}}
{{- if ne (include "mnemos.masterKeySource" .) "none" -}}
{{- .Values.soul.masterKey.existingSecret | default (printf "%s-master-key" (include "mnemos.fullname" .)) -}}
{{- end -}}
{{- end -}}

{{/* The TCP port of an http(s) URL (its own, else 443 / 80) or of host:port; empty for anything else. */}}
{{- define "mnemos.urlPort" -}}
{{- if regexMatch "^[A-Za-z0-9.-]+:[0-9]+$" . -}}
{{- splitList ":" . | last -}}
{{- else if regexMatch "^https?://" . -}}
{{- $host := (urlParse .).host -}}
{{- if regexMatch ":[0-9]+$" $host -}}
{{- splitList ":" $host | last -}}
{{- else -}}
{{- ternary "443" "80" (hasPrefix "https://" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* What every Ray container reads its environment from: the object store's credentials, and the
  Secrets the External Secrets Operator syncs (soul.externalSecrets: llm-keys' OPENAI_KEY, HF_TOKEN …,
  each key a variable, which an Adapter's secretRef falls back to: relay.adapterEnvAllowlist lists them). */}}
{{- define "mnemos.envFrom" -}}
{{- $from := list -}}
{{- with .Values.engram.objectStore.credentialsSecret -}}
{{- $from = append $from (dict "secretRef" (dict "name" . "optional" true)) -}}
{{- end -}}
{{- if .Values.soul.externalSecrets.enabled -}}
{{- range .Values.soul.externalSecrets.secrets -}}
{{- $from = append $from (dict "secretRef" (dict "name" .name "optional" true)) -}}
{{- end -}}
{{- end -}}
{{- with $from -}}
envFrom:
{{ toYaml . | indent 2 }}
{{- end -}}
{{- end -}}

{{/* The keys of the synced Secrets (soul.externalSecrets), as relay.adapterEnvAllowlist takes them. */}}
{{- define "mnemos.syncedSecretKeys" -}}
{{- $keys := list -}}
{{- if .Values.soul.externalSecrets.enabled -}}
{{- range .Values.soul.externalSecrets.secrets -}}
{{- range .data -}}
{{- $keys = append $keys .secretKey -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson ($keys | uniq) -}}
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
{{- /* A Ray pod's annotations: the digest of the settings it reads (a settings-only `helm upgrade` changes
  the pod template, so KubeRay rolls a RayService to a new cluster and a KEDA pool's Deployment rolls its
  pods: they read $MNEMOS_CONFIG only when they start), and Prometheus' scrape hints when asked. */ -}}
{{- define "mnemos.podAnnotations" -}}
annotations:
  checksum/settings: {{ include (print .Template.BasePath "/configmap-settings.yaml") . | sha256sum }}
{{- if .Values.trace.metrics.prometheus.scrape }}
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .Values.kuberay.metricsPort | quote }}
  prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* trace.dashboards: `enabled` (the seed's word) or true turns dashboards, rules and the RELAY ServiceMonitor on. */}}
{{- define "mnemos.dashboardsEnabled" -}}
{{- has (toString .Values.trace.dashboards) (list "enabled" "true") -}}
{{- end -}}

{{/*
Two multi-window burn-rate alerts for one SLO (Google SRE workbook): `page` when 2% of the error
budget of the SLO's window burns in 1h (checked over 1h and 5m), `ticket` when 5% burns in 6h
(6h and 30m). Factors are never below 2 and 1, so a short window does not alert within budget.
Args: name, sli (recorded ratio prefix), slo {objective, window: Nd|Nh}, component, what.
*/}}
{{- define "mnemos.burnAlerts" -}}
{{- $w := .slo.window | toString -}}
{{- $hours := 0.0 -}}
{{- if hasSuffix "d" $w -}}{{- $hours = mulf (trimSuffix "d" $w | float64) 24 -}}
{{- else if hasSuffix "h" $w -}}{{- $hours = trimSuffix "h" $w | float64 -}}
{{- else -}}{{- fail (printf "trace.slos: window %q: write it in days (30d) or hours (24h)" $w) -}}
{{- end -}}
{{- $budget := subf 1.0 (.slo.objective | float64) -}}
{{- $fast := maxf (mulf 0.02 $hours) 2.0 -}}
{{- $slow := maxf (divf (mulf 0.05 $hours) 6.0) 1.0 -}}
{{- range $severity, $spec := dict "critical" (list "1h" "5m" $fast) "warning" (list "6h" "30m" $slow) }}
- alert: {{ $.name }}
  expr: >-
    {{ $.sli }}:ratio_rate{{ index $spec 0 }} > {{ mulf (index $spec 2) $budget }}
    and {{ $.sli }}:ratio_rate{{ index $spec 1 }} > {{ mulf (index $spec 2) $budget }}
  for: {{ if eq $severity "critical" }}2m{{ else }}15m{{ end }}
  labels: {severity: {{ $severity }}, component: {{ $.component }}, slo_window: {{ $w }}}
  annotations:
    summary: "{{ $.what }}: error budget of {{ mulf $.slo.objective 100 }}% over {{ $w }} burning {{ index $spec 2 }}x too fast ({{ index $spec 0 }} and {{ index $spec 1 }})"
{{- end }}
{{- end -}}

{{/* Seed values this chart cannot honour on KubeRay, refused with the field and what to use instead
  (rather than ignored: an operator who asks for an autoscaler must not get none without a word).
  The seed's neuron.keda is honoured: see _keda.tpl. */}}
{{- define "mnemos.checkSeedScaling" -}}
{{- if and .Values.cortex.hpa .Values.cortex.hpa.enabled -}}
{{- fail "cortex.hpa.enabled: CORTEX is one Ray actor (its state is the journal in ENGRAM), not a Deployment an HPA can scale; size the Ray head instead, and see docs/scaling.md for sharding queues across CORTEX actors" -}}
{{- end -}}
{{- end -}}

{{/* What values.schema.json cannot say, checked as mnemos.kuberay._chart.ChartValues checks it:
  RELAY's port and Ray's metrics port are neither one of Ray's own ports nor each other; pool names are unique, and a pool's worker group has minReplicas <= maxReplicas (defaults: minReplicas 0,
  maxReplicas = replicas, replicas = neuron.replicas). A KEDA-scaled pool is checked in mnemos.kedaReplicas. */}}
{{- define "mnemos.checkValues" -}}
{{- $serve := int .Values.relay.service.port -}}
{{- $metrics := int .Values.kuberay.metricsPort -}}
{{- $rayPorts := dict "6379" "Ray's GCS" "8265" "Ray's dashboard" "10001" "Ray's client server" "52365" "Ray's dashboard agent" -}}
{{- range $name, $port := dict "relay.service.port" $serve "kuberay.metricsPort" $metrics -}}
{{- with get $rayPorts (toString $port) -}}
{{- fail (printf "%s: %d is the port of %s in every Ray pod; choose another (defaults: relay.service.port 8080, kuberay.metricsPort 8090)" $name $port .) -}}
{{- end -}}
{{- end -}}
{{- if eq $serve $metrics -}}
{{- fail (printf "kuberay.metricsPort: %d is also relay.service.port, where the Serve proxies listen in every Ray pod; choose another (default 8090)" $metrics) -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $pool := .Values.neuron.pools -}}
{{- if hasKey $seen $pool.name -}}
{{- fail (printf "neuron.pools[%d].name: %q is also neuron.pools[%d].name; pool names must be unique: rename or remove one" $i $pool.name (int (get $seen $pool.name))) -}}
{{- end -}}
{{- $_ := set $seen $pool.name $i -}}
{{- if ne (include "mnemos.kedaScaled" (dict "root" $ "pool" $pool)) "true" -}}
{{- $replicas := ternary $pool.replicas $.Values.neuron.replicas (hasKey $pool "replicas") | int -}}
{{- $min := ternary $pool.minReplicas 0 (hasKey $pool "minReplicas") | int -}}
{{- $max := ternary $pool.maxReplicas $replicas (hasKey $pool "maxReplicas") | int -}}
{{- if gt $min $max -}}
{{- fail (printf "neuron.pools[%d].minReplicas: %d is greater than maxReplicas %d%s of pool %q; lower minReplicas or raise maxReplicas" $i $min $max (ternary "" " (default: replicas)" (hasKey $pool "maxReplicas")) $pool.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
