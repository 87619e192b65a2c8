{{/*
The spec of a RayCluster, shared by the RayCluster, the RayService (rayClusterConfig) and the RayJob
(rayClusterSpec). Call with (dict "root" $ "faultTolerance" true|false "keda" true|false
"headService" <name>): `keda` true in the one object whose head the KEDA-scaled pools join
(mnemos.kedaCluster), which then leaves those pools' worker groups out (a pool's workers come from
one source only). `headService`: the head Service the owning object gets from KubeRay
(<RayService>-head-svc, <RayJob>-head-svc), named in the head's certificate under soul.policies.mTLS.
The same shape as mnemos.kuberay.cluster_spec() renders from Python.
*/}}
{{- define "mnemos.rayClusterSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $metrics := int $v.kuberay.metricsPort -}}
{{- $serve := int $v.relay.service.port -}}
{{- $keda := .keda -}}
{{- $tls := include "mnemos.rayTLS" $root -}}
{{- $haproxy := include "mnemos.haproxy" $root -}}
rayVersion: {{ $v.kuberay.rayVersion | quote }}
{{- if $v.kuberay.autoscaling.enabled }}
enableInTreeAutoscaling: true
autoscalerOptions:
  upscalingMode: {{ $v.kuberay.autoscaling.upscalingMode }}
  idleTimeoutSeconds: {{ $v.kuberay.autoscaling.idleTimeoutSeconds }}
  imagePullPolicy: {{ $v.global.imagePullPolicy }}
  {{- with $v.kuberay.autoscaling.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "mnemos.containerSecurityContext" $root | nindent 4 }}
  {{- if $tls }}
  # The autoscaler reads the cluster's state from GCS over gRPC: TLS too.
  env:
    {{- include "mnemos.rayTLSEnv" $root | nindent 4 }}
  volumeMounts:
    {{- include "mnemos.rayTLSMount" $root | nindent 4 }}
  {{- end }}
{{- end }}
{{- if and .faultTolerance $v.kuberay.gcsFaultTolerance.enabled }}
gcsFaultToleranceOptions:
  redisAddress: {{ $v.kuberay.gcsFaultTolerance.redisAddress | quote }}
  {{- with $v.kuberay.gcsFaultTolerance.passwordSecret }}
  redisPassword:
    valueFrom:
      secretKeyRef:
        name: {{ .name }}
        key: {{ .key }}
  {{- end }}
{{- end }}
headGroupSpec:
  serviceType: ClusterIP
  rayStartParams:
    dashboard-host: "0.0.0.0"
    metrics-export-port: {{ $metrics | quote }}
    system-config: {{ include "mnemos.spillSystemConfig" $root | quote }}
    {{- range $key, $value := $v.kuberay.head.rayStartParams }}
    {{ $key }}: {{ $value | quote }}
    {{- end }}
  template:
    metadata:
      labels:
        {{- include "mnemos.podLabels" $root | nindent 8 }}
        app.kubernetes.io/component: ray-head
      {{- include "mnemos.podAnnotations" $root | nindent 6 }}
    spec:
      serviceAccountName: {{ include "mnemos.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $v.kuberay.autoscaling.enabled }}
      securityContext:
        {{- include "mnemos.podSecurityContext" $root | nindent 8 }}
      {{- with $v.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.kuberay.head.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.kuberay.head.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $tls $haproxy }}
      initContainers:
        {{- if $tls }}
        {{- include "mnemos.rayTLSInitContainer" (dict "root" $root "role" "head" "service" .headService) | nindent 8 }}
        {{- end }}
        {{- if $haproxy }}
        {{- include "mnemos.haproxyInitContainer" $root | nindent 8 }}
        {{- end }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ include "mnemos.image" $root }}
          imagePullPolicy: {{ $v.global.imagePullPolicy }}
          ports:
            - {name: gcs-server, containerPort: 6379, protocol: TCP}
            - {name: dashboard, containerPort: 8265, protocol: TCP}
            - {name: client, containerPort: 10001, protocol: TCP}
            - {name: serve, containerPort: {{ $serve }}, protocol: TCP}
            - {name: metrics, containerPort: {{ $metrics }}, protocol: TCP}
          env:
            {{- include "mnemos.env" $root | nindent 12 }}
            {{- if $v.engram.persistence.enabled }}
            - name: MNEMOS_HOME
              value: /var/lib/mnemos
            {{- end }}
            {{- if $tls }}
            {{- include "mnemos.rayTLSEnv" $root | nindent 12 }}
            {{- end }}
            {{- if $haproxy }}
            {{- include "mnemos.haproxyEnv" $root | nindent 12 }}
            {{- end }}
          {{- with include "mnemos.envFrom" $root }}{{ . | nindent 10 }}{{ end }}
          {{- with $v.cortex.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "mnemos.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "mnemos.configMounts" $root | nindent 12 }}
            {{- if $v.engram.persistence.enabled }}
            - name: mnemos-home
              mountPath: /var/lib/mnemos
            {{- end }}
            {{- if $tls }}
            {{- include "mnemos.rayTLSMount" $root | nindent 12 }}
            {{- end }}
            {{- if $haproxy }}
            {{- include "mnemos.haproxyMount" $root | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "mnemos.configVolumes" $root | nindent 8 }}
        {{- if $v.engram.persistence.enabled }}
        {{- $home := dict "name" "mnemos-home" "size" $v.engram.persistence.size "storageClass" ($v.engram.persistence.storageClass | default $v.global.storageClass) }}
        {{- include "mnemos.ephemeralVolume" $home | nindent 8 }}
        {{- end }}
        {{- if $tls }}
        {{- include "mnemos.rayTLSVolumes" $root | nindent 8 }}
        {{- end }}
        {{- if $haproxy }}
        {{- include "mnemos.haproxyVolume" $root | nindent 8 }}
        {{- end }}
{{- /* A pool that KEDA scales (neuron.keda) runs as a Deployment of workers joining this cluster instead. */}}
{{- $groups := list }}
{{- range $pool := $v.neuron.pools }}
{{- if not (and $keda (eq (include "mnemos.kedaScaled" (dict "root" $root "pool" $pool)) "true")) }}
{{- $groups = append $groups $pool }}
{{- end }}
{{- end }}
{{- with $groups }}
workerGroupSpecs:
{{- range $pool := . }}
  {{- $replicas := ternary $pool.replicas $v.neuron.replicas (hasKey $pool "replicas") }}
  - groupName: {{ $pool.name }}
    replicas: {{ $replicas }}
    minReplicas: {{ ternary $pool.minReplicas 0 (hasKey $pool "minReplicas") }}
    maxReplicas: {{ ternary $pool.maxReplicas $replicas (hasKey $pool "maxReplicas") }}
    labels:
      {{- include "mnemos.poolRayLabels" (dict "root" $root "pool" $pool) | nindent 6 }}
    rayStartParams:
      metrics-export-port: {{ $metrics | quote }}
    template:
      {{- include "mnemos.rayWorkerPod" (dict "root" $root "pool" $pool) | nindent 6 }}
{{- end }}
{{- end }}
{{- end -}}
