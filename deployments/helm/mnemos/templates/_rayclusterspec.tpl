{{/*
The spec of a RayCluster, shared by the RayCluster, the RayService (rayClusterConfig) and the RayJob
(rayClusterSpec). Call with (dict "root" $ "faultTolerance" true|false).
The same shape as mnemos.kuberay.cluster_spec() renders from Python.
*/}}
{{- define "mnemos.rayClusterSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $metrics := int $v.kuberay.metricsPort -}}
{{- $serve := int $v.relay.service.port -}}
rayVersion: {{ $v.kuberay.rayVersion | quote }}
{{- if $v.kuberay.autoscaling.enabled }}
enableInTreeAutoscaling: true
autoscalerOptions:
  upscalingMode: {{ $v.kuberay.autoscaling.upscalingMode }}
  idleTimeoutSeconds: {{ $v.kuberay.autoscaling.idleTimeoutSeconds }}
  imagePullPolicy: {{ $v.global.imagePullPolicy }}
  resources:
    {{- toYaml $v.kuberay.autoscaling.resources | nindent 4 }}
  securityContext:
    {{- include "mnemos.containerSecurityContext" $root | nindent 4 }}
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
      {{- with include "mnemos.scrapeAnnotations" $root }}{{ . | nindent 6 }}{{ end }}
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
          {{- with include "mnemos.envFrom" $root }}{{ . | nindent 10 }}{{ end }}
          resources:
            {{- toYaml $v.cortex.resources | nindent 12 }}
          securityContext:
            {{- include "mnemos.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "mnemos.configMounts" $root | nindent 12 }}
            {{- if $v.engram.persistence.enabled }}
            - name: mnemos-home
              mountPath: /var/lib/mnemos
            {{- end }}
      volumes:
        {{- include "mnemos.configVolumes" $root | nindent 8 }}
        {{- if $v.engram.persistence.enabled }}
        {{- $home := dict "name" "mnemos-home" "size" $v.engram.persistence.size "storageClass" ($v.engram.persistence.storageClass | default $v.global.storageClass) }}
        {{- include "mnemos.ephemeralVolume" $home | nindent 8 }}
        {{- end }}
workerGroupSpecs:
{{- range $pool := $v.neuron.pools }}
  {{- $selector := ternary $pool.selector $v.neuron.nodeSelector (hasKey $pool "selector") | default dict }}
  {{- $tolerations := concat ($pool.tolerations | default list) ($v.neuron.tolerations | default list) }}
  {{- $replicas := ternary $pool.replicas $v.neuron.replicas (hasKey $pool "replicas") }}
  - groupName: {{ $pool.name }}
    replicas: {{ $replicas }}
    minReplicas: {{ ternary $pool.minReplicas 0 (hasKey $pool "minReplicas") }}
    maxReplicas: {{ ternary $pool.maxReplicas $replicas (hasKey $pool "maxReplicas") }}
    labels:
      mnemos.dev/pool: {{ $pool.name }}
      {{- with $selector }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    rayStartParams:
      metrics-export-port: {{ $metrics | quote }}
    template:
      metadata:
        labels:
          {{- include "mnemos.podLabels" $root | nindent 10 }}
          app.kubernetes.io/component: ray-worker
          mnemos.dev/pool: {{ $pool.name }}
        {{- with include "mnemos.scrapeAnnotations" $root }}{{ . | nindent 8 }}{{ end }}
      spec:
        serviceAccountName: {{ include "mnemos.serviceAccountName" $root }}
        automountServiceAccountToken: false
        securityContext:
          {{- include "mnemos.podSecurityContext" $root | nindent 10 }}
        {{- with $v.global.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $selector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $tolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $v.neuron.affinity }}
        affinity:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ include "mnemos.image" $root }}
            imagePullPolicy: {{ $v.global.imagePullPolicy }}
            ports:
              - {name: serve, containerPort: {{ $serve }}, protocol: TCP}
              - {name: metrics, containerPort: {{ $metrics }}, protocol: TCP}
            env:
              {{- include "mnemos.env" $root | nindent 14 }}
              {{- if $v.neuron.scratch.enabled }}
              - name: HF_HOME
                value: /scratch/huggingface
              {{- end }}
            {{- with include "mnemos.envFrom" $root }}{{ . | nindent 12 }}{{ end }}
            lifecycle:
              preStop:
                exec:
                  command: [/bin/sh, -c, ray stop]
            resources:
              {{- toYaml $pool.resources | nindent 14 }}
            securityContext:
              {{- include "mnemos.containerSecurityContext" $root | nindent 14 }}
            volumeMounts:
              {{- include "mnemos.configMounts" $root | nindent 14 }}
              {{- if $v.neuron.scratch.enabled }}
              - name: scratch
                mountPath: /scratch
              {{- end }}
        volumes:
          {{- include "mnemos.configVolumes" $root | nindent 10 }}
          {{- if $v.neuron.scratch.enabled }}
          {{- include "mnemos.ephemeralVolume" (dict "name" "scratch" "size" $v.neuron.scratch.size "storageClass" $v.global.storageClass) | nindent 10 }}
          {{- end }}
{{- end }}
{{- end -}}
