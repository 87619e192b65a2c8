{{/*
A NEURON pool's Ray worker: its node selector, its Ray node labels and its pod template, shared by
the pool's RayCluster worker group (KubeRay writes the `ray start` command) and, with
neuron.keda.enabled, by the pool's Deployment that KEDA scales (it starts Ray itself).
*/}}

{{/* The pool's node selector (its own `selector`, else neuron.nodeSelector), as YAML. Call with (dict "root" $ "pool" $pool). */}}
{{- define "mnemos.poolSelector" -}}
{{- $v := .root.Values -}}
{{- ternary .pool.selector $v.neuron.nodeSelector (hasKey .pool "selector") | default dict | toYaml -}}
{{- end -}}

{{/* The Ray node labels of the pool's workers (mnemos.dev/pool and the selector), as YAML: what CORTEX's label selectors match. */}}
{{- define "mnemos.poolRayLabels" -}}
{{- $labels := include "mnemos.poolSelector" . | fromYaml -}}
{{- $_ := set $labels "mnemos.dev/pool" .pool.name -}}
{{- toYaml $labels -}}
{{- end -}}

{{/*
The pod template (metadata and spec) of a pool's Ray worker. Call with
(dict "root" $ "pool" $pool "head" $address): `head` empty for a KubeRay worker group (KubeRay
writes the command), or the Ray head's GCS address (host:port) for a Deployment's pod, which then
runs `ray start --address=<head> --block` with what KubeRay would pass (the group's Ray labels,
--num-cpus/--memory from the container's resources, --num-gpus from a *gpu limit), and gets
/dev/shm for the object store (KubeRay adds it to its own pods) and a grace period for `ray stop`.
*/}}
{{- define "mnemos.rayWorkerPod" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $pool := .pool -}}
{{- $head := .head -}}
{{- $metrics := int $v.kuberay.metricsPort -}}
{{- $serve := int $v.relay.service.port -}}
{{- $selector := include "mnemos.poolSelector" . | fromYaml -}}
{{- $tolerations := concat ($pool.tolerations | default list) ($v.neuron.tolerations | default list) -}}
{{- $resources := include "mnemos.poolResources" (dict "root" $root "pool" $pool) | fromYaml -}}
{{- $limits := $resources.limits | default dict -}}
{{- $requests := $resources.requests | default dict -}}
{{- $memory := $limits.memory | default $requests.memory -}}
{{- $tls := include "mnemos.rayTLS" $root -}}
{{- $haproxy := include "mnemos.haproxy" $root -}}
{{- $start := list -}}
{{- if $head -}}
{{- $labels := include "mnemos.poolRayLabels" . | fromYaml -}}
{{- $pairs := list -}}
{{- range $key := keys $labels | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $key (index $labels $key)) -}}
{{- end -}}
{{- $start = list "start" (printf "--address=%s" $head) "--block" (printf "--labels=%s" (join "," $pairs)) (printf "--metrics-export-port=%d" $metrics) -}}
{{- if or $limits.cpu $requests.cpu -}}
{{- $start = append $start "--num-cpus=$(POD_CPUS)" -}}
{{- end -}}
{{- if $limits.memory -}}
{{- $start = append $start "--memory=$(POD_MEMORY)" -}}
{{- end -}}
{{- $gpus := "" -}}
{{- range $key := keys $limits | sortAlpha -}}
{{- if and (not $gpus) (hasSuffix "gpu" $key) (gt (int (index $limits $key)) 0) -}}
{{- $gpus = printf "--num-gpus=%d" (int (index $limits $key)) -}}
{{- end -}}
{{- end -}}
{{- with $gpus -}}
{{- $start = append $start . -}}
{{- end -}}
{{- end -}}
metadata:
  labels:
    {{- include "mnemos.podLabels" $root | nindent 4 }}
    app.kubernetes.io/component: ray-worker
    mnemos.dev/pool: {{ $pool.name }}
    {{- if $start }}
    mnemos.dev/scaled-by: keda
    {{- end }}
  {{- include "mnemos.podAnnotations" $root | nindent 2 }}
spec:
  {{- if $start }}
  terminationGracePeriodSeconds: {{ int ($v.neuron.keda.terminationGracePeriodSeconds | default 60) }}
  {{- end }}
  serviceAccountName: {{ include "mnemos.serviceAccountName" $root }}
  automountServiceAccountToken: false
  securityContext:
    {{- include "mnemos.podSecurityContext" $root | nindent 4 }}
  {{- with $v.global.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $selector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.neuron.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or $tls $haproxy }}
  initContainers:
    {{- if $tls }}
    {{- include "mnemos.rayTLSInitContainer" (dict "root" $root "role" "worker") | nindent 4 }}
    {{- end }}
    {{- if $haproxy }}
    {{- include "mnemos.haproxyInitContainer" $root | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    - name: ray-worker
      image: {{ include "mnemos.image" $root }}
      imagePullPolicy: {{ $v.global.imagePullPolicy }}
      {{- with $start }}
      command: [ray]
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - {name: serve, containerPort: {{ $serve }}, protocol: TCP}
        - {name: metrics, containerPort: {{ $metrics }}, protocol: TCP}
      env:
        {{- include "mnemos.env" $root | nindent 8 }}
        {{- if $v.neuron.scratch.enabled }}
        - name: HF_HOME
          value: /scratch/huggingface
        {{- end }}
        {{- if $start }}
        {{- if or $limits.cpu $requests.cpu }}
        # `ray start --num-cpus` (KubeRay's rule: the CPU limit, else the request, rounded up)
        - name: POD_CPUS
          valueFrom:
            resourceFieldRef: {resource: {{ ternary "limits.cpu" "requests.cpu" (hasKey $limits "cpu") }}, divisor: "1"}
        {{- end }}
        {{- if $limits.memory }}
        # `ray start --memory`, in bytes
        - name: POD_MEMORY
          valueFrom:
            resourceFieldRef: {resource: limits.memory, divisor: "1"}
        {{- end }}
        {{- if $v.kuberay.gcsFaultTolerance.enabled }}
        # As KubeRay sets it on its workers with GCS fault tolerance: wait for a restarted head.
        - name: RAY_gcs_rpc_server_reconnect_timeout_s
          value: "600"
        {{- end }}
        {{- end }}
        {{- if $tls }}
        {{- include "mnemos.rayTLSEnv" $root | nindent 8 }}
        {{- end }}
        {{- if $haproxy }}
        {{- include "mnemos.haproxyEnv" $root | nindent 8 }}
        {{- end }}
        {{- if include "mnemos.gpuPool" (dict "root" $root "pool" $pool) }}
        {{- with $v.neuron.env }}
        # neuron.env (the seed's "NEURON GPU Optimization"), on GPU pools
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- end }}
      {{- with include "mnemos.envFrom" $root }}{{ . | nindent 6 }}{{ end }}
      lifecycle:
        preStop:
          exec:
            command: [/bin/sh, -c, ray stop]
      {{- with $resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "mnemos.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        {{- include "mnemos.configMounts" $root | nindent 8 }}
        {{- if $v.neuron.scratch.enabled }}
        - name: scratch
          mountPath: /scratch
        {{- end }}
        {{- if $start }}
        - name: shared-mem
          mountPath: /dev/shm
        {{- end }}
        {{- if $tls }}
        {{- include "mnemos.rayTLSMount" $root | nindent 8 }}
        {{- end }}
        {{- if $haproxy }}
        {{- include "mnemos.haproxyMount" $root | nindent 8 }}
        {{- end }}
  volumes:
    {{- include "mnemos.configVolumes" $root | nindent 4 }}
    {{- if $v.neuron.scratch.enabled }}
    {{- include "mnemos.ephemeralVolume" (dict "name" "scratch" "size" $v.neuron.scratch.size "storageClass" $v.global.storageClass) | nindent 4 }}
    {{- end }}
    {{- if $start }}
    - name: shared-mem
      emptyDir:
        medium: Memory
        {{- with $memory }}
        sizeLimit: {{ . | quote }}
        {{- end }}
    {{- end }}
    {{- if $tls }}
    {{- include "mnemos.rayTLSVolumes" $root | nindent 4 }}
    {{- end }}
    {{- if $haproxy }}
    {{- include "mnemos.haproxyVolume" $root | nindent 4 }}
    {{- end }}
{{- end -}}
