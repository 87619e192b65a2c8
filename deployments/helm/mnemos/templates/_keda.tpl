{{/*
neuron.keda: NEURON pools that KEDA scales on CORTEX's queue depth. KEDA scales a workload through
its /scale subresource, and KubeRay's RayCluster and RayService have none, so each such pool is a
Deployment of Ray workers that join the head of one Ray cluster (the RayService's, else the
standing RayCluster's), and that pool's worker group leaves that cluster's workerGroupSpecs.
*/}}

{{- define "mnemos.kedaEnabled" -}}
{{- if and .Values.neuron.keda .Values.neuron.keda.enabled }}true{{ end -}}
{{- end -}}

{{/* "true" when KEDA scales this pool: neuron.keda.enabled and no `keda: false` on the pool. Call with (dict "root" $ "pool" $pool). */}}
{{- define "mnemos.kedaScaled" -}}
{{- if and (include "mnemos.kedaEnabled" .root) (ternary .pool.keda true (hasKey .pool "keda")) }}true{{ end -}}
{{- end -}}

{{/* The kind of the Ray object whose head the KEDA-scaled workers join; empty when KEDA is off. */}}
{{- define "mnemos.kedaCluster" -}}
{{- if include "mnemos.kedaEnabled" . -}}
{{- if .Values.kuberay.rayService.enabled -}}RayService
{{- else if .Values.kuberay.rayCluster.enabled -}}RayCluster
{{- else -}}
{{- fail "neuron.keda.enabled: the KEDA-scaled NEURON workers join the head of the RayService (kuberay.rayService.enabled) or of the standing RayCluster (kuberay.rayCluster.enabled); turn one on" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The GCS address of that head: the Service KubeRay creates, <RayService>-head-svc (it follows the serving cluster) or <RayCluster>-head-svc. */}}
{{- define "mnemos.kedaHeadAddress" -}}
{{- $kind := include "mnemos.kedaCluster" . -}}
{{- $owner := ternary (include "mnemos.rayName" .) (printf "%s-cluster" (include "mnemos.rayName" .)) (eq $kind "RayService") -}}
{{- printf "%s-head-svc:6379" $owner -}}
{{- end -}}

{{/* Keys of neuron.keda, of its scaledObject and of a trigger, checked so that a misspelt one is reported, not dropped. */}}
{{- define "mnemos.kedaCheckValues" -}}
{{- $keda := .Values.neuron.keda -}}
{{- $valid := dict
  "neuron.keda" (list "enabled" "scaledObject" "terminationGracePeriodSeconds" "workersTrigger")
  "neuron.keda.scaledObject" (list "pollingInterval" "cooldownPeriod" "initialCooldownPeriod" "idleReplicaCount" "minReplicaCount" "maxReplicaCount" "fallback" "advanced" "triggers") -}}
{{- $given := dict "neuron.keda" $keda "neuron.keda.scaledObject" ($keda.scaledObject | default dict) -}}
{{- range $where, $keys := $valid -}}
{{- range $key, $_ := index $given $where -}}
{{- if not (has $key $keys) -}}
{{- fail (printf "%s.%s: unknown key; valid keys: %s (the chart sets scaleTargetRef itself)" $where $key (join ", " $keys)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $triggerKeys := list "type" "name" "metadata" "metricType" "authenticationRef" "useCachedMetrics" -}}
{{- range $i, $trigger := ($keda.scaledObject | default dict).triggers -}}
{{- range $key, $_ := $trigger -}}
{{- if not (has $key $triggerKeys) -}}
{{- fail (printf "neuron.keda.scaledObject.triggers[%d].%s: unknown key; valid keys: %s" $i $key (join ", " $triggerKeys)) -}}
{{- end -}}
{{- end -}}
{{- if not (and $trigger.type (kindIs "string" $trigger.type)) -}}
{{- fail (printf "neuron.keda.scaledObject.triggers[%d].type: required, the KEDA scaler's name (prometheus)" $i) -}}
{{- end -}}
{{- end -}}
{{- if not ($keda.scaledObject | default dict).triggers -}}
{{- fail "neuron.keda.scaledObject.triggers: give at least one, e.g. {type: prometheus, metadata: {serverAddress: http://prometheus:9090, threshold: '10'}} (the query on mnemos_cortex_queue_depth is filled in per pool)" -}}
{{- end -}}
{{- range $pool := .Values.neuron.pools -}}
{{- if and (hasKey $pool "keda") (not (kindIs "bool" $pool.keda)) -}}
{{- fail (printf "neuron.pools[%s].keda: true or false (false: this pool keeps its KubeRay worker group)" $pool.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The ScaledObject triggers of one pool: neuron.keda.scaledObject.triggers, metadata values as
strings (the CRD's type). A prometheus trigger without a `query` gets the pool's queue depth:
RELAY's /metrics serves the cluster-wide value on every replica, so the query takes the largest
value per queue across scrape targets, then sums the queues. `metricName` (the seed's key) may
only name that metric; KEDA removed the key in 2.12, so it is not passed on.
Call with (dict "root" $ "pool" $pool).
*/}}
{{- define "mnemos.kedaTriggers" -}}
{{- $pool := .pool -}}
{{- $out := list -}}
{{- range $i, $trigger := .root.Values.neuron.keda.scaledObject.triggers -}}
{{- $meta := dict -}}
{{- range $key, $value := $trigger.metadata | default dict -}}
{{- $_ := set $meta $key (toString $value) -}}
{{- end -}}
{{- if eq (toString $trigger.type) "prometheus" -}}
{{- $metric := get $meta "metricName" | default "mnemos_cortex_queue_depth" -}}
{{- $_ := unset $meta "metricName" -}}
{{- if not (get $meta "query") -}}
{{- if not (has $metric (list "cortex_queue_depth" "mnemos_cortex_queue_depth")) -}}
{{- fail (printf "neuron.keda.scaledObject.triggers[%d].metadata: metricName %q is not CORTEX's queue depth (mnemos_cortex_queue_depth); give the trigger a `query`" $i $metric) -}}
{{- end -}}
{{- $_ := set $meta "query" (printf "sum(max by (queue) (mnemos_cortex_queue_depth{pool=%q}))" $pool.name) -}}
{{- end -}}
{{- end -}}
{{- $out = append $out (set (omit $trigger "metadata") "metadata" $meta) -}}
{{- end -}}
{{- $perPod := include "mnemos.workersPerPod" . -}}
{{- if and (ternary .root.Values.neuron.keda.workersTrigger true (hasKey .root.Values.neuron.keda "workersTrigger")) $perPod -}}
{{- $server := "" -}}
{{- range $trigger := $out -}}
{{- if and (eq (toString $trigger.type) "prometheus") (not $server) -}}
{{- $server = $trigger.metadata.serverAddress -}}
{{- end -}}
{{- end -}}
{{- if $server -}}
{{- $meta := dict "serverAddress" $server "threshold" $perPod "query" (printf "max(mnemos_neuron_workers{pool=%q})" $pool.name) -}}
{{- $out = append $out (dict "type" "prometheus" "name" "neuron-workers" "metadata" $meta) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
How many of the pool's NEURON workers one pod holds, as Ray counts them: the pod's CPUs (the
CPU limit, else the request, rounded up, as --num-cpus) over the pool's numCpus (default 0.5, as
mnemos.config.PoolConfig), and its GPUs over numGpus; empty when a worker asks for neither.
With an autoscaler on, a pool's maxWorkers defaults to maxReplicas times this (configmap-settings).
The `neuron-workers` trigger (neuron.keda.workersTrigger) scales to workers / this, so that a worker
CORTEX starts always gets a node: CORTEX hands jobs to a worker before Ray has placed it, and those
jobs are no longer in the queue that the queue-depth trigger reads.
Call with (dict "root" $ "pool" $pool).
*/}}
{{- define "mnemos.workersPerPod" -}}
{{- $pool := .pool -}}
{{- $settings := $pool.settings | default dict -}}
{{- $resources := include "mnemos.poolResources" . | fromYaml -}}
{{- $limits := $resources.limits | default dict -}}
{{- $requests := $resources.requests | default dict -}}
{{- $cpu := toString ($limits.cpu | default $requests.cpu | default "0") -}}
{{- $cpus := ternary (ceil (divf (trimSuffix "m" $cpu | float64) 1000)) (ceil ($cpu | float64)) (hasSuffix "m" $cpu) -}}
{{- $gpus := 0.0 -}}
{{- range $key := keys $limits | sortAlpha -}}
{{- if and (eq $gpus 0.0) (hasSuffix "gpu" $key) -}}
{{- $gpus = index $limits $key | float64 -}}
{{- end -}}
{{- end -}}
{{- $needCpu := ternary $settings.numCpus 0.5 (hasKey $settings "numCpus") | float64 -}}
{{- $needGpu := ternary $settings.numGpus 0.0 (hasKey $settings "numGpus") | float64 -}}
{{- $fits := list -}}
{{- if gt $needCpu 0.0 -}}{{- $fits = append $fits (floor (divf $cpus $needCpu)) -}}{{- end -}}
{{- if gt $needGpu 0.0 -}}{{- $fits = append $fits (floor (divf $gpus $needGpu)) -}}{{- end -}}
{{- with $fits -}}
{{- $perPod := . | first -}}
{{- range . -}}{{- if lt . $perPod -}}{{- $perPod = . -}}{{- end -}}{{- end -}}
{{- if lt $perPod 1.0 -}}
{{- fail (printf "neuron.pools[%s]: a pod (%g CPUs, %g GPUs) cannot hold one NEURON worker (numCpus %g, numGpus %g): give the pool larger resources" $pool.name $cpus $gpus $needCpu $needGpu) -}}
{{- end -}}
{{- int $perPod -}}
{{- end -}}
{{- end -}}

{{/* The replica bounds of one pool's ScaledObject: the pool's minReplicas/maxReplicas, else neuron.keda.scaledObject's. Call with (dict "root" $ "pool" $pool). */}}
{{- define "mnemos.kedaReplicas" -}}
{{- $so := .root.Values.neuron.keda.scaledObject -}}
{{- $out := dict -}}
{{- range $field, $poolKey := dict "minReplicaCount" "minReplicas" "maxReplicaCount" "maxReplicas" -}}
{{- if hasKey $.pool $poolKey -}}
{{- $_ := set $out $field (int (index $.pool $poolKey)) -}}
{{- else if hasKey $so $field -}}
{{- $_ := set $out $field (int (index $so $field)) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $out "maxReplicaCount") (lt (int $out.maxReplicaCount) 1) -}}
{{- fail (printf "neuron.pools[%s]: KEDA needs maxReplicas of at least 1 (minReplicas 0 scales to zero)" .pool.name) -}}
{{- end -}}
{{- if and (hasKey $out "minReplicaCount") (hasKey $out "maxReplicaCount") (gt (int $out.minReplicaCount) (int $out.maxReplicaCount)) -}}
{{- fail (printf "neuron.pools[%s]: minReplicas %d is greater than maxReplicas %d" .pool.name (int $out.minReplicaCount) (int $out.maxReplicaCount)) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
